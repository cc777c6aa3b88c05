"""quantize(): turn a float Keras model into a quantization-aware-training model."""

import warnings

import keras
import numpy as np

from tfcompress._surgery import clone_graph, iter_layers, rebuild, tensor_consumers
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


def _plan_fusions(model, configs, graph):
    """Finds Conv/Dense -> [BatchNormalization] -> [ReLU/ReLU6] chains in a functional model.

    Returns `{id(conv): (bn or None, activation or None, [absorbed layers])}`.
    """
    consumers, outputs = graph  # tensor_consumers(model): shared layers are never fused

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


def _concat_fed(model, configs, plan, absorbed, graph):
    """Operations whose output point moves to the Concatenate they feed (`{id(op)}`).

    TFLite's CONCATENATION keeps one scale for its inputs and output: the converter gives an input
    tensor that only the concat reads the concat's scale (or adds a REQUANTIZE), so a range of its
    own, tracked in training, is not what the file runs (4 LSB off in the test's model, 28 LSB in
    DenseNet121). As tfmot's ConcatTransform, such an input gets no quantization point and the
    concat's output point quantizes it. Kept: producers read by anything else, model outputs,
    float fallbacks, fixed output ranges (sigmoid, softmax, tanh) and activations TFLite does not
    fuse (their pre-activation point goes with the output point).
    """
    consumers, outputs = graph  # tensor_consumers(model)

    def quantized_concat(op):
        if isinstance(op, keras.layers.Concatenate):
            cfg = configs.get(id(op))
            return cfg is not None and cfg.quantize_output and not cfg.float_fallback
        return not isinstance(op, keras.layers.Layer) and type(op).__name__ == "Concatenate"

    fed = set()
    for op in model.operations:
        if id(op) in absorbed or isinstance(op, (keras.layers.InputLayer, keras.Model)):
            continue
        if isinstance(op, keras.layers.Layer):
            cfg = configs.get(id(op))
            if cfg is None or cfg.float_fallback or not cfg.quantize_output or cfg.output_range is not None:
                continue
            if id(op) in plan:
                act = plan[id(op)][1]
            elif isinstance(op, keras.layers.Activation):  # its activation is the op itself
                act = "hard_sigmoid" if _activation_name(op.activation) == "hard_sigmoid" else "linear"
            else:
                act = _activation_name(getattr(op, "activation", None))
            if act not in ("linear", "relu", "relu6"):
                continue
        elif type(op).__name__ in _RANGE_PRESERVING_OPS:
            continue
        group = plan[id(op)][2] if id(op) in plan else []
        tail = group[-1] if group else op  # the last layer of a fused Conv -> BN -> ReLU chain
        try:
            out = tail.output
        except (AttributeError, ValueError):  # a shared layer: several outputs
            continue
        if not isinstance(out, keras.KerasTensor) or id(out) in outputs:
            continue
        users = consumers.get(id(out), [])
        if len(users) == 1 and quantized_concat(users[0]):
            fed.add(id(op))
    return fed


def _affine(layer):
    """`(a, b)` with `layer(x) == x * a + b` (inference) for a per-channel affine layer, else None.

    Normalization, a BatchNormalization that no Conv/Dense absorbs, and Rescaling with an offset
    lower to two TFLite ops (MUL, ADD/SUB); the tensor between them needs a range of its own or the
    converter leaves both in float. `quantize` re-expresses them as `x * a`, a quantization point,
    `+ b` (the statistics are frozen at their current values, as when a BatchNormalization is folded).
    """
    L = keras.layers
    shape = (layer.get_build_config() or {}).get("input_shape") if layer.built else None
    if not shape:
        return None
    ndim = len(shape)
    if isinstance(layer, L.Normalization):
        if layer.invert:
            return None
        mean = np.asarray(layer.mean, "float64")
        a = 1.0 / np.maximum(np.sqrt(np.asarray(layer.variance, "float64")), keras.config.epsilon())
        return a.astype("float32"), (-mean * a).astype("float32")
    if isinstance(layer, L.BatchNormalization):
        axis = layer.axis % ndim
        bshape = [1] * ndim
        bshape[axis] = shape[axis]
        gamma = np.asarray(layer.gamma, "float64") if layer.scale else 1.0
        beta = np.asarray(layer.beta, "float64") if layer.center else 0.0
        a = gamma / np.sqrt(np.asarray(layer.moving_variance, "float64") + layer.epsilon)
        b = beta - np.asarray(layer.moving_mean, "float64") * a
        return (np.reshape(a, bshape).astype("float32"),
                np.reshape(np.broadcast_to(b, a.shape), bshape).astype("float32"))
    if isinstance(layer, L.Rescaling) and np.any(np.asarray(layer.offset) != 0):
        return (np.asarray(layer.scale, "float32"), np.asarray(layer.offset, "float32"))
    return None


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


# preserve_sparsity="auto" keeps the exact zeros of a plain kernel with at least this fraction of them
# (the threshold tfcompress.clustering.cluster(preserve_zeros="auto") uses too).
AUTO_MIN_ZEROS = 0.01
# preserve_clusters: a weight (or each of its output channels) with at most this many distinct values is
# clustered; "auto" also needs every shared value used by AUTO_MIN_SHARE entries on average (a trained
# dense kernel has as many distinct values as entries).
MAX_CLUSTERS = 256
AUTO_MAX_CLUSTERS = 64
AUTO_MIN_SHARE = 8


def _names_arg(value, arg):
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"quantize(): {arg}= takes a list of layer names, got {value!r}.")
    return list(value)


def _check_names(model, layers, keep_float):
    """Validates `layers` / `keep_float` against the model; maps PruneWrapper names to the inner layer's."""
    from tfcompress.pruning import PruneWrapper

    known, alias = set(), {}
    for layer in iter_layers(model, include_models=True):
        known.add(layer.name)
        if isinstance(layer, PruneWrapper):
            known.add(layer.layer.name)
            alias[layer.name] = layer.layer.name
    known.discard(model.name)
    out = []
    for arg, names in (("layers", layers), ("keep_float", keep_float)):
        if names is None:
            out.append(None)
            continue
        unknown = sorted(n for n in names if n not in known)
        if unknown:
            raise ValueError(
                f"quantize(): {arg}= names {unknown}, which {'is' if len(unknown) == 1 else 'are'} not "
                f"layers of model {model.name!r}. Layers: {sorted(known)}.")
        out.append({alias.get(n, n) for n in names})
    return out


def _strip_clusters(model):
    """`({inner layer names of ClusterWeights}, model with them stripped)`."""
    from tfcompress.clustering import ClusterWeights, strip

    names = {layer.layer.name for layer in iter_layers(model, include_models=True)
             if isinstance(layer, ClusterWeights)}
    return names, (strip(model) if names else model)


def _prune_masks(model):
    """`({inner layer name: {weight name: 0/1 mask}}, stripped model)` of a model holding PruneWrappers."""
    from tfcompress.pruning import PruneWrapper, strip

    wrappers = [layer for layer in iter_layers(model, include_models=True) if isinstance(layer, PruneWrapper)]
    if not wrappers:
        return {}, model
    masks = {}
    for w in wrappers:
        masks[w.layer.name] = {name: np.asarray(mvar.numpy()) for name, _, _, mvar, _ in w.pruned}
    return masks, strip(model)


def _cluster_layout(values, max_clusters, min_share):
    """`(centroids (rows, k), indices (rows, size / rows))` of a weight with shared values, or None.

    Tries one set of shared values for the whole weight (rows = 1), then one per output channel (last
    axis), the two layouts of `ClusterWeights`."""
    for rows in (1, values.shape[-1]):
        flat = values.reshape(-1, rows).T
        found = [np.unique(row, return_inverse=True) for row in flat]
        k = max(len(u) for u, _ in found)
        if 2 <= k <= max_clusters and flat.shape[1] >= min_share * k:
            centroids = np.stack([np.pad(u, (0, k - len(u)), mode="edge") for u, _ in found]).astype("float32")
            indices = np.stack([i.reshape(-1) for _, i in found]).astype("int32")
            return centroids, indices
    return None


def _clusters(op, cfg, preserve_clusters, clustered_layers):
    """`{weight name: (centroids, indices)}` whose weight sharing `op`'s QuantizeWrapper keeps."""
    if preserve_clusters is False or cfg.float_fallback:
        return {}
    forced = preserve_clusters is True or op.name in clustered_layers
    found = {}
    for name in cfg.weights:
        var = getattr(op, name, None)
        if var is None:
            continue
        layout = _cluster_layout(np.asarray(var.numpy()), MAX_CLUSTERS if forced else AUTO_MAX_CLUSTERS,
                                 1 if forced else AUTO_MIN_SHARE)
        if layout is not None:
            found[name] = layout
    return found


def _sparsity_masks(op, cfg, preserve_sparsity, pruned_masks):
    """`{weight name: 0/1 mask}` to hold fixed in `op`'s QuantizeWrapper (see `quantize`)."""
    if preserve_sparsity is False or cfg.float_fallback:
        return {}
    found = {}
    for name in cfg.weights:
        var = getattr(op, name, None)
        if var is None:
            continue
        mask = pruned_masks.get(op.name, {}).get(name)
        if mask is None:
            zero = np.asarray(var.numpy()) == 0
            fraction = float(zero.mean())
            if fraction == 1.0 or (preserve_sparsity == "auto" and fraction < AUTO_MIN_ZEROS):
                continue  # an all-zero kernel is a zero-initialised one, not a pruned one
            mask = (~zero).astype(var.dtype)
        if mask.shape == tuple(var.shape) and not mask.all():
            found[name] = mask
    return found


def quantize(model, scheme=None, layers=None, keep_float=None, configs=None, preserve_sparsity="auto",
             preserve_clusters="auto", _quantize_inputs=True, _masks=None, _clustered=None):
    """Returns a new model that simulates TFLite int8 inference while it trains (QAT).

    Every Conv/Dense-like layer becomes a `QuantizeWrapper` (weights fake-quantized symmetrically, a
    following BatchNormalization folded into them, a following ReLU/ReLU6 fused), every other layer or
    operation that creates new values gets an output quantization point, and every float model input
    gets a `QuantizeLayer`: one quantization point per tensor of TFLite's int8 graph, so
    `tfcompress.export.export_tflite(qat_model, quantize="int8")` lowers it with the trained ranges and
    no representative data. The given model is not modified; weights are copied.

    Normalization, a BatchNormalization that follows no Conv/Dense (DenseNet, ResNetV2) and a
    Rescaling with an offset run as `x * a`, a quantization point, `+ b` (their statistics frozen), so
    TFLite runs both of their ops in int8. Recurrent layers (LSTM, GRU, Bidirectional) stay float.
    A tensor that only a Concatenate reads gets no point of its own: the concat's output point
    quantizes it, as TFLite runs CONCATENATION with one scale for its inputs and output (tfmot does
    the same).

    Layers TFLite has no integer kernel for (LayerNormalization, MultiHeadAttention, Conv3D, ...) stay
    float (documented fallback): they compute in float and their outputs are quantized for the integer
    layers after them. Layers named in `keep_float` (or left out of `layers`) are not fake-quantized
    and get no output quantization point: the TFLite file runs them, and the ops after them up to the
    next quantization point, in float (the converter would otherwise quantize a layer whose input and
    output both carry ranges).

    Args:
        model: A built Sequential, Functional (possibly nested) or subclassed Keras model. A subclassed
            model's `call` graph is not visible: each of its layers with a config becomes a
            `QuantizeWrapper` (no BatchNormalization folding; `keras.ops` written in `call` stay float)
            and the result is a Functional model `QuantizeLayer -> the rebuilt model`. For full control
            it places `QuantizeWrapper` / `QuantizeLayer` in its own `__init__` (see `QuantizeWrapper`).
        scheme: An `Int8Scheme`. Defaults to `Int8Scheme()`.
        layers: Names of the layers to quantize; `None` quantizes every supported layer. Defaults to `None`.
        keep_float: Names of layers to leave in float (mixed precision; see `sensitivity`). Defaults to `None`.
        configs: `{layer name or class name: QuantizeConfig}` for custom layers or overrides.
            A custom layer can instead declare its weights itself with a method
            `tfcompress_quantizable_weights(self)` returning e.g. `[self.kernel]` (see
            `QuantizeConfig` for the protocol and what happens to its activations).
            Defaults to `None`.
        preserve_sparsity: Whether the zeros of a pruned model survive QAT (pruning-preserving QAT):
            `True` holds the exact zeros of every quantized weight fixed; `False` does not (zeros fill in
            as the weights train; a `PruneWrapper`'s masks are still applied once, when the weights are
            copied); `"auto"` holds a `PruneWrapper`'s masks, and the exact zeros of a plain kernel in
            which at least 1 % (`AUTO_MIN_ZEROS`) of the entries are exactly zero (a stripped pruned
            model: a trained dense kernel has none). An all-zero kernel is never masked (it is a
            zero-initialised one, not a pruned one). Defaults to `"auto"`.
        preserve_clusters: Whether the shared values of a clustered model survive QAT
            (clustering-preserving QAT): `True` keeps the sharing of every quantized weight with at
            most `MAX_CLUSTERS` (256) distinct values (per weight or per output channel); `False`
            lets every entry train on its own; `"auto"` keeps it for the layers of `ClusterWeights`
            wrappers and for plain weights with at most `AUTO_MAX_CLUSTERS` (64) distinct values,
            each shared by `AUTO_MIN_SHARE` (8) entries on average (a stripped clustered model).
            Defaults to `"auto"`.

    Pruning-preserving QAT: a pruned model is quantized as it is, wrapped mid-pruning (its
    `PruneWrapper`s are stripped and their current masks frozen: pruning stops, so finish the schedule
    first) or stripped. Each kept mask becomes a non-trainable 0/1 weight `<name>_mask` of the layer's
    `QuantizeWrapper` (so it is saved in `.keras` files) that multiplies the kernel before anything else:
    the kernel used in training and export is `kernel * mask`, the gradient of a pruned entry is zero,
    a folded BatchNormalization scales each output channel (`kernel * mask * gamma / sqrt(var + eps)`,
    zero stays zero) and symmetric int8 quantization (zero point 0, per channel or per tensor) maps 0 to
    the integer 0, so the int8 TFLite file has the pruned model's zeros. Layers left float (`keep_float`,
    not in `layers`, or without an integer kernel) are not masked; a warning names pruned ones.
    The kept masks are listed in `qat_model.preserved_sparsity` (`{layer name: zero fraction}`).

    Clustering-preserving QAT: a clustered model (with `ClusterWeights` wrappers, which are stripped,
    or stripped) keeps its weight sharing: each kept weight is computed as `centroids[indices]` from a
    trainable `<name>_centroids` and a fixed `<name>_cluster_indices` weight of its `QuantizeWrapper`
    (gradients of the entries sharing a value add up on it, as in `ClusterWeights`), before the mask,
    BN folding (one scale per output channel) and per-channel int8 rounding: every output channel of
    the int8 file holds at most as many distinct values as there are clusters. The kept sharing is
    listed in `qat_model.preserved_clusters` (`{layer name: clusters}`). Pruned and clustered
    together (`cluster(..., preserve_zeros=True)` of a pruned model) keeps both.

    Returns:
        A new, uncompiled Keras model (Functional) with the same inputs and outputs.

    Raises:
        TypeError: `model` is not a `keras.Model`, or an argument has the wrong type.
        ValueError: `layers` / `keep_float` name layers the model does not have (the message lists the
            model's layers), or a layer has no quantization config.

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
        Integer-Arithmetic-Only Inference" (CVPR); pruning-preserving QAT as in TensorFlow Model
        Optimization's PQAT (Zhu & Gupta 2017 for the pruning it preserves).
    """
    nested = _masks is not None
    if not nested:
        if not isinstance(model, keras.Model):
            raise TypeError(f"quantize() expects a keras.Model (Sequential or Functional), got "
                            f"{type(model).__name__}: {model!r:.80}.")
        if scheme is not None and not isinstance(scheme, Int8Scheme):
            raise TypeError(f"quantize(): scheme= must be an Int8Scheme, got {scheme!r}.")
        if not (preserve_sparsity is True or preserve_sparsity is False or preserve_sparsity == "auto"):
            raise ValueError(f"quantize(): preserve_sparsity must be 'auto', True or False, "
                             f"got {preserve_sparsity!r}.")
        if configs is not None and not isinstance(configs, dict):
            raise TypeError(f"quantize(): configs= takes a dict {{layer or class name: QuantizeConfig}}, "
                            f"got {configs!r}.")
        for key, value in (configs or {}).items():
            if not isinstance(value, QuantizeConfig):
                raise TypeError(f"quantize(): configs[{key!r}] must be a QuantizeConfig, got {value!r}.")
        layers, keep_float = _check_names(model, _names_arg(layers, "layers"),
                                          _names_arg(keep_float, "keep_float"))
        if not (preserve_clusters is True or preserve_clusters is False or preserve_clusters == "auto"):
            raise ValueError(f"quantize(): preserve_clusters must be 'auto', True or False, "
                             f"got {preserve_clusters!r}.")
        _clustered, model = _strip_clusters(model)
        _masks, model = _prune_masks(model)
        if preserve_sparsity is False:
            _masks = {}
    scheme = scheme or Int8Scheme()
    configs = dict(configs or {})
    keep_float = set(keep_float or ())
    selected = None if layers is None else set(layers)
    if isinstance(model, keras.Sequential):
        model = _sequential_to_functional(model)
    elif not _is_functional(model):
        if nested:
            raise ValueError(
                f"quantize(): nested model {model.name!r} is a subclassed {type(model).__name__}; quantize "
                "it on its own (quantize(inner)) or build it with the Functional API.")
        from tfcompress.quantization._qat_model import is_qat_model

        if is_qat_model(model):
            raise ValueError(
                f"quantize(): model {model.name!r} is a subclassed {type(model).__name__} that already holds "
                "quantization layers (QuantizeWrapper / QuantizeLayer): it is a QAT model already; train and "
                "export it as it is.")
        return _quantize_subclassed(model, scheme, configs, keep_float, selected)

    layer_configs = {}  # id(original layer) -> QuantizeConfig, for the layers to quantize
    for op in model.operations:
        if not isinstance(op, keras.layers.Layer) or isinstance(op, (keras.layers.InputLayer, keras.Model)):
            continue
        cfg = _config_of(op, configs, keep_float, selected, scheme)
        if cfg is not None:
            layer_configs[id(op)] = cfg
    graph = tensor_consumers(model)
    plan = _plan_fusions(model, layer_configs, graph)
    absorbed = {id(a) for _, _, group in plan.values() for a in group}
    concat_fed = _concat_fed(model, layer_configs, plan, absorbed, graph)
    weight_pairs = []  # (original layer, new layer) whose weights get copied after building
    mask_pairs = []  # (QuantizeWrapper, {weight name: mask}) set after building
    cluster_pairs = []  # (QuantizeWrapper, {weight name: (centroids, indices)}) set after building

    affine = {id(op): _affine(op) for op in model.operations
              if id(op) in layer_configs and id(op) not in absorbed and not layer_configs[id(op)].float_fallback}
    affine = {k: v for k, v in affine.items() if v is not None}

    def clone_function(op):
        if not isinstance(op, keras.layers.Layer) or id(op) in absorbed or id(op) in affine:
            return op
        if isinstance(op, keras.Model):
            return quantize(op, scheme, layers, keep_float, configs, preserve_sparsity, preserve_clusters,
                            _quantize_inputs=False, _masks=_masks, _clustered=_clustered)
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
        masks = _sparsity_masks(op, cfg, preserve_sparsity, _masks)
        clusters = _clusters(op, cfg, preserve_clusters, _clustered)
        if id(op) in concat_fed:
            cfg = QuantizeConfig(**{**cfg.get_config(), "quantize_output": False})
        wrapper = QuantizeWrapper(new, scheme=scheme, quantize_config=cfg,
                                  activation=None if act in (None, "linear") else act,
                                  batch_norm=new_bn, masked_weights=sorted(masks),
                                  clustered_weights={n: list(c.shape) for n, (c, _) in clusters.items()},
                                  name=f"quant_{op.name}")
        if masks:
            mask_pairs.append((wrapper, masks))
        if clusters:
            cluster_pairs.append((wrapper, clusters))
        return wrapper

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
        if id(op) in affine:  # x * a -> quantization point -> + b (see _affine)
            a, b = affine[id(op)]
            out = keras.ops.add(QuantizeLayer(scheme)(keras.ops.multiply(args[0], a)), b)
        else:
            out = op(*args, **kwargs)
        if isinstance(op, (QuantizeWrapper, keras.Model)) or id(op) in concat_fed:
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
    preserved = {}
    for wrapper, masks in mask_pairs:
        for name, mask in masks.items():
            wrapper.masks[name].assign(mask)
            var = getattr(wrapper.layer, name)
            var.assign(np.asarray(var.numpy()) * mask)
            preserved[wrapper.layer.name if len(masks) == 1 else f"{wrapper.layer.name}/{name}"] = float(
                1.0 - mask.mean())
    shared = {}
    for wrapper, clusters in cluster_pairs:
        for name, (centroids, indices) in clusters.items():
            wrapper.centroids[name].assign(centroids)
            wrapper.cluster_indices[name].assign(indices)
            shared[wrapper.layer.name if len(clusters) == 1 else f"{wrapper.layer.name}/{name}"] = centroids.shape[1]
    for layer in new_model.layers:
        if isinstance(layer, keras.Model):
            preserved.update(getattr(layer, "preserved_sparsity", {}))
            shared.update(getattr(layer, "preserved_clusters", {}))
    new_model.preserved_sparsity = preserved
    new_model.preserved_clusters = shared
    if not nested:
        lost = sorted(name for name, masks in _masks.items()
                      if any(not m.all() for m in masks.values()) and name not in preserved
                      and not any(k.startswith(name + "/") for k in preserved))
        if lost:
            warnings.warn(
                f"quantize(): the zeros of pruned layers {lost} are not preserved: they stay float "
                "(keep_float / layers= / no integer kernel), so their weights train freely. Keep them "
                "quantized, or strip the model and fine-tune them without QAT.", stacklevel=2)
    return new_model


def _config_of(layer, configs, keep_float, selected, scheme):
    """The QuantizeConfig of a layer to quantize, None for one left float; raises for an unknown one."""
    if layer.name in keep_float or (selected is not None and layer.name not in selected):
        return None
    cfg = configs.get(layer.name) or configs.get(type(layer).__name__)
    cfg = cfg or QuantizeConfig.for_layer(layer, scheme.per_channel)
    if cfg is None:
        raise ValueError(
            f"quantize(): layer {layer.name!r} of class {type(layer).__name__} has no quantization config. "
            f"Give {type(layer).__name__} a method tfcompress_quantizable_weights(self) returning the weights "
            f"to fake-quantize (e.g. [self.kernel]; see QuantizeConfig), annotate it with "
            f"configs={{{type(layer).__name__!r}: QuantizeConfig(weights={{...}})}}, or keep "
            f"it float with keep_float=[{layer.name!r}].")
    return cfg


def _quantize_subclassed(model, scheme, configs, keep_float, selected):
    """QAT for a subclassed model, whose `call` graph is not visible.

    Every leaf layer with a config becomes a `QuantizeWrapper` (weights fake-quantized, output
    quantized; no BatchNormalization folding, which needs the graph), through the surgery engine;
    the result is a Functional model `QuantizeLayer -> rebuilt model` so the input has a range too.
    Operations written in `call` with `keras.ops` get no quantization point (TFLite runs them in
    float); put a `QuantizeLayer` after them in the class for a full-integer model.
    """
    from tfcompress._surgery import as_functional, copy_layer

    def replace(layer):
        cfg = _config_of(layer, configs, keep_float, selected, scheme)
        if cfg is None or cfg.float_fallback or not (cfg.weights or cfg.quantize_output):
            return None
        return QuantizeWrapper(copy_layer(layer), scheme=scheme, quantize_config=cfg, name=f"quant_{layer.name}")

    inner = as_functional(rebuild(model, replace))
    if not _is_functional(inner):
        raise ValueError(f"quantize(): subclassed model {model.name!r} has no recorded input shape; call it "
                         "on a batch of data first.")
    inputs = keras.tree.map_structure(
        lambda x: keras.Input(batch_shape=x.shape, dtype=x.dtype), inner.input)
    quantized = keras.tree.map_structure(lambda t: QuantizeLayer(scheme)(t) if _is_float(t) else t, inputs)
    new_model = keras.Model(inputs, inner(quantized), name=model.name)
    new_model.preserved_sparsity = {}
    return new_model


def _is_functional(model):
    """Functional models (and functional subclasses) have a graph of layers we can clone."""
    return any(c.__name__ == "Functional" for c in type(model).__mro__)
