"""Block sparsity pattern."""

import keras
import numpy as np

from tfcompress.pruning.pruning_pattern import PruningPattern


@keras.saving.register_keras_serializable(package="tfcompress")
class Block(PruningPattern):
    """Prunes whole blocks of `block_shape = (outputs, inputs)` consecutive weights.

    `Block((1, 4))` and `Block((1, 16))` are the shapes TFLite's block-sparse kernels use: one
    output row by 4 (or 16) consecutive input channels. A block's score is the mean score of its
    weights; edge blocks of a dimension not divisible by the block are smaller.

    Args:
        block_shape: `(outputs, inputs)` tuple of positive integers. Defaults to (1, 4).

    Example:
        >>> import numpy as np
        >>> mask = Block((1, 2)).compute_mask(np.array([[[1.0], [2.0], [5.0], [6.0]]]), 0.5)
        >>> mask.ravel().tolist()
        [0.0, 0.0, 1.0, 1.0]

    References:
        Elsen et al. 2020, "Fast Sparse ConvNets" (block sparsity for mobile inference).
    """

    def __init__(self, block_shape=(1, 4)):
        block_shape = tuple(block_shape) if isinstance(block_shape, (tuple, list)) else block_shape
        if (not isinstance(block_shape, tuple) or len(block_shape) != 2
                or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1
                           for b in block_shape)):
            raise ValueError(f"block_shape must be a tuple (outputs, inputs) of two positive integers, "
                             f"e.g. (1, 4); got {block_shape!r}.")
        self.block_shape = block_shape

    def _padded(self, scores):
        r, c = self.block_shape
        p, i, o = scores.shape
        pi, po = -i % c, -o % r
        padded = np.pad(scores, ((0, 0), (0, pi), (0, po)), constant_values=np.nan)
        return padded.reshape(p, (i + pi) // c, c, (o + po) // r, r)

    def group_scores(self, scores):
        return np.nanmean(self._padded(scores.astype(np.float64)), axis=(2, 4)).reshape(-1)

    def expand(self, keep, shape, sizes=False):
        r, c = self.block_shape
        p, i, o = shape
        if sizes:  # number of real weights per block
            return np.sum(~np.isnan(self._padded(np.zeros(shape))), axis=(2, 4)).reshape(-1)
        k = keep.reshape(p, -(-i // c), -(-o // r))
        full = np.repeat(np.repeat(k, c, axis=1), r, axis=2)
        return full[:, :i, :o].astype("float32")

    def get_config(self):
        return {"block_shape": list(self.block_shape)}
