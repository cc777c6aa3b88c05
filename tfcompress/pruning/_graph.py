"""Graph utilities: rebuilding models layer by layer, and channel dependency analysis."""

import keras
import numpy as np

from tfcompress.pruning._layouts import CONV, DEPTHWISE, SEPARABLE

L = keras.layers
PASS_THROUGH = (L.BatchNormalization, L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.Softmax, L.Dropout,
                L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianNoise,
                L.GaussianDropout, L.Identity, L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
                L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D,
                L.AveragePooling2D, L.AveragePooling3D, L.GlobalAveragePooling1D,
                L.GlobalAveragePooling2D, L.GlobalAveragePooling3D, L.GlobalMaxPooling1D,
                L.GlobalMaxPooling2D, L.GlobalMaxPooling3D, L.Cropping1D, L.Cropping2D, L.Cropping3D,
                L.UpSampling1D, L.UpSampling2D, L.UpSampling3D)
MERGE = (L.Add, L.Subtract, L.Maximum, L.Minimum, L.Average)
CHANNEL_LAYERS = (L.Dense,) + CONV + SEPARABLE  # may lose output channels / input channels


def is_graph_model(model):
    return isinstance(model, keras.Sequential) or type(model).__name__ == "Functional"


def iter_layers(model):
    """All layers of a model, recursing into nested models (depth first)."""
    for layer in getattr(model, "layers", []):
        yield layer
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)


def copy_layer(layer, weights=None):
    """A new, built layer with the same config as `layer` and its weights (or `weights`)."""
    new = layer.__class__.from_config(layer.get_config())
    build_config = layer.get_build_config()
    if build_config:
        new.build_from_config(build_config)
    new.set_weights(layer.get_weights() if weights is None else weights)
    return new


def rebuild(model, make_layer):
    """A copy of `model` where every leaf layer `l` becomes `make_layer(l)` (never mutates `model`).

    Sequential and Functional models are cloned with `keras.models.clone_model`; nested models
    are rebuilt recursively; a subclassed model is re-created from its config, built, and its
    layer attributes replaced by `make_layer` of the original's attributes.
    """
    def fn(layer):
        if isinstance(layer, keras.Model):
            return rebuild(layer, make_layer)
        return make_layer(layer)

    if is_graph_model(model):
        return keras.models.clone_model(model, clone_function=fn)
    return _rebuild_subclassed(model, fn)


def _rebuild_subclassed(model, fn):
    name = f"'{model.name}' ({type(model).__name__})"
    if not model.built:
        raise ValueError(f"Subclassed model {name} is not built: call it on a batch of data (or "
                         "model.build(input_shape)) first, then pass it again.")
    try:
        copy = model.__class__.from_config(model.get_config())
    except Exception as e:  # noqa: BLE001
        raise ValueError(
            f"Subclassed model {name} cannot be copied from its config ({type(e).__name__}: {e}). "
            "tfcompress rebuilds subclassed models as `cls.from_config(model.get_config())`: implement "
            "get_config() returning the constructor arguments, or build the model with the "
            "Functional API.") from e
    build_config = model.get_build_config()
    if not build_config:
        raise ValueError(f"Subclassed model {name} has no build config; call it on data first.")
    copy.build_from_config(build_config)
    replaced = 0
    for attr, value in list(vars(model).items()):
        if attr.startswith("_"):
            continue
        target = getattr(copy, attr, None)
        if isinstance(value, keras.layers.Layer) and isinstance(target, keras.layers.Layer):
            new = fn(value)
            delattr(copy, attr)
            setattr(copy, attr, new)
            replaced += 1
        elif isinstance(value, (list, tuple)) and value and all(
                isinstance(v, keras.layers.Layer) for v in value):
            new_list = [fn(v) for v in value]
            delattr(copy, attr)
            setattr(copy, attr, new_list)
            replaced += 1
    own = [v for v in model.weights if not any(v is w for l in iter_layers(model) for w in l.weights)]
    if own:
        raise ValueError(f"Subclassed model {name} owns variables outside its layers "
                         f"({[v.name for v in own]}); move them into a layer.")
    return copy


# ---------------------------------------------------------------- graph of a flat model
def _history_names(obj, out):
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            out.append(obj["config"]["keras_history"][0])
        else:
            for v in obj.values():
                _history_names(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _history_names(v, out)
    return out


def layer_graph(model):
    """`(layers, inputs, consumers, outputs, shared)` of a flat Sequential/Functional model, by name."""
    if isinstance(model, keras.Sequential):
        layers = {l.name: l for l in model.layers}
        names = list(layers)
        inputs = {n: ([names[i - 1]] if i else []) for i, n in enumerate(names)}
        outputs = {names[-1]}
        shared = set()
    else:
        config = model.get_config()
        layers = {l.name: l for l in model.layers}
        inputs, shared = {}, set()
        for entry in config["layers"]:
            nodes = entry.get("inbound_nodes", [])
            if len(nodes) > 1:
                shared.add(entry["name"])
            inputs[entry["name"]] = _history_names(nodes, [])
        outputs = set(_history_names(config["output_layers"], [])) if isinstance(
            config["output_layers"][0], dict) else {o[0] for o in _flat_refs(config["output_layers"])}
    consumers = {n: [] for n in inputs}
    for n, ins in inputs.items():
        for i in ins:
            consumers.setdefault(i, []).append(n)
    return layers, inputs, consumers, outputs, shared


def _flat_refs(refs):
    if isinstance(refs, (list, tuple)) and refs and isinstance(refs[0], str):
        return [refs]
    out = []
    for r in refs:
        out.extend(_flat_refs(r))
    return out


def channel_groups(model, producer_ok=lambda layer: True):
    """Groups of layers whose output channels must be pruned (and later removed) together.

    Follows each Dense/Conv/SeparableConv output through channel-wise layers (BatchNormalization,
    activations, pooling, padding, DepthwiseConv with multiplier 1, Flatten before a Dense) to the
    layers that consume the channels; the inputs of element-wise merges (Add, ...) are joined into
    one group. A group reaching a model output, a Concatenate/Reshape/unknown layer, an
    unselected producer or a merge input that comes from elsewhere is blocked.

    Returns:
        `(groups, blocked)`: `groups` is a list of dicts with `id`, `producers`, `consumers`
        (list of `(name, via_flatten)`), `passthrough` (names); `blocked` maps producer name to
        the reason.
    """
    if not is_graph_model(model) or any(isinstance(l, keras.Model) for l in model.layers):
        raise ValueError(
            f"Channels() pruning needs a flat Sequential or Functional model to trace which layers "
            f"consume each channel; '{model.name}' ({type(model).__name__}) is subclassed or nested. "
            "Build it functionally (or flatten the nested model) to use Channels(); other patterns "
            "work on any model.")
    layers, inputs, consumers, outputs, shared = layer_graph(model)
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        parent[find(a)] = find(b)

    info = {}
    reached_merge_inputs = {}
    for p, layer in layers.items():
        if not isinstance(layer, CHANNEL_LAYERS) or p in shared or getattr(layer, "groups", 1) != 1:
            continue
        rec = {"consumers": [], "passthrough": [], "blocked": None}
        info[p] = rec
        if not producer_ok(layer):
            rec["blocked"] = "not selected"
        find(p)
        stack, seen = [p], set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n in outputs:
                rec["blocked"] = rec["blocked"] or f"its channels reach the model output through '{n}'"
            for c in consumers.get(n, []):
                cl = layers.get(c)
                if c in shared:
                    rec["blocked"] = rec["blocked"] or f"'{c}' is shared (called more than once)"
                elif isinstance(cl, CHANNEL_LAYERS) and getattr(cl, "groups", 1) == 1:
                    rec["consumers"].append((c, False))
                elif isinstance(cl, L.Flatten):
                    nxt = consumers.get(c, [])
                    if c in outputs or not nxt or not all(isinstance(layers.get(d), L.Dense) for d in nxt):
                        rec["blocked"] = rec["blocked"] or f"'{c}' (Flatten) does not feed only Dense layers"
                    else:
                        rec["passthrough"].append(c)
                        rec["consumers"].extend((d, True) for d in nxt)
                elif isinstance(cl, DEPTHWISE) and cl.depth_multiplier == 1:
                    rec["passthrough"].append(c)
                    stack.append(c)
                elif isinstance(cl, PASS_THROUGH):
                    rec["passthrough"].append(c)
                    stack.append(c)
                elif isinstance(cl, MERGE):
                    union(p, "merge:" + c)
                    reached_merge_inputs.setdefault(c, set()).add(n)
                    rec["passthrough"].append(c)
                    stack.append(c)
                else:
                    rec["blocked"] = rec["blocked"] or (
                        f"its channels reach '{c}' ({type(cl).__name__}), which cannot drop channels")
    comps = {}
    for p in info:
        comps.setdefault(find(p), []).append(p)
    groups, blocked = [], {}
    for members in comps.values():
        reasons = [info[p]["blocked"] for p in members if info[p]["blocked"]]
        merges = {m[len("merge:"):] for m in parent if m.startswith("merge:") and find(m) == find(members[0])}
        for m in merges:
            missing = set(inputs[m]) - reached_merge_inputs.get(m, set())
            if missing:
                reasons.append(f"merge '{m}' also adds channels from {sorted(missing)}")
        if reasons:
            for p in members:
                blocked[p] = reasons[0]
            continue
        members = sorted(members, key=list(layers).index)
        groups.append({
            "id": members[0],
            "producers": members,
            "consumers": sorted({c for p in members for c in info[p]["consumers"]}),
            "passthrough": sorted({c for p in members for c in info[p]["passthrough"]}),
        })
    return groups, blocked


def tile_keep(keep, size):
    """Expands a per-channel keep vector to `size` inputs (Flatten: channels-last, channel fastest)."""
    if size == keep.size:
        return keep
    if size % keep.size:
        raise ValueError(f"cannot map {keep.size} channels onto {size} inputs")
    return np.tile(keep, size // keep.size)
