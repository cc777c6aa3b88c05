"""strip(): a plain Keras model with the pruning masks baked into the weights."""

import numpy as np

import keras

from tfcompress.pruning._graph import copy_layer, iter_layers, rebuild


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

    def make_layer(layer):
        if isinstance(layer, PruneWrapper):
            return copy_layer(layer.layer, masked_weights(layer))
        return copy_layer(layer)

    return rebuild(model, make_layer)


def masked_weights(wrapper):
    """The wrapped layer's weights (get_weights order) with the masks multiplied in."""
    masks = {id(var): mvar.numpy() for _, var, _, mvar, _ in wrapper.pruned}
    return [np.asarray(v.numpy()) * masks[id(v)] if id(v) in masks else np.asarray(v.numpy())
            for v in wrapper.layer.weights]


def has_prune_wrappers(model):
    """True when `model` (or a nested model) holds a `PruneWrapper` (used by export's prepare step)."""
    from tfcompress.pruning._masks import find_wrappers

    return isinstance(model, keras.Model) and bool(find_wrappers(model))
