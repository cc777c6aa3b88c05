"""N:M semi-structured sparsity pattern."""

import keras
import numpy as np

from tfcompress.pruning.pruning_pattern import PruningPattern


@keras.saving.register_keras_serializable(package="tfcompress")
class NofM(PruningPattern):
    """N:M sparsity: at most `n` non-zeros in every group of `m` consecutive input channels.

    Groups run along the input (reduction) axis of each weight at fixed spatial tap and output
    channel. While the schedule ramps up, each group loses `round(sparsity * m)` weights, capped at
    `m - n`, so the pattern's sparsity tops out at `1 - n / m` (50 % for 2:4) whatever the schedule's
    final value. A partial group at the end keeps at most `n` of its weights.

    Args:
        n: Non-zeros kept per group. Defaults to 2.
        m: Group size, > `n`. Defaults to 4.

    Example:
        >>> import numpy as np
        >>> mask = NofM(2, 4).compute_mask(np.array([[[1.0], [4.0], [2.0], [3.0]]]), 0.5)
        >>> mask.ravel().tolist()
        [0.0, 1.0, 0.0, 1.0]

    References:
        Mishra et al. 2021, "Accelerating Sparse Deep Neural Networks" (2:4 structured sparsity).
    """

    def __init__(self, n=2, m=4):
        for name, v in (("n", n), ("m", m)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}.")
        if n >= m:
            raise ValueError(f"n must be smaller than m (keep n of every m weights), got n={n}, m={m}.")
        self.n = n
        self.m = m

    @property
    def max_sparsity(self):
        return 1.0 - self.n / self.m

    def compute_mask(self, scores, sparsity):
        p, i, o = scores.shape
        zeros = min(self.m - self.n, int(round(float(sparsity) * self.m)))
        pad = -i % self.m
        s = np.pad(scores.astype(np.float64), ((0, 0), (0, pad), (0, 0)), constant_values=-np.inf)
        s = s.reshape(p, (i + pad) // self.m, self.m, o)
        order = np.argsort(s, axis=2, kind="stable")  # lowest first
        ranks = np.argsort(order, axis=2, kind="stable")
        mask = (ranks >= zeros).astype("float32").reshape(p, i + pad, o)
        return mask[:, :i, :]

    def group_scores(self, scores):  # N:M is decided within each group; globally it ranks weights
        return scores.reshape(-1)

    def expand(self, keep, shape, sizes=False):
        return keep.reshape(shape).astype("float32")

    def get_config(self):
        return {"n": self.n, "m": self.m}
