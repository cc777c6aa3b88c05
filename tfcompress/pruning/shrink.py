"""shrink(): physically remove the channels pruned with Channels()."""

import keras
import numpy as np

from tfcompress._surgery import is_graph_model, iter_layers
from tfcompress.pruning._channel_graph import channel_groups, tile_keep
from tfcompress.pruning._layouts import DEPTHWISE, SEPARABLE, to3d
from tfcompress.pruning.channels import Channels
from tfcompress.pruning.strip import strip


def _take(a, keep_idx, axis):
    return np.take(a, keep_idx, axis=axis)


def shrink(model):
    """Returns a smaller dense model with the channels pruned by `Channels()` removed.

    Each pruned filter (Conv) or unit (Dense) is deleted together with everything that depends
    on it: the matching entries of following BatchNormalization and DepthwiseConv layers and the
    input channels of the next Conv / SeparableConv / Dense (through Flatten too). Channels that
    meet in a residual `Add` were pruned jointly by `prune`, so every input of the Add loses the
    same channels. Because `prune` also masks those input channels, the shrunk model computes the
    same function as the masked model (up to float rounding), and exports to a smaller, faster
    TFLite file with no sparse kernels. The given model is not modified.

    Args:
        model: A flat Sequential or Functional model returned by `prune(..., pattern=Channels())`
            (trained or not).

    Returns:
        A new plain `keras.Model` with fewer channels.

    Example:
        >>> import keras
        >>> from tfcompress.pruning import prune, shrink, Channels, ConstantSparsity, PruningCallback
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="a"),
        ...                           keras.layers.Dense(4, name="b")])
        >>> pruned = prune(model, schedule=ConstantSparsity(0.5, frequency=1), pattern=Channels())
        >>> cb = PruningCallback(); cb.set_model(pruned); cb.on_train_begin(); cb.on_train_batch_begin(0)
        >>> shrink(pruned).get_layer("a").units
        8

    References:
        Li et al. 2017, "Pruning Filters for Efficient ConvNets".
    """
    from tfcompress.pruning.prune_wrapper import PruneWrapper

    if not isinstance(model, keras.Model):
        raise TypeError(f"shrink() takes a keras.Model, got {type(model).__name__}.")
    wrappers = {l.layer.name: l for l in iter_layers(model) if isinstance(l, PruneWrapper)}
    producers = {n: w for n, w in wrappers.items() if isinstance(w.pattern, Channels) and w.prune_output}
    if not producers:
        raise ValueError(f"shrink() needs a model pruned with pattern=Channels(); '{model.name}' has no "
                         "channel-pruned layer. Use strip() for other patterns.")
    if not is_graph_model(model):
        raise ValueError(f"shrink() needs a flat Sequential or Functional model; '{model.name}' is "
                         f"{type(model).__name__}.")
    plain = strip(model)
    groups, _ = channel_groups(plain, lambda layer: layer.name in producers)

    keep_out, keep_in, keep_pass = {}, {}, {}
    for g in groups:
        w = producers[g["producers"][0]]
        _, var, spec, mvar, _ = w.pruned[-1]
        keep = np.flatnonzero(to3d(mvar.numpy(), spec).max(axis=(0, 1)) > 0)
        if keep.size == 0:
            raise ValueError(f"Every channel of group '{g['id']}' is pruned; lower the sparsity.")
        n = to3d(mvar.numpy(), spec).shape[2]
        for p in g["producers"]:
            keep_out[p] = keep
        for c, _ in g["consumers"]:
            keep_in[c] = (keep, n)
        for c in g["passthrough"]:
            keep_pass[c] = keep

    config = plain.get_config()
    for entry in config["layers"]:
        entry.pop("build_config", None)  # shapes change: let the layers build on their new inputs
        name = entry["config"].get("name")
        if name in keep_out:
            key = "units" if "units" in entry["config"] else "filters"
            entry["config"][key] = int(keep_out[name].size)
    cls = keras.Sequential if isinstance(plain, keras.Sequential) else keras.Model
    small = cls.from_config(config)

    for layer in small.layers:
        old = plain.get_layer(layer.name)
        weights = [np.asarray(w) for w in old.get_weights()]
        if not weights:
            continue
        if layer.name in keep_out:
            idx = keep_out[layer.name]
            k = 1 if isinstance(old, SEPARABLE) else 0  # kernel (or pointwise) index
            weights[k] = _take(weights[k], idx, -1)
            if old.use_bias:
                weights[-1] = _take(weights[-1], idx, 0)
        if layer.name in keep_in:
            keep, n = keep_in[layer.name]
            if isinstance(old, SEPARABLE):
                mult = old.depth_multiplier
                weights[0] = _take(weights[0], keep, -2)
                rows = np.flatnonzero(np.repeat(np.isin(np.arange(n), keep), mult))
                weights[1] = _take(weights[1], rows, -2)
            else:
                mask = tile_keep(np.isin(np.arange(n), keep), weights[0].shape[-2])
                weights[0] = _take(weights[0], np.flatnonzero(mask), -2)
        if layer.name in keep_pass:
            idx = keep_pass[layer.name]
            if isinstance(old, DEPTHWISE):
                weights[0] = _take(weights[0], idx, -2)
                if old.use_bias:
                    weights[1] = _take(weights[1], idx, 0)
            elif isinstance(old, keras.layers.BatchNormalization):
                weights = [_take(w, idx, 0) for w in weights]
        layer.set_weights(weights)
    return small
