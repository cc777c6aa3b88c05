"""Channel (filter) sparsity pattern."""

import keras
import numpy as np

from tfcompress.pruning.pruning_pattern import PruningPattern


@keras.saving.register_keras_serializable(package="tfcompress")
class Channels(PruningPattern):
    """Prunes whole output channels (Conv filters, Dense units), ranked by their L1 score.

    `prune` ties together the layers whose channels must be removed jointly (the inputs of a
    residual `Add`) and also masks the matching input channels of the layers that consume them,
    so `shrink` can then remove the channels physically and produce a smaller dense model
    with exactly the same outputs.

    Example:
        >>> import numpy as np
        >>> mask = Channels().compute_mask(np.array([[[1.0, 5.0], [1.0, 5.0]]]), 0.5)
        >>> mask[0].tolist()
        [[0.0, 1.0], [0.0, 1.0]]

    References:
        Li et al. 2017, "Pruning Filters for Efficient ConvNets".
    """

    def group_scores(self, scores):
        return scores.sum(axis=(0, 1)).reshape(-1)

    def expand(self, keep, shape, sizes=False):
        p, i, o = shape
        if sizes:
            return np.full(o, p * i)
        return np.broadcast_to(keep.reshape(1, 1, o), shape).astype("float32")
