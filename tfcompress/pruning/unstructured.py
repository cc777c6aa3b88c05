"""Unstructured (element-wise) sparsity pattern."""

import keras

from tfcompress.pruning.pruning_pattern import PruningPattern


@keras.saving.register_keras_serializable(package="tfcompress")
class Unstructured(PruningPattern):
    """Prunes individual weights: the lowest-scoring fraction of each weight tensor is zeroed.

    Compresses well with gzip and with the tfcompress sparse TFLite kernels; dense kernels run at
    the same speed.

    Example:
        >>> import numpy as np
        >>> mask = Unstructured().compute_mask(np.array([[[3.0, 1.0, 2.0, 4.0]]]), 0.5)
        >>> mask.ravel().tolist()
        [1.0, 0.0, 0.0, 1.0]

    References:
        Han et al. 2015, "Learning both Weights and Connections for Efficient Neural Networks".
    """

    def group_scores(self, scores):
        return scores.reshape(-1)

    def expand(self, keep, shape, sizes=False):
        return keep.reshape(shape).astype("float32")
