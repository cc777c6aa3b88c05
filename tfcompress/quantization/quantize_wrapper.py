"""QuantizeWrapper: quantization-aware training of one layer."""

import keras
import numpy as np
from keras import ops

from tfcompress.quantization._fake_quant import RangeTracker, quantize_weight
from tfcompress.quantization.int8_scheme import Int8Scheme
from tfcompress.quantization.quantize_config import PROTOCOL, QuantizeConfig, activation_output_range

_FUSABLE = ("linear", "relu", "relu6")


def _activation_name(activation):
    if activation is None:
        return "linear"
    name = keras.activations.serialize(keras.activations.get(activation))
    return name if isinstance(name, str) else getattr(keras.activations.get(activation), "__name__", str(name))


def _deserialize(obj):
    return keras.saving.deserialize_keras_object(obj) if isinstance(obj, dict) else obj


@keras.saving.register_keras_serializable(package="tfcompress")
class QuantizeWrapper(keras.layers.Wrapper):
    """Simulates a layer's TFLite int8 kernel during training (fake quantization).

    The wrapped layer's weights are fake-quantized symmetrically (per channel where TFLite supports it)
    and substituted while the layer's own `call` runs (`keras.StatelessScope`), so any layer whose
    weights are variables can be wrapped. A BatchNormalization that followed a Conv/Dense is folded
    into the kernel and bias before the weights are quantized (w * gamma / sqrt(var + eps)), exactly as
    the converter folds it, and an activation TFLite fuses into the kernel (ReLU, ReLU6) is applied
    before the output quantization point. Other activations get a quantization point before and after.

    Args:
        layer: The Keras layer to wrap (its own activation should be linear when `activation` is set).
        scheme: An `Int8Scheme`. Defaults to `Int8Scheme()`.
        quantize_config: A `QuantizeConfig`; defaults to `QuantizeConfig.for_layer(layer)` (for a
            custom layer with a `tfcompress_quantizable_weights()` method, the weights it returns,
            read when the layer is built; see `QuantizeConfig`).
        activation: Activation applied after the layer (and the folded BatchNormalization).
            Defaults to `None`.
        batch_norm: A BatchNormalization layer folded into this layer's kernel and bias; its moving
            statistics are used (frozen) while `gamma` and `beta` keep training. Defaults to `None`.
        masked_weights: Names of quantized weights (keys of `quantize_config.weights`, e.g.
            `["kernel"]`) whose sparsity is kept: each gets a non-trainable 0/1 weight `<name>_mask`
            (ones when built; `quantize()` sets it from a pruned model) that multiplies the weight
            before BatchNormalization folding and fake quantization, so a zero stays exactly zero in
            training and in the int8 file (pruning-preserving QAT). Defaults to `None` (no mask).
        clustered_weights: `{weight name: [rows, clusters]}` of quantized weights whose weight sharing
            is kept (clustering-preserving QAT): the weight is computed as `centroids[indices]` from a
            trainable `<name>_centroids` weight `(rows, clusters)` and a fixed int32
            `<name>_cluster_indices` weight `(rows, size / rows)` (rows 1: one set of shared values for
            the whole weight; rows = output channels: one set per channel, the layout of
            `tfcompress.clustering.ClusterWeights`), so training moves the shared values and never the
            assignment, and each output channel of the int8 file holds at most `clusters` distinct
            values. The wrapped layer's own variable is then frozen and unused. `quantize()` fills
            both from a clustered model. Defaults to `None`.
        **kwargs: Keras layer arguments (`name`, ...).

    `quantize()` places wrappers in Sequential and Functional models; a subclassed model uses them
    directly (with a `QuantizeLayer` on its input), which is all the int8 export needs:

        class Net(keras.Model):
            def __init__(self):
                super().__init__()
                self.quant_in = QuantizeLayer()
                self.conv = QuantizeWrapper(keras.layers.Conv2D(8, 3), activation="relu",
                                            batch_norm=keras.layers.BatchNormalization())
                self.flatten = keras.layers.Flatten()
                self.head = QuantizeWrapper(keras.layers.Dense(10))

            def call(self, x, training=None):  # `training` reaches the layers only if call takes it
                return self.head(self.flatten(self.conv(self.quant_in(x))))

    Example:
        >>> import keras, numpy as np
        >>> w = QuantizeWrapper(keras.layers.Dense(4), activation="relu")
        >>> tuple(w(np.ones((2, 3), "float32"), training=True).shape)
        (2, 4)
        >>> sparse = QuantizeWrapper(keras.layers.Dense(4), masked_weights=["kernel"])
        >>> sparse.build((None, 3))
        >>> _ = sparse.masks["kernel"].assign(np.eye(3, 4, dtype="float32"))
        >>> [(_, kernel)], _ = sparse.quantized_weights()
        >>> int(np.count_nonzero(kernel))  # only the 3 unmasked entries can be non-zero
        3
        >>> shared = QuantizeWrapper(keras.layers.Dense(4), clustered_weights={"kernel": [1, 2]})
        >>> shared.build((None, 3))
        >>> _ = shared.centroids["kernel"].assign([[-0.5, 0.25]])
        >>> [(_, kernel)], _ = shared.quantized_weights()
        >>> sorted(np.unique(np.round(kernel.numpy(), 3)).tolist())  # indices are zeros: all -0.5
        [-0.5]

    References:
        Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
        Integer-Arithmetic-Only Inference" (BN folding, Sec. 3.2).
    """

    tfcompress_carries_ranges = True  # its ranges calibrate int8 export (see tfcompress/_surgery.py)

    def __init__(self, layer, scheme=None, quantize_config=None, activation=None, batch_norm=None,
                 masked_weights=None, clustered_weights=None, **kwargs):
        super().__init__(_deserialize(layer), **kwargs)
        self.scheme = _deserialize(scheme) or Int8Scheme()
        config = _deserialize(quantize_config)
        # A custom layer declaring its weights (tfcompress_quantizable_weights) names them once built.
        self._from_protocol = config is None and callable(getattr(self.layer, PROTOCOL, None))
        if config is None and self._from_protocol and not self.layer.built:
            config = QuantizeConfig()  # placeholder until build()
        elif config is None:
            config = QuantizeConfig.for_layer(self.layer, self.scheme.per_channel)
        if config is None:
            raise ValueError(
                f"Layer {self.layer.name!r} ({type(self.layer).__name__}) has no built-in quantization "
                "config: pass quantize_config=QuantizeConfig(...) for it, or keep it float."
            )
        self.quantize_config = config
        self.activation = None if activation is None else _activation_name(activation)
        self.batch_norm = _deserialize(batch_norm)
        if self.batch_norm is not None and config.fold_axis is None:
            raise ValueError(f"Layer {self.layer.name!r} ({type(self.layer).__name__}) cannot fold a BatchNormalization.")
        if isinstance(masked_weights, str) or not isinstance(masked_weights, (list, tuple, type(None))):
            raise TypeError(f"masked_weights must be a list of weight names, got {masked_weights!r}.")
        self.masked_weights = list(masked_weights or ())
        if not isinstance(clustered_weights, (dict, type(None))):
            raise TypeError(f"clustered_weights must be a dict {{weight name: [rows, clusters]}}, "
                            f"got {clustered_weights!r}.")
        self.clustered_weights = {n: [int(r), int(k)] for n, (r, k) in (clustered_weights or {}).items()}
        if not (self._from_protocol and not self.layer.built):
            self._check_weight_names()

    def _check_weight_names(self):
        config = self.quantize_config
        quantized = sorted(config.weights) if not config.float_fallback else []
        for arg, names in (("masked_weights", self.masked_weights), ("clustered_weights", self.clustered_weights)):
            unknown = [n for n in names if n not in quantized]
            if unknown:
                raise ValueError(
                    f"{arg}={unknown} of layer {self.layer.name!r} ({type(self.layer).__name__}) are not "
                    f"weights this wrapper quantizes; choose among {quantized}.")

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        if self._from_protocol:
            self.quantize_config = QuantizeConfig.from_protocol(self.layer)
            self._check_weight_names()
        if self.batch_norm is not None and not self.batch_norm.built:
            self.batch_norm.build(self.layer.compute_output_shape(input_shape))
        self.step = self.add_weight(name="step", shape=(), dtype="int64", initializer="zeros", trainable=False)
        cfg = self.quantize_config
        act = self.activation or "linear"
        self.pre_activation = None
        if act not in _FUSABLE and cfg.quantize_output:
            self.pre_activation = RangeTracker(self, "pre_activation")
        self.hard_sigmoid_points = None
        if self._hard_sigmoid_layer() or act == "hard_sigmoid":
            # TFLite has no HARD_SIGMOID: relu6(x + 3) / 6 runs as ADD, RELU6, MUL, each needs a range.
            self.hard_sigmoid_points = (RangeTracker(self, "hard_sigmoid_add"), RangeTracker(self, "hard_sigmoid_relu6"))
        self.intermediate = None
        if isinstance(self.layer, keras.layers.SeparableConv2D) and not cfg.float_fallback:
            self.intermediate = RangeTracker(self, "intermediate")
        self.output_tracker = None
        if cfg.quantize_output:
            fixed = activation_output_range(act) if self.activation else cfg.output_range
            self.output_tracker = RangeTracker(self, "output", fixed)
        self.masks = {}  # weight name -> fixed 0/1 mask (created last: older files keep their weight order)
        for name in self.masked_weights:
            var = getattr(self.layer, name)
            self.masks[name] = self.add_weight(name=f"{name}_mask", shape=var.shape, dtype=var.dtype,
                                               initializer="ones", trainable=False)
        self.centroids, self.cluster_indices = {}, {}  # weight name -> shared values / fixed assignment
        for name, (rows, clusters) in self.clustered_weights.items():
            var = getattr(self.layer, name)
            size = int(np.prod(var.shape))
            if rows < 1 or clusters < 1 or size % rows:
                raise ValueError(f"clustered_weights[{name!r}] = {[rows, clusters]} does not fit the weight "
                                 f"of shape {tuple(var.shape)} of layer {self.layer.name!r}.")
            self.centroids[name] = self.add_weight(name=f"{name}_centroids", shape=(rows, clusters),
                                                   initializer="zeros", trainable=True)
            self.cluster_indices[name] = self.add_weight(name=f"{name}_cluster_indices", shape=(rows, size // rows),
                                                         initializer="zeros", dtype="int32", trainable=False)
            var.trainable = False  # the centroids train instead
        self.built = True

    def _shared(self, name, var):
        """`centroids[indices]` in the layout of `ClusterWeights` (rows = 1 or the output channels)."""
        values = ops.take_along_axis(ops.convert_to_tensor(self.centroids[name]),
                                     ops.convert_to_tensor(self.cluster_indices[name]), axis=1)
        return ops.reshape(ops.transpose(values), var.shape)

    def _hard_sigmoid_layer(self):
        layer = self.layer
        return isinstance(layer, keras.layers.Activation) and _activation_name(layer.activation) == "hard_sigmoid"

    def _hard_sigmoid(self, y, training):
        add_point, relu_point = self.hard_sigmoid_points
        y = add_point(y + 3.0, self.step, training, self.scheme)
        y = relu_point(ops.relu6(y), self.step, training, self.scheme)
        return y * (1.0 / 6.0)

    # -- weights -----------------------------------------------------------------------------
    def _main_kernel_name(self):
        names = list(self.quantize_config.weights)
        return "pointwise_kernel" if "pointwise_kernel" in names else (names[0] if names else None)

    def _fold(self):
        """(scale per output channel, folded bias) of the absorbed BatchNormalization."""
        bn = self.batch_norm
        inv = ops.rsqrt(ops.convert_to_tensor(bn.moving_variance) + bn.epsilon)
        scale = inv * bn.gamma if bn.scale else inv
        bias = ops.convert_to_tensor(self.layer.bias) if getattr(self.layer, "use_bias", False) else 0.0
        folded = (bias - bn.moving_mean) * scale
        if bn.center:
            folded = folded + bn.beta
        return scale, folded

    def _scale_kernel(self, kernel, scale):
        axis = self.quantize_config.fold_axis
        if axis == "depthwise":
            return kernel * ops.reshape(scale, kernel.shape[-2:])
        if axis == -2:
            return kernel * ops.reshape(scale, (-1, 1))
        return kernel * scale

    def quantized_weights(self):
        """`[(variable, fake-quantized value)]` the layer computes with (BN folded when present)."""
        cfg, bits = self.quantize_config, self.scheme.weight_bits
        scale = folded_bias = None
        if self.batch_norm is not None:
            scale, folded_bias = self._fold()
        main = self._main_kernel_name()
        mapping = []
        for name, axis in cfg.weights.items():
            var = getattr(self.layer, name)
            w = self._shared(name, var) if name in self.centroids else ops.convert_to_tensor(var)
            if name in self.masks:  # pruning-preserving: zeros stay zeros through folding and rounding
                w = w * ops.convert_to_tensor(self.masks[name])
            if scale is not None and name == main:
                w = self._scale_kernel(w, scale)
            axis = axis if self.scheme.per_channel else None
            mapping.append((var, quantize_weight(w, axis, bits)))
        return mapping, folded_bias

    # -- forward -----------------------------------------------------------------------------
    def call(self, inputs, training=None, **kwargs):
        layer, cfg = self.layer, self.quantize_config
        if self._hard_sigmoid_layer():
            y = self._hard_sigmoid(inputs, training)
        elif cfg.float_fallback:
            y = layer(inputs, **kwargs)
        else:
            mapping, folded_bias = self.quantized_weights()
            has_bias = getattr(layer, "use_bias", False)
            if folded_bias is not None and has_bias:
                mapping.append((layer.bias, folded_bias))
            if self.intermediate is not None:
                y = self._separable(inputs, dict((id(v), t) for v, t in mapping), training)
            else:
                with keras.StatelessScope(state_mapping=mapping):
                    y = layer(inputs, **kwargs)
            if folded_bias is not None and not has_bias:
                y = y + folded_bias
        if self.pre_activation is not None:
            y = self.pre_activation(y, self.step, training, self.scheme)
        if self.activation == "hard_sigmoid":
            y = self._hard_sigmoid(y, training)
        elif self.activation is not None:
            y = keras.activations.get(self.activation)(y)
        if self.output_tracker is not None:
            y = self.output_tracker(y, self.step, training, self.scheme)
        if training:
            self.step.assign_add(1)
        return y

    def _separable(self, inputs, values, training):
        layer = self.layer
        dw = values[id(layer.depthwise_kernel)]
        pw = values[id(layer.pointwise_kernel)]
        y = ops.depthwise_conv(inputs, dw, strides=layer.strides, padding=layer.padding,
                               data_format=layer.data_format, dilation_rate=layer.dilation_rate)
        y = self.intermediate(y, self.step, training, self.scheme)
        y = ops.conv(y, pw, strides=1, padding="valid", data_format=layer.data_format)
        if layer.use_bias:
            bias = values.get(id(layer.bias), layer.bias)
            y = y + (bias if layer.data_format == "channels_last" else ops.reshape(bias, (-1, 1, 1)))
        if layer.activation is not None:
            y = layer.activation(y)
        return y

    def get_config(self):
        return {
            **super().get_config(),
            "scheme": keras.saving.serialize_keras_object(self.scheme),
            "quantize_config": keras.saving.serialize_keras_object(self.quantize_config),
            "activation": self.activation,
            "batch_norm": None if self.batch_norm is None else keras.saving.serialize_keras_object(self.batch_norm),
            "masked_weights": list(self.masked_weights),
            "clustered_weights": {n: list(v) for n, v in self.clustered_weights.items()},
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
