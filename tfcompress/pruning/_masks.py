"""Mask computation, done eagerly (outside the compiled train step) every `frequency` steps."""

import numpy as np

from tfcompress._surgery import iter_layers
from tfcompress.pruning._channel_graph import tile_keep
from tfcompress.pruning._layouts import SEPARABLE, from3d, to3d
from tfcompress.pruning.channels import Channels
from tfcompress.pruning.n_of_m import NofM
from tfcompress.pruning.pruning_pattern import lowest


def find_wrappers(model):
    from tfcompress.pruning.prune_wrapper import PruneWrapper

    seen, out = set(), []
    for layer in iter_layers(model):
        if isinstance(layer, PruneWrapper) and id(layer) not in seen:
            seen.add(id(layer))
            out.append(layer)
    return out


def _scores(wrapper, var, mask, imp):
    w = np.asarray(var.numpy(), dtype=np.float32) * mask.numpy()
    if wrapper.criterion == "taylor" and imp is not None:
        s = np.asarray(imp.numpy(), dtype=np.float32)
        if s.any():
            return s * (mask.numpy() > 0)
    return np.abs(w)


def _out_weight(wrapper):
    """Index in wrapper.pruned of the weight carrying the layer's output channels."""
    return len(wrapper.pruned) - 1  # kernel, or pointwise_kernel of a separable conv


def _channel_keep(group, sparsity):
    total = None
    for w in group:
        name, var, spec, mask, imp = w.pruned[_out_weight(w)]
        s = to3d(_scores(w, var, mask, imp), spec).sum(axis=(0, 1))
        s = s / (s.mean() + 1e-12)
        total = s if total is None else total + s
    k = int(round(sparsity * total.size))
    return (~lowest(total, k)).astype(np.float32)


def _assign(w, i, mask):
    name, var, spec, mvar, imp = w.pruned[i]
    # Scores are taken on w * mask, so a pruned weight scores 0 and cannot come back; the variable
    # itself is not rewritten (one assignment less per update; strip() applies the mask).
    mvar.assign(mask.astype(mvar.dtype))
    if imp is not None:
        imp.assign(np.zeros(var.shape, dtype=imp.dtype))


def update_masks(wrappers, step, force=False):
    """Recomputes the masks of the wrappers whose schedule updates at `step`. Returns them."""
    due = [w for w in wrappers if force or w.schedule.should_update(step)]
    if not due:
        return []
    by_name = {w.layer.name: w for w in wrappers}
    channel_keep = {}
    # channel groups: the producers of a group are ranked jointly
    groups = {}
    for w in wrappers:
        if isinstance(w.pattern, Channels) and w.prune_output:
            groups.setdefault(w.channel_group or w.layer.name, []).append(w)
    for gid, members in groups.items():
        if any(m in due for m in members) or any(
                w in due and w.input_channel_group == gid for w in wrappers):
            s = max(m.schedule(step) for m in members)
            channel_keep[gid] = _channel_keep(members, s)
    global_ws = [w for w in due if getattr(w, "scope", "layer") == "global"
                 and not isinstance(w.pattern, (Channels, NofM)) and w.prune_output]
    if global_ws:
        _global_update(global_ws, step)
    for w in due:
        if w in global_ws:
            continue
        if isinstance(w.pattern, Channels):
            out_i = _out_weight(w)
            for i, (name, var, spec, mvar, imp) in enumerate(w.pruned):
                m3 = np.ones(to3d(np.zeros(var.shape), spec).shape, dtype=np.float32)
                if i == out_i and w.prune_output:
                    keep = channel_keep[w.channel_group or w.layer.name]
                    m3 = m3 * keep.reshape(1, 1, -1)
                if i == out_i and w.input_channel_group in channel_keep:
                    keep_in = channel_keep[w.input_channel_group]
                    if isinstance(w.layer, SEPARABLE):
                        keep_in = np.repeat(keep_in, w.layer.depth_multiplier)
                    m3 = m3 * tile_keep(keep_in, m3.shape[1]).reshape(1, -1, 1)
                _assign(w, i, from3d(m3, var.shape, spec))
            continue
        s = w.schedule(step)
        for i, (name, var, spec, mvar, imp) in enumerate(w.pruned):
            scores = to3d(_scores(w, var, mvar, imp), spec)
            _assign(w, i, from3d(w.pattern.compute_mask(scores, s), var.shape, spec))
    del by_name
    return due


def _global_update(wrappers, step):
    s = min(wrappers[0].schedule(step), wrappers[0].pattern.max_sparsity)
    entries, scores, sizes = [], [], []
    for w in wrappers:
        for i, (name, var, spec, mvar, imp) in enumerate(w.pruned):
            s3 = to3d(_scores(w, var, mvar, imp), spec)
            g = w.pattern.group_scores(s3)
            entries.append((w, i, s3.shape, g.size))
            scores.append(g)
            sizes.append(np.asarray(w.pattern.group_sizes(s3.shape), dtype=np.float64).reshape(-1))
    scores, sizes = np.concatenate(scores), np.concatenate(sizes)
    order = np.argsort(scores, kind="stable")
    cum = np.cumsum(sizes[order])
    target = round(s * sizes.sum())
    n_prune = int(np.searchsorted(cum, target - 1e-9, side="left")) + 1 if target > 0 else 0
    pruned = np.zeros(scores.size, dtype=bool)
    pruned[order[:min(n_prune, scores.size)]] = True
    start = 0
    for w, i, shape, n in entries:
        keep = (~pruned[start:start + n]).astype(np.float32)
        start += n
        var, spec = w.pruned[i][1], w.pruned[i][2]
        _assign(w, i, from3d(w.pattern.expand(keep, shape), var.shape, spec))


def sparsity_report(model):
    """`{layer_name: fraction of zero mask entries}` of the pruned weights of every wrapper."""
    out = {}
    for w in find_wrappers(model):
        total = zeros = 0
        for name, var, spec, mvar, imp in w.pruned:
            m = mvar.numpy()
            total += m.size
            zeros += int((m == 0).sum())
        out[w.layer.name] = zeros / max(total, 1)
    return out
