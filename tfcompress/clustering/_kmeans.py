"""1-D k-means for weight sharing (numpy): the three initialisations of Han et al. 2016 + Lloyd."""

import numpy as np

INITS = ("kmeans++", "linear", "density")


def init_centroids(values, n, init, rng):
    values = np.asarray(values, dtype="float64").ravel()
    if values.size == 0:
        return np.zeros(n)
    lo, hi = values.min(), values.max()
    if init == "linear":
        return np.linspace(lo, hi, n)
    if init == "density":
        # Evenly spaced on the cumulative distribution: dense regions get more centroids.
        return np.quantile(values, (np.arange(n) + 0.5) / n)
    # kmeans++ seeding (Arthur & Vassilvitskii 2007).
    centroids = [values[rng.integers(values.size)]]
    dist = (values - centroids[0]) ** 2
    for _ in range(1, n):
        total = dist.sum()
        pick = rng.integers(values.size) if total <= 0 else rng.choice(values.size, p=dist / total)
        centroids.append(values[pick])
        dist = np.minimum(dist, (values - values[pick]) ** 2)
    return np.sort(np.asarray(centroids))


def assign(values, centroids):
    """Index of the nearest centroid for each value."""
    values = np.asarray(values, dtype="float64").ravel()
    return np.argmin(np.abs(values[:, None] - centroids[None, :]), axis=1)


def kmeans_1d(values, n, init="kmeans++", iterations=30, seed=0):
    """Returns `(centroids (n,), indices)`, with empty clusters keeping their initial position."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}.")
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype="float64").ravel()
    centroids = init_centroids(values, n, init, rng).astype("float64")
    for _ in range(iterations):
        idx = assign(values, centroids)
        sums = np.bincount(idx, weights=values, minlength=n)
        counts = np.bincount(idx, minlength=n)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(new, centroids, rtol=0, atol=1e-10):
            break
        centroids = new
    return centroids, assign(values, centroids)
