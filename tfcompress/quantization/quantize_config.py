"""QuantizeConfig: where a layer's quantization points are (built-in layers and custom ones)."""

import keras

from tfcompress._config_object import ConfigObject

_FIXED_RANGES = {
    # TFLite int8 output specs: LOGISTIC / SOFTMAX scale 1/256 zero point -128; TANH scale 1/128 zp 0.
    "sigmoid": (0.0, 255.0 / 256.0),
    "softmax": (0.0, 255.0 / 256.0),
    "tanh": (-1.0, 127.0 / 128.0),
}


@keras.saving.register_keras_serializable(package="tfcompress")
class QuantizeConfig(ConfigObject):
    """Describes how `QuantizeWrapper` quantizes one layer; pass one for a custom layer.

    Built-in layers get a config automatically (`QuantizeConfig.for_layer`). A custom layer is
    annotated by giving `quantize(model, configs={"MyLayer": QuantizeConfig(...)})` (by class name or
    layer name): the wrapper fake-quantizes the named weight variables and substitutes them while the
    layer's own `call` runs, then fake-quantizes the output.

    Args:
        weights: Mapping of weight attribute name (e.g. `"kernel"`) to its quantization axis: `None`
            (per tensor), `"last"` (per channel on the last axis) or `"depthwise"`. Defaults to `{}`.
        quantize_output: Whether the output is a new quantization point (`False` for ops TFLite runs in
            the input's scale: reshape, max pooling, padding...). Defaults to `True`.
        output_range: A fixed `(min, max)` output range instead of a tracked one (TFLite's fixed
            sigmoid/softmax/tanh output scales). Defaults to `None`.
        fold_axis: Output-channel axis of the main kernel for folding a following BatchNormalization
            (`"last"`, `"depthwise"` or `-2` for transposed convolutions); `None` disables folding.
            Defaults to `None`.
        float_fallback: Keep this layer in float (TFLite has no integer kernel for it); its output is
            still quantized so integer neighbours get int8 tensors. Defaults to `False`.

    Example:
        >>> from tfcompress.quantization import QuantizeConfig
        >>> cfg = QuantizeConfig(weights={"kernel": "last"}, fold_axis="last")
        >>> cfg.weights
        {'kernel': 'last'}
    """

    def __init__(self, weights=None, quantize_output=True, output_range=None, fold_axis=None, float_fallback=False):
        weights = dict(weights or {})
        for name, axis in weights.items():
            if axis not in (None, "last", "depthwise"):
                raise ValueError(f"Weight {name!r}: axis must be None, 'last' or 'depthwise', got {axis!r}.")
        if output_range is not None:
            output_range = tuple(float(v) for v in output_range)
            if len(output_range) != 2 or not output_range[0] <= 0.0 <= output_range[1]:
                raise ValueError(f"output_range must be (min, max) with min <= 0 <= max, got {output_range!r}.")
        if fold_axis not in (None, "last", "depthwise", -2):
            raise ValueError(f"fold_axis must be None, 'last', 'depthwise' or -2, got {fold_axis!r}.")
        self.weights = weights
        self.quantize_output = bool(quantize_output)
        self.output_range = output_range
        self.fold_axis = fold_axis
        self.float_fallback = bool(float_fallback)

    def get_config(self):
        return {
            "weights": dict(self.weights),
            "quantize_output": self.quantize_output,
            "output_range": None if self.output_range is None else list(self.output_range),
            "fold_axis": self.fold_axis,
            "float_fallback": self.float_fallback,
        }

    @staticmethod
    def for_layer(layer, per_channel=True):
        """The built-in config of a Keras layer, or `None` if the layer type is unknown.

        Example:
            >>> import keras
            >>> QuantizeConfig.for_layer(keras.layers.Conv2D(4, 3)).weights
            {'kernel': 'last'}
        """
        L = keras.layers
        ch = "last" if per_channel else None
        if isinstance(layer, L.SeparableConv2D):  # also SeparableConv1D is separate class below
            return QuantizeConfig({"depthwise_kernel": "depthwise" if per_channel else None, "pointwise_kernel": ch},
                                  fold_axis="last")
        if isinstance(layer, L.SeparableConv1D):
            return None
        if isinstance(layer, L.DepthwiseConv2D):
            return QuantizeConfig({"kernel": "depthwise" if per_channel else None}, fold_axis="depthwise")
        if isinstance(layer, (L.Conv2DTranspose, L.Conv1DTranspose, L.Conv3DTranspose)):
            return QuantizeConfig({"kernel": None}, fold_axis=-2)
        if isinstance(layer, L.Conv3D):
            # TFLite's CONV_3D kernel is float only: keep it float, quantize around it.
            return QuantizeConfig(float_fallback=True)
        if isinstance(layer, L.Conv1D):
            # Per tensor: the converter's ExpandDims + transpose of a Conv1D kernel loses the
            # per-channel axis ("mismatched quantized axes"), as for Dense.
            return QuantizeConfig({"kernel": None}, fold_axis="last")
        if isinstance(layer, L.Conv2D):
            return QuantizeConfig({"kernel": ch}, fold_axis="last")
        if isinstance(layer, L.Dense):
            return QuantizeConfig({"kernel": None}, fold_axis="last")
        if isinstance(layer, L.Embedding):
            return QuantizeConfig({"embeddings": None}, quantize_output=False)
        if isinstance(layer, (L.LayerNormalization, L.MultiHeadAttention, L.GroupNormalization,
                              L.UnitNormalization, L.EinsumDense)):
            # No integer LayerNorm / attention kernels in TFLite's builtins: float fallback.
            return QuantizeConfig(float_fallback=True)
        if isinstance(layer, (L.RNN, L.Bidirectional)):
            # The gates of a recurrent cell are not layers of the model graph, so QAT has no
            # quantization point inside them: the unrolled cell runs float, its output is quantized.
            return QuantizeConfig(float_fallback=True)
        if isinstance(layer, L.Normalization) or _is_keras_layer_scale(layer):
            # Preprocessing (x - mean) / std, and ConvNeXt's per-channel LayerScale: element-wise
            # SUB / MUL by constants, which TFLite runs in int8 between two quantization points.
            return QuantizeConfig()
        range_preserving = (L.Reshape, L.Flatten, L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
                            L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
                            L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D,
                            L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
                            L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.Identity, L.Permute,
                            L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D, L.Cropping1D, L.Cropping2D,
                            L.Cropping3D, L.UpSampling1D, L.UpSampling2D, L.UpSampling3D, L.RepeatVector,
                            L.ActivityRegularization)
        if isinstance(layer, range_preserving):
            return QuantizeConfig(quantize_output=False)
        if isinstance(layer, L.Softmax):
            return QuantizeConfig(output_range=_FIXED_RANGES["softmax"])
        if isinstance(layer, L.Activation):
            name = keras.activations.serialize(layer.activation)
            name = name if isinstance(name, str) else getattr(layer.activation, "__name__", "")
            if name == "linear":
                return QuantizeConfig(quantize_output=False)
            return QuantizeConfig(output_range=_FIXED_RANGES.get(name))
        weightless = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum, L.Concatenate,
                      L.ReLU, L.LeakyReLU, L.PReLU, L.ELU, L.BatchNormalization,
                      L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
                      L.Rescaling)
        if isinstance(layer, weightless):
            return QuantizeConfig()
        return None


def _is_keras_layer_scale(layer):
    """keras.applications' ConvNeXt `LayerScale` (not exported by keras, so matched by class and module)."""
    cls = type(layer)
    return cls.__name__ == "LayerScale" and cls.__module__.startswith("keras.")


def activation_output_range(activation_name):
    """Fixed TFLite output range of an activation applied by a wrapper, or None."""
    return _FIXED_RANGES.get(activation_name)
