"""quantize(): turn a float Keras model into a quantization-aware-training model."""

import keras

from tfcompress._surgery import clone_graph, rebuild
from tfcompress.quantization.int8_scheme import Int8Scheme
from tfcompress.quantization.quantize_config import QuantizeConfig
from tfcompress.quantization.quantize_layer import QuantizeLayer
from tfcompress.quantization.quantize_wrapper import QuantizeWrapper, _activation_name

# Non-layer operations (keras.ops called on symbolic tensors) that TFLite runs in the input's scale.
_RANGE_PRESERVING_OPS = {"Reshape", "Transpose", "ExpandDims", "Squeeze", "Flatten", "GetItem", "Slice",
                         "StridedSlice", "Max", "Min", "Tile", "Repeat", "Split", "Identity", "Pad"}


def _is_float(t):
    return "float" in str(getattr(t, "dtype", ""))


def _flat(x):
    return keras.tree.flatten(x) if x is not None else []


def _fused_activation(layer):
    """'relu'/'relu6' if `layer` is a standalone activation TFLite fuses into a preceding Conv/Dense."""
    L = keras.layers
    if isinstance(layer, L.ReLU):
        if float(layer.negative_slope) == 0.0 and float(layer.threshold) == 0.0:
            if layer.max_value is None:
                return "relu"
            if float(layer.max_value) == 6.0:
                return "relu6"
        return None
    if isinstance(layer, L.Activation):
        name = _activation_name(layer.activation)
        return name if name in ("relu", "relu6") else None
    return None


def _plan_fusions(model, configs):
    """Finds Conv/Dense -> [BatchNormalization] -> [ReLU/ReLU6] chains in a functional model.

    Returns `{id(conv): (bn or None, activation or None, [absorbed layers])}`.
    """
    consumers = {}
    for op in model.operations:
        try:
            inputs = _flat(op.input)
        except (AttributeError, ValueError):  # shared layers have several inputs: never fused
            continue
        for t in inputs:
            consumers.setdefault(id(t), []).append(op)
    outputs = {id(t) for t in _flat(model.outputs)}

    def sole_consumer(op):
        try:
            out = op.output
        except (AttributeError, ValueError):
            return None
        if id(out) in outputs:
            return None
        users = consumers.get(id(out), [])
        return users[0] if len(users) == 1 else None

    plan = {}
    for op in model.operations:
        cfg = configs.get(id(op))
        if cfg is None or cfg.fold_axis is None or cfg.float_fallback:
            continue
        act = _activation_name(getattr(op, "activation", None))
        bn, absorbed, tail = None, [], op
        nxt = sole_consumer(op)
        if act == "linear" and isinstance(nxt, keras.layers.BatchNormalization) and configs.get(id(nxt)):
            ndim = len(nxt.input.shape)
            if nxt.axis in (-1, ndim - 1) and not getattr(op, "data_format", "channels_last") == "channels_first":
                bn, tail = nxt, nxt
                absorbed.append(nxt)
        if act == "linear":
            nxt = sole_consumer(tail)
            fused = _fused_activation(nxt) if nxt is not None and configs.get(id(nxt)) is not None else None
            if fused:
                act = fused
                absorbed.append(nxt)
        plan[id(op)] = (bn, act, absorbed)
    return plan


def _clone_layer(layer, **overrides):
    config = layer.get_config()
    config.update(overrides)
    return layer.__class__.from_config(config)


def _sequential_to_functional(model):
    if not model.built or not model.inputs:
        raise ValueError(
            f"Sequential model {model.name!r} is not built with a known input shape: start it with "
            "keras.Input(shape) or call model.build(input_shape) before quantize()."
        )
    clone = rebuild(model)
    clone.set_weights(model.get_weights())
    inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
    x = inputs
    for layer in clone.layers:
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def quantize(model, scheme=None, layers=None, keep_float=None, configs=None, _quantize_inputs=True):
    """Returns a new model that simulates TFLite int8 inference while it trains (QAT).

    Every Conv/Dense-like layer becomes a `QuantizeWrapper` (weights fake-quantized symmetrically, a
    following BatchNormalization folded into them, a following ReLU/ReLU6 fused), every other layer or
    operation that creates new values gets an output quantization point, and every float model input
    gets a `QuantizeLayer`: one quantization point per tensor of TFLite's int8 graph, so
    `tfcompress.export.export_tflite(qat_model, quantize="int8")` lowers it with the trained ranges and
    no representative data. The given model is not modified; weights are copied.

    Layers TFLite has no integer kernel for (LayerNormalization, MultiHeadAttention, Conv3D, ...) stay
    float (documented fallback): they compute in float and their outputs are quantized for the integer
    layers after them. Layers named in `keep_float` (or left out of `layers`) are not fake-quantized
    and get no output quantization point: the TFLite file runs them, and the ops after them up to the
    next quantization point, in float (the converter would otherwise quantize a layer whose input and
    output both carry ranges).

    Args:
        model: A built Sequential or Functional (possibly nested) Keras model. A subclassed model's
            graph is not visible: it places `QuantizeWrapper` / `QuantizeLayer` in its own `__init__`
            (see `QuantizeWrapper`).
        scheme: An `Int8Scheme`. Defaults to `Int8Scheme()`.
        layers: Names of the layers to quantize; `None` quantizes every supported layer. Defaults to `None`.
        keep_float: Names of layers to leave in float (mixed precision; see `sensitivity`). Defaults to `None`.
        configs: `{layer name or class name: QuantizeConfig}` for custom layers or overrides.
            Defaults to `None`.

    Returns:
        A new, uncompiled Keras model (Functional) with the same inputs and outputs.

    Example:
        >>> import keras
        >>> from tfcompress.quantization import quantize
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3),
        ...                           keras.layers.BatchNormalization(), keras.layers.ReLU(),
        ...                           keras.layers.Flatten(), keras.layers.Dense(10)])
        >>> qat = quantize(model)
        >>> [type(layer).__name__ for layer in qat.layers[1:]]
        ['QuantizeLayer', 'QuantizeWrapper', 'Flatten', 'QuantizeWrapper']

    References:
        Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
        Integer-Arithmetic-Only Inference" (CVPR).
    """
    scheme = scheme or Int8Scheme()
    configs = dict(configs or {})
    keep_float = set(keep_float or ())
    selected = None if layers is None else set(layers)
    if isinstance(model, keras.Sequential):
        model = _sequential_to_functional(model)
    elif not _is_functional(model):
        raise ValueError(
            f"quantize(): model {model.name!r} is a subclassed {type(model).__name__}, whose layer graph is "
            "not visible. Build the quantization into its __init__ instead: wrap each Conv/Dense as "
            "QuantizeWrapper(layer, activation=..., batch_norm=...) and put a QuantizeLayer() on the inputs "
            "and after other ops (see the QuantizeWrapper docstring), or rebuild it as a Functional model."
        )

    layer_configs = {}  # id(original layer) -> QuantizeConfig, for the layers to quantize
    for op in model.operations:
        if not isinstance(op, keras.layers.Layer) or isinstance(op, (keras.layers.InputLayer, keras.Model)):
            continue
        if op.name in keep_float or (selected is not None and op.name not in selected):
            continue
        cfg = configs.get(op.name) or configs.get(type(op).__name__)
        cfg = cfg or QuantizeConfig.for_layer(op, scheme.per_channel)
        if cfg is None:
            raise ValueError(
                f"quantize(): layer {op.name!r} of class {type(op).__name__} has no quantization config. "
                f"Annotate it with configs={{{type(op).__name__!r}: QuantizeConfig(weights={{...}})}}, or keep "
                f"it float with keep_float=[{op.name!r}]."
            )
        layer_configs[id(op)] = cfg
    plan = _plan_fusions(model, layer_configs)
    absorbed = {id(a) for _, _, group in plan.values() for a in group}
    weight_pairs = []  # (original layer, new layer) whose weights get copied after building

    def clone_function(op):
        if not isinstance(op, keras.layers.Layer) or id(op) in absorbed:
            return op
        if isinstance(op, keras.Model):
            return quantize(op, scheme, layers, keep_float, configs, _quantize_inputs=False)
        cfg = layer_configs.get(id(op))
        if cfg is None or cfg.float_fallback or not (cfg.weights or cfg.quantize_output or id(op) in plan):
            new = _clone_layer(op)
            weight_pairs.append((op, new))
            return new
        bn, act, _ = plan.get(id(op), (None, None, ()))
        if id(op) in plan and hasattr(op, "activation"):
            new = _clone_layer(op, activation="linear")
        else:
            new = _clone_layer(op)
            act = None
        weight_pairs.append((op, new))
        new_bn = None
        if bn is not None:
            new_bn = _clone_layer(bn)
            weight_pairs.append((bn, new_bn))
        return QuantizeWrapper(new, scheme=scheme, quantize_config=cfg,
                               activation=None if act in (None, "linear") else act,
                               batch_norm=new_bn, name=f"quant_{op.name}")

    input_points = {}

    def quantized_input(t):
        if id(t) not in input_points:
            name = f"quantize_input_{len(input_points)}" if input_points else "quantize_input"
            input_points[id(t)] = QuantizeLayer(scheme, name=name)(t) if _is_float(t) else t
        return input_points[id(t)]

    new_inputs = set()

    def call_function(op, *args, **kwargs):
        if id(op) in absorbed:
            return args[0]
        if _quantize_inputs and new_inputs:
            args = keras.tree.map_structure(lambda t: quantized_input(t) if id(t) in new_inputs else t, args)
            kwargs = keras.tree.map_structure(lambda t: quantized_input(t) if id(t) in new_inputs else t, kwargs)
        out = op(*args, **kwargs)
        if isinstance(op, (QuantizeWrapper, keras.Model)):
            return out
        if isinstance(op, keras.layers.Layer):
            if op.name in keep_float or (selected is not None and op.name not in selected):
                return out  # float island: runs float in TFLite up to the next quantization point
            cfg = configs.get(op.name) or configs.get(type(op).__name__) or QuantizeConfig.for_layer(op)
            if cfg is not None and not cfg.quantize_output:
                return out
        elif type(op).__name__ in _RANGE_PRESERVING_OPS:
            return out
        return keras.tree.map_structure(lambda t: QuantizeLayer(scheme)(t) if _is_float(t) else t, out)

    inputs = keras.tree.map_structure(
        lambda x: keras.Input(batch_shape=x.shape, dtype=x.dtype, name=x.name), model.input)
    new_inputs.update(id(t) for t in _flat(inputs))
    new_model = clone_graph(model, clone_function, call_function, inputs)
    for old, new in weight_pairs:
        new.set_weights(old.get_weights())
    return new_model


def _is_functional(model):
    """Functional models (and functional subclasses) have a graph of layers we can clone."""
    return any(c.__name__ == "Functional" for c in type(model).__mro__)
