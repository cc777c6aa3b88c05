"""Base class of sparsity patterns."""

import keras
import numpy as np

from tfcompress._config_object import ConfigObject


def lowest(scores, k):
    """Boolean array, True for exactly `k` lowest entries of a 1-D `scores` (O(n) partition)."""
    out = np.zeros(scores.shape, dtype=bool)
    if k >= scores.size:
        out[:] = True
        return out
    if k <= 0:
        return out
    # Already-pruned entries score exactly 0 and are many: numpy's partition degrades on long runs
    # of ties, so take the zeros first and partition only the rest.
    zero = np.flatnonzero(scores <= 0)
    if k <= zero.size:
        out[zero[:k]] = True
        return out
    out[zero] = True
    rest = np.flatnonzero(scores > 0)
    need = k - zero.size
    out[rest[np.argpartition(scores[rest], need - 1)[:need]]] = True
    return out


@keras.saving.register_keras_serializable(package="tfcompress")
class PruningPattern(ConfigObject):
    """Base class of sparsity patterns: which weights are removed together.

    Patterns work on a canonical 3-D view `(P, I, O)` of every prunable weight: `P` the spatial
    taps, `I` the input channels (the reduction axis), `O` the output channels. A pattern groups
    the entries of that view; a group's score is the mean score of its entries and the lowest
    groups are pruned. Subclasses define `group_scores` and `expand`.

    Example:
        >>> import numpy as np
        >>> from tfcompress.pruning import Unstructured
        >>> mask = Unstructured().compute_mask(np.arange(8.0).reshape(1, 2, 4), 0.5)
        >>> int(mask.sum())
        4
    """

    #: Highest sparsity the pattern can express (N:M caps it at 1 - N/M).
    max_sparsity = 1.0

    def group_scores(self, scores):
        """Scores of the groups of a `(P, I, O)` score array, as a flat array."""
        raise NotImplementedError

    def group_sizes(self, shape):
        """Number of weights in each group, as a flat array matching `group_scores`."""
        return self.expand(np.ones(self._n_groups(shape), dtype=np.float32), shape, sizes=True)

    def _n_groups(self, shape):
        return self.group_scores(np.zeros(shape, dtype=np.float32)).size

    def expand(self, keep, shape, sizes=False):
        """Turns a flat per-group keep vector (1 keep, 0 prune) into a `(P, I, O)` mask."""
        raise NotImplementedError

    def compute_mask(self, scores, sparsity):
        """The `(P, I, O)` 0/1 mask pruning `sparsity` of the groups with the lowest scores."""
        sparsity = min(float(sparsity), self.max_sparsity)
        g = self.group_scores(scores)
        k = int(round(sparsity * g.size))
        keep = (~lowest(g, k)).astype(np.float32)
        return self.expand(keep, scores.shape)
