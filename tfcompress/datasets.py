"""Small real data sets that work offline, for the demo, tests, benchmarks and notebooks."""

import numpy as np


def load_digits(test_fraction=0.2, seed=0, upscale=1):
    """Loads scikit-learn's handwritten digits as NHWC float32 images in [0, 1].

    The 1,797 8x8 images ship inside scikit-learn, so this works with no network. The split is
    stratified and deterministic for a given seed.

    Args:
        test_fraction: Fraction of the images held out for testing. Defaults to 0.2.
        seed: Seed of the shuffle before the split. Defaults to 0.
        upscale: Integer factor to enlarge each image by pixel repetition (2 gives 16x16),
            for architectures that need a larger input. Defaults to 1.

    Returns:
        `((x_train, y_train), (x_test, y_test))`, images of shape `(n, 8 * upscale, 8 * upscale, 1)`
        and integer labels 0..9.

    Example:
        >>> (x_train, y_train), (x_test, y_test) = load_digits()
        >>> x_train.shape, x_test.shape
        ((1438, 8, 8, 1), (359, 8, 8, 1))
    """
    from sklearn.datasets import load_digits as sklearn_digits

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}.")
    if int(upscale) != upscale or upscale < 1:
        raise ValueError(f"upscale must be a positive integer, got {upscale!r}.")
    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype("float32")[..., None]
    labels = bunch.target.astype("int64")
    if upscale > 1:
        images = images.repeat(upscale, axis=1).repeat(upscale, axis=2)
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        n_test = int(round(len(idx) * test_fraction))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])
