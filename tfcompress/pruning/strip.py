"""strip(): a plain Keras model with the pruning masks baked into the weights."""

import keras

from tfcompress._surgery import find_layers, rebuild


def strip(model):
    """Returns a copy of `model` with every `PruneWrapper` replaced by its layer, masks applied.

    The result holds only standard Keras layers (zeros in the pruned weights), so it exports with
    `tfcompress.export.export_tflite` or any Keras tooling. The given model is not modified.

    Args:
        model: A model returned by `prune` (possibly trained or loaded from `.keras`).

    Returns:
        A new `keras.Model` with no `PruneWrapper`.

    Example:
        >>> import keras
        >>> from tfcompress.pruning import prune, strip, ConstantSparsity
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
        >>> plain = strip(prune(model, schedule=ConstantSparsity(0.5)))
        >>> type(plain.layers[0]).__name__
        'Dense'

    References:
        Zhu & Gupta 2017, "To prune, or not to prune" (arXiv:1710.01878).
    """
    from tfcompress.pruning.prune_wrapper import PruneWrapper

    if not isinstance(model, keras.Model):
        raise TypeError(f"strip() takes a keras.Model, got {type(model).__name__}.")

    return rebuild(model, lambda layer: layer.unwrap() if isinstance(layer, PruneWrapper) else None)


def has_prune_wrappers(model):
    """True when `model` (or a nested model) holds a `PruneWrapper` (used by export's prepare step)."""
    from tfcompress.pruning.prune_wrapper import PruneWrapper

    return isinstance(model, keras.Model) and bool(find_layers(model, lambda l: isinstance(l, PruneWrapper)))
