"""QuantizeLayer: a standalone activation quantization point."""

import keras

from tfcompress.quantization._fake_quant import RangeTracker
from tfcompress.quantization.int8_scheme import Int8Scheme


@keras.saving.register_keras_serializable(package="tfcompress")
class QuantizeLayer(keras.layers.Layer):
    """Fake-quantizes a tensor with an asymmetric range tracked during training.

    `quantize()` puts one after each float model input and after every operation that is not a Keras
    layer (e.g. `x + 3.0` inside MobileNetV3's hard-sigmoid) or that stays in float, so that every tensor
    the TFLite int8 graph holds has a range. The range is the moving average of batch min/max while
    training (until `scheme.freeze_step`), or fixed when `output_range` is given.

    Args:
        scheme: An `Int8Scheme`. Defaults to `Int8Scheme()`.
        output_range: Fixed `(min, max)` instead of a tracked range. Defaults to `None`.
        **kwargs: Keras layer arguments (`name`, ...).

    Example:
        >>> import numpy as np
        >>> q = QuantizeLayer(output_range=(0.0, 1.0))
        >>> round(float(q(np.array([0.5013], "float32"))[0]) * 255, 3)  # snapped to the 1/255 grid
        128.0

    References:
        Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
        Integer-Arithmetic-Only Inference".
    """

    tfcompress_carries_ranges = True  # its ranges calibrate int8 export (see tfcompress/_surgery.py)

    def __init__(self, scheme=None, output_range=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(scheme, dict):
            scheme = keras.saving.deserialize_keras_object(scheme)
        self.scheme = scheme or Int8Scheme()
        self.output_range = None if output_range is None else tuple(float(v) for v in output_range)

    def build(self, input_shape):
        self.step = self.add_weight(name="step", shape=(), dtype="int64", initializer="zeros", trainable=False)
        self.tracker = RangeTracker(self, "output", self.output_range)

    def call(self, inputs, training=None):
        out = self.tracker(inputs, self.step, training, self.scheme)
        if training:
            self.step.assign_add(1)
        return out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "scheme": keras.saving.serialize_keras_object(self.scheme),
            "output_range": None if self.output_range is None else list(self.output_range),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
