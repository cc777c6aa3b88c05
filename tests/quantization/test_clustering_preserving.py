"""Clustering-preserving QAT: a clustered model keeps its shared values through QAT training, BN
folding, save/load and the int8 TFLite file (weights read with LiteRT's own flatbuffer schema)."""

import keras
import numpy as np
import pytest

from tfcompress.clustering import cluster, strip
from tfcompress.export import export_tflite, run_tflite
from tfcompress.quantization import QuantizeWrapper, quantize
from tfcompress.quantization._fake_quant import numpy_fake_quant

from tests.quantization.test_sparsity_preserving import _compile, int8_weights

L = keras.layers
CLUSTERS = 8


def distinct_per_channel(data, shape):
    """Largest number of distinct int8 values in one output channel (TFLite puts it on axis 0, except
    DEPTHWISE_CONV_2D's last axis; the digits CNN has none)."""
    rows = data.reshape(shape[0], -1)
    return max(len(np.unique(r)) for r in rows)


def max_distinct(tflite):
    model_weights = int8_weights(tflite)
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    shapes = {t.name.decode(): tuple(t.shape) for t in model.subgraphs[0].tensors}
    return {name: distinct_per_channel(data, shapes[name]) for name, data, _ in model_weights}


@pytest.fixture(scope="module")
def clustered(digits):
    """A digits CNN (Conv-BN-ReLU, Conv-ReLU, Dense, Dense), clustered to 8 shared values per kernel and
    fine-tuned (still wrapped); its accuracy after strip."""
    (x_train, y_train), (x_test, y_test) = digits
    keras.utils.set_random_seed(5)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(16, 3, padding="same", use_bias=False), L.BatchNormalization(), L.ReLU(),
        L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(),
        L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10),
    ])
    _compile(model, 1e-3).fit(x_train, y_train, epochs=5, batch_size=32, verbose=0)
    wrapped = _compile(cluster(model, n_clusters=CLUSTERS, min_weights=1), 1e-4)
    wrapped.fit(x_train, y_train, epochs=1, batch_size=32, verbose=0)
    acc = float(np.mean(strip(wrapped).predict(x_test, verbose=0).argmax(-1) == y_test))
    return wrapped, acc


def test_clustered_qat_int8_file_keeps_at_most_k_values_per_channel(clustered, digits):
    (x_train, y_train), (x_test, y_test) = digits
    wrapped, clustered_acc = clustered
    qat = _compile(quantize(wrapped), 1e-4)
    assert qat.preserved_clusters == {"conv2d": CLUSTERS, "conv2d_1": CLUSTERS, "dense": CLUSTERS,
                                      "dense_1": CLUSTERS}
    qat.fit(x_train, y_train, epochs=2, batch_size=32, verbose=0)
    tflite, report = export_tflite(qat, quantize="int8")
    assert report.is_full_integer
    counts = max_distinct(tflite)
    assert len(counts) == 4 and max(counts.values()) <= CLUSTERS, counts
    int8_acc = float(np.mean(run_tflite(tflite, x_test).argmax(-1) == y_test))
    assert int8_acc >= clustered_acc - 0.02, (int8_acc, clustered_acc)
    # The same training without preservation spreads every channel over many values: the check above
    # can fail.
    free = _compile(quantize(wrapped, preserve_clusters=False), 1e-4)
    free.fit(x_train, y_train, epochs=2, batch_size=32, verbose=0)
    assert max(max_distinct(export_tflite(free, quantize="int8")[0]).values()) > 4 * CLUSTERS


def test_stripped_clustered_model_is_detected_and_survives_save_load(clustered, digits, tmp_path):
    (x_train, y_train), _ = digits
    wrapped, _ = clustered
    stripped = strip(wrapped)
    qat = _compile(quantize(stripped), 1e-4)  # "auto": <= 64 distinct values, each shared by >= 8 entries
    assert set(qat.preserved_clusters) == {"conv2d", "conv2d_1", "dense", "dense_1"}
    qat.fit(x_train[:256], y_train[:256], epochs=1, batch_size=32, verbose=0)
    qat.save(tmp_path / "cqat.keras")
    loaded = _compile(keras.models.load_model(tmp_path / "cqat.keras"), 1e-4)  # no custom_objects
    loaded.fit(x_train[:256], y_train[:256], epochs=1, batch_size=32, verbose=0)
    assert max(max_distinct(export_tflite(loaded, quantize="int8")[0]).values()) <= CLUSTERS
    for layer in loaded.layers:
        if isinstance(layer, QuantizeWrapper) and layer.centroids:
            (_, kernel), = [(v, w) for v, w in layer.quantized_weights()[0] if v is layer.layer.kernel]
            assert layer.layer.kernel.trainable is False
            assert len(np.unique(np.asarray(kernel))) <= CLUSTERS * (1 if layer.batch_norm is None else 16)


@pytest.mark.parametrize("per_channel", [True, False])
def test_shared_kernel_matches_numpy_through_mask_and_batchnorm_folding(per_channel, rng):
    """The fake-quantized kernel equals numpy: centroids gathered by the indices in ClusterWeights'
    layout, times the mask, times gamma / sqrt(var + eps) per output channel, then per-channel int8."""
    conv = L.Conv2D(6, 3, use_bias=False)
    bn = L.BatchNormalization()
    rows = 6 if per_channel else 1
    wrapper = QuantizeWrapper(conv, batch_norm=bn, masked_weights=["kernel"],
                              clustered_weights={"kernel": [rows, 4]})
    wrapper.build((None, 5, 5, 3))
    centroids = rng.normal(size=(rows, 4)).astype("float32")
    indices = rng.integers(0, 4, size=(rows, 3 * 3 * 3 * 6 // rows)).astype("int32")
    mask = (rng.random((3, 3, 3, 6)) > 0.5).astype("float32")
    gamma, var = rng.uniform(0.5, 2, 6).astype("float32"), rng.uniform(0.5, 2, 6).astype("float32")
    wrapper.centroids["kernel"].assign(centroids)
    wrapper.cluster_indices["kernel"].assign(indices)
    wrapper.masks["kernel"].assign(mask)
    bn.gamma.assign(gamma)
    bn.moving_variance.assign(var)
    gathered = np.take_along_axis(centroids, indices, axis=1)  # (rows, entries per row)
    kernel = gathered.T.reshape(3, 3, 3, 6)
    folded = kernel * mask * (gamma / np.sqrt(var + bn.epsilon)).astype("float32")
    m = np.abs(folded).reshape(-1, 6).max(axis=0)  # per output channel (the default scheme)
    expected = np.stack([numpy_fake_quant(folded[..., c], -m[c], m[c], narrow_range=True) for c in range(6)],
                        axis=-1)
    (_, got), = [(v, w) for v, w in wrapper.quantized_weights()[0] if v is conv.kernel]
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6, atol=1e-6)
    assert conv.kernel.trainable is False and wrapper.centroids["kernel"].trainable


def test_entries_sharing_a_value_stay_equal_and_zeros_stay_zero(digits):
    """A pruned then clustered (preserve_zeros) Dense: after QAT steps, each centroid's entries are
    still one value per output channel and the pruned entries are still exactly 0."""
    (x_train, y_train), _ = digits
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Flatten(), L.Dense(32, activation="relu"), L.Dense(10)])
    _compile(model, 1e-3).fit(x_train, y_train, epochs=2, batch_size=32, verbose=0)
    kernel = model.get_layer("dense").kernel.numpy()
    kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.7)] = 0.0  # magnitude-pruned to 70 %
    model.get_layer("dense").kernel.assign(kernel)
    shared = strip(cluster(model, n_clusters=4, preserve_zeros=True, layers=["dense"]))
    before = shared.get_layer("dense").kernel.numpy()
    qat = _compile(quantize(shared), 1e-2)
    assert qat.preserved_clusters["dense"] == 4 and qat.preserved_sparsity["dense"] >= 0.69
    qat.fit(x_train, y_train, epochs=1, batch_size=32, verbose=0)
    wrapper = qat.get_layer("quant_dense")
    after = np.asarray(wrapper.quantized_weights()[0][0][1])
    assert np.all(after[before == 0] == 0)
    values = np.unique(before[before != 0])
    for v in values:  # every group of entries that shared a value before still shares one
        assert len(np.unique(after[before == v])) == 1
    assert not np.allclose(np.unique(after[before != 0]), values)  # ... and the shared values trained
