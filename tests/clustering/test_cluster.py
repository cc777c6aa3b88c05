"""cluster() + strip() on a trained CNN: distinct values, parity, pruning composition, TFLite gzip."""

import gzip

import keras
import numpy as np
import pytest

from tfcompress.clustering import ClusterWeights, cluster, strip
from tfcompress.export import export_tflite, prepare_for_export, verify
from tfcompress.pruning import ConstantSparsity, PruningCallback, prune
from tfcompress.pruning import strip as strip_pruning

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _cnn():
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu", name="fc")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x))


@pytest.fixture(scope="module")
def trained(digits):
    keras.utils.set_random_seed(2)
    (x, y), _ = digits
    model = _cnn()
    model.compile("adam", LOSS, metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    return model


def _kernels(model):
    return {layer.name: keras.ops.convert_to_numpy(layer.kernel) for layer in model.layers
            if hasattr(layer, "kernel") and layer.kernel is not None}


@pytest.mark.parametrize("per_channel", [False, True])
def test_cluster_finetune_strip(trained, digits, per_channel):
    (x, y), (x_test, y_test) = digits
    clustered = cluster(trained, n_clusters=16, per_channel=per_channel)
    assert {l.name for l in clustered.layers if isinstance(l, ClusterWeights)} == {
        "cluster_conv1", "cluster_conv2", "cluster_fc", "cluster_logits"}
    clustered.compile(keras.optimizers.Adam(1e-4), LOSS, metrics=["accuracy"])
    clustered.fit(x[:512], y[:512], epochs=1, batch_size=64, verbose=0)
    plain = strip(clustered)
    assert not any(isinstance(l, ClusterWeights) for l in plain.layers)
    for name, kernel in _kernels(plain).items():
        if per_channel:
            assert max(len(np.unique(kernel[..., c])) for c in range(kernel.shape[-1])) <= 16, name
        else:
            assert len(np.unique(kernel)) <= 16, name
    np.testing.assert_allclose(plain.predict(x_test, verbose=0), clustered.predict(x_test, verbose=0), atol=1e-5)
    base = trained.evaluate(x_test, y_test, verbose=0)[1]
    plain.compile(metrics=["accuracy"], loss=LOSS)
    assert plain.evaluate(x_test, y_test, verbose=0)[1] >= base - 0.03
    # The original model is untouched (still ~all distinct values).
    assert len(np.unique(trained.get_layer("fc").kernel)) > 1000


def test_clustered_tflite_gzips_smaller(trained, digits, tmp_path):
    _, (x_test, _) = digits
    clustered = cluster(trained, n_clusters=16)
    dense_bytes, _ = export_tflite(trained)
    # export_tflite strips the wrappers itself (prepare_for_export).
    assert not any(isinstance(l, ClusterWeights) for l in prepare_for_export(clustered).layers)
    clustered_bytes, report = export_tflite(clustered)
    assert report.custom_ops == []
    assert abs(len(clustered_bytes) - len(dense_bytes)) < 0.02 * len(dense_bytes)  # same raw size
    assert len(gzip.compress(clustered_bytes, 9)) < 0.5 * len(gzip.compress(dense_bytes, 9))
    parity = verify(strip(clustered), clustered_bytes, x_test)
    assert parity.max_abs_error < 1e-3 and parity.top1_agreement == 1.0
    clustered.save(tmp_path / "c.keras")
    loaded = keras.models.load_model(tmp_path / "c.keras")
    np.testing.assert_array_equal(loaded.predict(x_test, verbose=0), clustered.predict(x_test, verbose=0))


def test_composes_with_80_percent_pruning(trained, digits):
    (x, y), (x_test, _) = digits
    pruned = prune(trained, schedule=ConstantSparsity(0.8, begin_step=0, frequency=10))
    pruned.compile(keras.optimizers.Adam(1e-4), LOSS)
    pruned.fit(x[:640], y[:640], epochs=1, batch_size=64, callbacks=[PruningCallback()], verbose=0)
    sparse = strip_pruning(pruned)
    zeros = {name: k == 0 for name, k in _kernels(sparse).items()}
    assert np.mean(zeros["fc"]) == pytest.approx(0.8, abs=0.01)
    with pytest.raises(ValueError, match="strip"):
        cluster(pruned)
    clustered = cluster(sparse, n_clusters=8)  # preserve_zeros="auto" sees the zeros
    assert all(l.preserve_zeros for l in clustered.layers if isinstance(l, ClusterWeights))
    clustered.compile(keras.optimizers.Adam(1e-3), LOSS)
    clustered.fit(x[:512], y[:512], epochs=1, batch_size=64, verbose=0)
    final = strip(clustered)
    for name, kernel in _kernels(final).items():
        np.testing.assert_array_equal(kernel == 0, zeros[name], err_msg=name)
        assert len(np.unique(kernel)) <= 8


def test_layer_selection_and_errors(trained):
    only = cluster(trained, layers=["fc"], n_clusters=4)
    assert [l.name for l in only.layers if isinstance(l, ClusterWeights)] == ["cluster_fc"]
    with pytest.raises(ValueError, match="no kernel"):
        cluster(trained, layers=["flatten" if any(l.name == "flatten" for l in trained.layers)
                                 else trained.layers[3].name])
    with pytest.raises(ValueError, match="no layer named"):
        cluster(trained, layers=["nope"])
    with pytest.raises(ValueError, match="init"):
        cluster(trained, init="uniform")
    with pytest.raises(ValueError, match="already clustered"):
        cluster(only)
