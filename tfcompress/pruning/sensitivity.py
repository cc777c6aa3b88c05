"""sensitivity(): per-layer accuracy drop when a single layer is pruned, to choose per-layer targets."""

import keras
import numpy as np

from tfcompress._surgery import copy_layer, iter_layers, rebuild
from tfcompress.pruning._layouts import from3d, is_prunable_type, prunable_weights, to3d
from tfcompress.pruning.pruning_pattern import PruningPattern
from tfcompress.pruning.unstructured import Unstructured


def _accuracy(y_true, y_pred):
    y_pred = np.asarray(y_pred)
    return float(np.mean(y_pred.argmax(-1) == np.asarray(y_true).reshape(-1)))


def sensitivity(model, data, sparsities=(0.25, 0.5, 0.75, 0.9), *, pattern=None, layers=None,
                metric=None, batch_size=256, plot_path=None):
    """Prunes one layer at a time (magnitude, no retraining) and reports the metric drop.

    For every prunable layer and every sparsity, the layer's weights are masked with `pattern`
    while all other layers stay dense; the difference to the dense model's metric is its
    sensitivity. Layers that lose little can take a higher target in `prune(schedule={...})`.
    The given model is not modified (a copy is evaluated).

    Args:
        model: A trained `keras.Model`.
        data: `(x, y)` to evaluate on (y: integer labels for the default metric).
        sparsities: Sparsities to try, each in (0, 1). Defaults to (0.25, 0.5, 0.75, 0.9).
        pattern: The `PruningPattern`. Defaults to `Unstructured()`.
        layers: Layer names to analyse; None for every prunable layer. Defaults to None.
        metric: `metric(y_true, y_pred) -> float`, higher is better. Defaults to top-1 accuracy.
        batch_size: Prediction batch size. Defaults to 256.
        plot_path: If given, a PNG of metric drop vs sparsity per layer is written there.
            Defaults to None.

    Returns:
        dict with `baseline` (dense metric), `drops` (`{layer: {sparsity: drop}}`, drop =
        baseline - metric, in metric units), `markdown` (the table) and `plot` (path or None).

    Example:
        >>> import keras, numpy as np
        >>> from tfcompress.pruning import sensitivity
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
        >>> x, y = np.random.rand(32, 4).astype("float32"), np.zeros(32, "int64")
        >>> report = sensitivity(model, (x, y), sparsities=(0.5,))
        >>> list(report["drops"])
        ['d']

    References:
        Li et al. 2017, "Pruning Filters for Efficient ConvNets" (per-layer sensitivity analysis).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"sensitivity() takes a keras.Model, got {type(model).__name__}.")
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError("data must be a tuple (x, y) of inputs and labels.")
    sparsities = tuple(sparsities)
    if not sparsities or any(not isinstance(s, (int, float)) or not 0.0 < s < 1.0 for s in sparsities):
        raise ValueError(f"sparsities must be numbers in (0, 1), got {sparsities!r}.")
    pattern = Unstructured() if pattern is None else pattern
    if not isinstance(pattern, PruningPattern):
        raise TypeError(f"pattern must be a PruningPattern, got {pattern!r}.")
    metric = metric or _accuracy
    x, y = data
    work = rebuild(model, lambda layer: copy_layer(layer))
    candidates = [l for l in iter_layers(work) if is_prunable_type(l) and prunable_weights(l)]
    if layers is not None:
        names = {l.name for l in candidates}
        for n in layers:
            if n not in names:
                raise ValueError(f"layers= names '{n}', which is not a prunable layer. Prunable: {sorted(names)}.")
        candidates = [l for l in candidates if l.name in set(layers)]

    def evaluate():
        return metric(y, work.predict(x, batch_size=batch_size, verbose=0))

    baseline = evaluate()
    drops = {}
    for layer in candidates:
        originals = [(var, var.numpy()) for _, var, _ in prunable_weights(layer)]
        drops[layer.name] = {}
        for s in sparsities:
            for (_, var, spec), (_, value) in zip(prunable_weights(layer), originals):
                m3 = pattern.compute_mask(np.abs(to3d(value, spec)), s)
                var.assign(value * from3d(m3, value.shape, spec))
            drops[layer.name][float(s)] = baseline - evaluate()
        for var, value in originals:
            var.assign(value)

    header = "| layer | " + " | ".join(f"{s:.0%}" for s in sparsities) + " |"
    lines = [f"Dense metric: {baseline:.4f}; drop when only that layer is pruned:", "", header,
             "|---" * (len(sparsities) + 1) + "|"]
    for name, row in drops.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[float(s)]:+.4f}" for s in sparsities) + " |")
    plot = None
    if plot_path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for name, row in drops.items():
            ax.plot([100 * s for s in row], list(row.values()), marker="o", label=name)
        ax.set_xlabel("sparsity of the layer (%)")
        ax.set_ylabel("metric drop")
        ax.set_title("Pruning sensitivity per layer")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(plot_path, dpi=100)
        plt.close(fig)
        plot = plot_path
    return {"baseline": baseline, "drops": drops, "markdown": "\n".join(lines), "plot": plot}
