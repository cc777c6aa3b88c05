"""ClusterWeights: distinct values, k-means fixed point, gradients to centroids, saving."""

import keras
import numpy as np
import pytest

from tfcompress.clustering import ClusterWeights
from tfcompress.clustering._kmeans import kmeans_1d


def _wrapped(rng, n_clusters=8, per_channel=False, init="kmeans++", preserve_zeros=False, kernel=None):
    dense = keras.layers.Dense(6)
    layer = ClusterWeights(dense, n_clusters=n_clusters, init=init, per_channel=per_channel,
                           preserve_zeros=preserve_zeros)
    layer.build((None, 20))
    dense.kernel.assign(rng.normal(size=(20, 6)).astype("float32") if kernel is None else kernel)
    dense.bias.assign(rng.normal(size=6).astype("float32"))
    layer.init_clusters()
    return layer


@pytest.mark.parametrize("init", ["kmeans++", "linear", "density"])
def test_at_most_n_values_and_kmeans_fixed_point(rng, init):
    layer = _wrapped(rng, n_clusters=8, init=init)
    kernel = keras.ops.convert_to_numpy(layer.layer.kernel).ravel()
    clustered = layer.clustered_kernel().ravel()
    assert len(np.unique(clustered)) <= 8
    # Lloyd fixed point (independent check): every weight maps to its nearest shared value, and each
    # shared value is the mean of the weights mapped to it.
    values = np.unique(clustered)
    nearest = values[np.argmin(np.abs(kernel[:, None] - values[None]), axis=1)]
    np.testing.assert_allclose(nearest, clustered, atol=1e-6)
    for v in values:
        np.testing.assert_allclose(kernel[clustered == v].mean(), v, atol=1e-5)
    # Clustering error is far below the spread of the weights.
    assert np.sqrt(np.mean((kernel - clustered) ** 2)) < 0.2 * kernel.std()


def test_per_channel(rng):
    layer = _wrapped(rng, n_clusters=4, per_channel=True)
    clustered = layer.clustered_kernel()
    assert max(len(np.unique(clustered[:, c])) for c in range(6)) <= 4
    assert len(np.unique(clustered)) > 4  # different channels use different values
    assert tuple(layer.centroids.shape) == (6, 4)


def test_output_uses_clustered_kernel(rng):
    layer = _wrapped(rng)
    x = rng.normal(size=(5, 20)).astype("float32")
    ref = x @ layer.clustered_kernel() + keras.ops.convert_to_numpy(layer.layer.bias)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), ref, atol=1e-5)


def test_training_moves_centroids_not_assignments(rng):
    keras.utils.set_random_seed(0)
    layer = _wrapped(rng, n_clusters=4)
    model = keras.Sequential([keras.Input((20,)), layer])
    model.compile(keras.optimizers.SGD(0.05), "mse")
    indices = keras.ops.convert_to_numpy(layer.indices).copy()
    centroids = keras.ops.convert_to_numpy(layer.centroids).copy()
    kernel = keras.ops.convert_to_numpy(layer.layer.kernel).copy()
    model.fit(rng.normal(size=(64, 20)), rng.normal(size=(64, 6)), epochs=2, verbose=0)
    assert np.abs(keras.ops.convert_to_numpy(layer.centroids) - centroids).max() > 1e-4
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.indices), indices)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.layer.kernel), kernel)
    assert len(np.unique(layer.clustered_kernel())) <= 4
    assert {v.name for v in model.trainable_variables} == {"centroids", "bias"}


def test_preserve_zeros_keeps_exact_zeros_through_training(rng):
    kernel = rng.normal(size=(20, 6)).astype("float32")
    kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.8)] = 0.0  # 80 % pruned
    layer = _wrapped(rng, n_clusters=4, preserve_zeros=True, kernel=kernel)
    model = keras.Sequential([keras.Input((20,)), layer])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(rng.normal(size=(64, 20)), rng.normal(size=(64, 6)), epochs=2, verbose=0)
    clustered = layer.clustered_kernel()
    np.testing.assert_array_equal(clustered == 0, kernel == 0)
    assert len(np.unique(clustered)) <= 4


def test_save_load_keras(tmp_path, rng):
    layer = _wrapped(rng, n_clusters=5, per_channel=True)
    model = keras.Sequential([keras.Input((20,)), layer])
    x = rng.normal(size=(3, 20)).astype("float32")
    model.save(tmp_path / "c.keras")
    loaded = keras.models.load_model(tmp_path / "c.keras")
    restored = loaded.layers[0]
    assert isinstance(restored, ClusterWeights) and (restored.n_clusters, restored.per_channel) == (5, True)
    np.testing.assert_array_equal(restored.clustered_kernel(), layer.clustered_kernel())
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_kmeans_1d_matches_sklearn_objective(rng):
    from sklearn.cluster import KMeans

    values = np.concatenate([rng.normal(-1, 0.1, 300), rng.normal(0.5, 0.2, 500), rng.normal(2, 0.05, 200)])
    centroids, idx = kmeans_1d(values, 3, "kmeans++")
    ours = np.sum((values - centroids[idx]) ** 2)
    ref = KMeans(3, n_init=5, random_state=0).fit(values[:, None]).inertia_
    assert ours <= ref * 1.01


@pytest.mark.parametrize("kwargs, match", [({"n_clusters": 1}, "n_clusters"), ({"init": "random"}, "init")])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClusterWeights(keras.layers.Dense(2), **kwargs)


def test_sorted_search_assignment_equals_the_nearest_centroid(rng):
    from tfcompress.clustering._kmeans import assign

    centroids = np.sort(rng.normal(size=9))
    values = np.concatenate([rng.normal(size=5000), (centroids[1:] + centroids[:-1]) / 2])  # + exact ties
    distances = np.abs(values[:, None] - centroids[None, :])
    reference = np.argmin(distances, axis=1)
    labels = assign(values, centroids)
    np.testing.assert_array_equal(labels[:5000], reference[:5000])
    # at a midpoint both neighbours are nearest (up to rounding): either is right
    chosen = distances[np.arange(values.size), labels]
    np.testing.assert_allclose(chosen, distances.min(axis=1), rtol=0, atol=1e-12)


def test_kmeans_1d_few_distinct_values_and_deterministic_inits(rng):
    c, idx = kmeans_1d(np.array([1.0, 1.0, 2.0, 2.0, 2.0]), 4)
    assert c.shape == (4,) and set(c[idx].tolist()) == {1.0, 2.0}
    values = rng.normal(size=2000)
    for init in ("linear", "density"):
        c, idx = kmeans_1d(values, 8, init)
        assert np.all(np.diff(c) > 0)
        np.testing.assert_allclose([values[idx == i].mean() for i in range(8)], c, atol=1e-9)


def test_cluster_logs_each_layer_through_absl(caplog):
    import logging

    from tfcompress.clustering import cluster

    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, name="fc")])
    with caplog.at_level(logging.INFO, logger="absl"):
        cluster(model, n_clusters=4)
    assert any("cluster: layer 'fc'" in r.getMessage() and "128 weights" in r.getMessage()
               for r in caplog.records)
