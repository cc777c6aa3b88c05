"""QuantizeConfig: where a layer's quantization points are (built-in layers and custom ones)."""

import keras

from tfcompress._config_object import ConfigObject

_FIXED_RANGES = {
    # TFLite int8 output specs: LOGISTIC / SOFTMAX scale 1/256 zero point -128; TANH scale 1/128 zp 0.
    "sigmoid": (0.0, 255.0 / 256.0),
    "softmax": (0.0, 255.0 / 256.0),
    "tanh": (-1.0, 127.0 / 128.0),
}


# A custom layer's method naming the weights to fake-quantize (the counterpart of pruning's
# `tfcompress_prunable_weights`).
PROTOCOL = "tfcompress_quantizable_weights"


@keras.saving.register_keras_serializable(package="tfcompress")
class QuantizeConfig(ConfigObject):
    """Describes how `QuantizeWrapper` quantizes one layer; pass one for a custom layer.

    Built-in layers get a config automatically (`QuantizeConfig.for_layer`). A custom layer either
    declares its quantizable weights itself, with a method `tfcompress_quantizable_weights(self)`
    (the protocol below), or is annotated by giving `quantize(model, configs={"MyLayer":
    QuantizeConfig(...)})` (by class name or layer name; this overrides the method). Either way the
    wrapper fake-quantizes the named weight variables and substitutes them while the layer's own
    `call` runs, then fake-quantizes the output.

    The quantizable-weights protocol (like tfmot's `QuantizeConfig.get_weights_and_quantizers`, and
    pruning's `tfcompress_prunable_weights`): `tfcompress_quantizable_weights(self)` returns, after
    `build`, a list whose items are a variable of the layer stored as an attribute (`self.kernel`),
    quantized per tensor, or a pair `(variable, axis)` with `axis` one of `None` (per tensor),
    `"last"` (per output channel on the last axis: convolution kernels) or `"depthwise"`. Keep
    matmul (Dense-like) kernels per tensor: TFLite's converter cannot carry a per-channel axis
    through the transpose it adds for FULLY_CONNECTED weights. Weights not listed (biases) stay
    float in training; the converter stores a bias as int32 in the input x weight scale. What
    happens to activations: the layer's input is quantized by the quantization point before it
    (the previous layer's output, or the model input's `QuantizeLayer`), and its output gets one
    quantization point with a range tracked in training, after everything `call` computes. So
    `call` should be what TFLite runs as one integer op with one output scale: a matmul or
    convolution plus bias, optionally followed by an activation TFLite fuses (ReLU, ReLU6). Put any
    other activation (tanh, sigmoid, ...) in its own `keras.layers.Activation` after the layer: it
    then gets its own quantization point and TFLite's fixed output range. An empty list quantizes
    no weight but still places the output point.

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
        >>> import keras
        >>> class MyDense(keras.layers.Layer):
        ...     def build(self, input_shape):
        ...         self.kernel = self.add_weight(shape=(input_shape[-1], 4))
        ...         self.bias = self.add_weight(shape=(4,), initializer="zeros")
        ...     def call(self, x):
        ...         return keras.ops.relu(keras.ops.matmul(x, self.kernel) + self.bias)
        ...     def tfcompress_quantizable_weights(self):
        ...         return [self.kernel]  # per tensor; [(self.kernel, "last")] for per channel
        >>> layer = MyDense()
        >>> layer.build((None, 3))
        >>> QuantizeConfig.for_layer(layer).weights
        {'kernel': None}
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
    def from_protocol(layer):
        """The config a built custom layer declares with `tfcompress_quantizable_weights()`.

        Raises a ValueError naming the layer when it is not built, returns a variable it does not
        own or does not keep in an attribute, or gives an unknown axis.

        Example:
            >>> import keras
            >>> class Scaled(keras.layers.Layer):
            ...     def build(self, input_shape):
            ...         self.w = self.add_weight(shape=(input_shape[-1],))
            ...     def call(self, x):
            ...         return x * self.w
            ...     def tfcompress_quantizable_weights(self):
            ...         return [(self.w, "last")]
            >>> layer = Scaled()
            >>> layer.build((None, 5))
            >>> QuantizeConfig.from_protocol(layer).weights
            {'w': 'last'}
        """
        return _from_protocol(layer)

    @staticmethod
    def for_layer(layer, per_channel=True):
        """The built-in config of a Keras layer, or `None` if the layer type is unknown.

        Example:
            >>> import keras
            >>> QuantizeConfig.for_layer(keras.layers.Conv2D(4, 3)).weights
            {'kernel': 'last'}
        """
        if callable(getattr(layer, PROTOCOL, None)):
            return QuantizeConfig.from_protocol(layer)
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
            # Preprocessing (x - mean) / std, ConvNeXt's per-channel LayerScale, InceptionResNetV2's
            # residual scale: element-wise SUB / MUL / ADD, which TFLite runs in int8 between two
            # quantization points.
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


def _from_protocol(layer):
    what = f"{type(layer).__name__}.{PROTOCOL}() of layer '{layer.name}'"
    if not layer.built:
        raise ValueError(f"{what}: the layer is not built, so it has no weights yet; build it (call it on "
                         "data, or layer.build(input_shape)) before quantizing it.")
    declared = getattr(layer, PROTOCOL)()
    if declared is None:
        declared = []
    if not isinstance(declared, (list, tuple)):
        raise TypeError(f"{what} returned {declared!r}; return a list of variables or (variable, axis) pairs.")
    own = {id(v) for v in layer.weights}
    names = {id(v): attr for attr, v in vars(layer).items() if not attr.startswith("__") and id(v) in own}
    weights = {}
    for item in declared:
        var, axis = item if isinstance(item, tuple) and len(item) == 2 else (item, None)
        if id(var) not in own:
            raise ValueError(f"{what} returned {getattr(var, 'path', var)!r}, which is not one of the layer's "
                             "weights; return variables the layer created in build() (e.g. [self.kernel]).")
        if axis not in (None, "last", "depthwise"):
            raise ValueError(f"{what}: axis {axis!r} of {var.path!r} must be None (per tensor), 'last' (per "
                             "output channel) or 'depthwise'.")
        if id(var) not in names:
            raise ValueError(f"{what} returned {var.path!r}, which is not stored as an attribute of the layer; "
                             "keep each quantizable weight in an attribute (self.kernel = self.add_weight(...)).")
        weights[names[id(var)]] = axis
    return QuantizeConfig(weights=weights)

def _is_keras_layer_scale(layer):
    """keras.applications' element-wise scale layers, not exported by keras (so matched by class and
    module): ConvNeXt's `LayerScale` (x * gamma) and InceptionResNetV2's `CustomScaleLayer` (x + s * y)."""
    cls = type(layer)
    return cls.__name__ in ("LayerScale", "CustomScaleLayer") and cls.__module__.startswith("keras.")


def activation_output_range(activation_name):
    """Fixed TFLite output range of an activation applied by a wrapper, or None."""
    return _FIXED_RANGES.get(activation_name)
