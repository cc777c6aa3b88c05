"""Channel dependency analysis for Channels() pruning: which layers share output channels."""

import keras
import numpy as np

from tfcompress._surgery import is_graph_model, layer_graph
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
