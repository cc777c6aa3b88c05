"""factorize(): rank choice vs numpy, skipping, size/flops table, model kinds, TFLite export."""

import gzip

import keras
import numpy as np
import pytest

from tfcompress.export import export_tflite, verify
from tfcompress.factorization import FactorizedConv2D, FactorizedDense, factorize


def _cnn(name="cnn"):
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_small")(inp)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv_big")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(96, activation="relu", name="fc")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name=name)


@pytest.fixture(scope="module")
def trained(digits):
    keras.utils.set_random_seed(1)
    (x, y), _ = digits
    model = _cnn()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return model


def test_energy_rank_is_smallest_reaching_energy(trained):
    _, table = factorize(trained, energy=0.9)
    rows = {r["layer"]: r for r in table}
    for name in ("conv_big", "fc"):
        kernel = trained.get_layer(name).get_weights()[0].astype("float64")
        matrix = kernel.transpose(0, 2, 1, 3).reshape(kernel.shape[0] * kernel.shape[2], -1) \
            if kernel.ndim == 4 else kernel
        s = np.linalg.svd(matrix, compute_uv=False)
        kept = np.cumsum(s**2) / np.sum(s**2)
        expected = int(np.argmax(kept >= 0.9)) + 1
        assert rows[name]["rank"] == expected
        assert rows[name]["energy"] == pytest.approx(kept[expected - 1])


def test_table_sizes_match_models_and_skips_when_not_smaller(trained):
    small, table = factorize(trained, rank=4)
    rows = {r["layer"]: r for r in table}
    # conv_small: 3*1 input rows -> full rank 3, factorized 3*(3+12) = 45 > 36 weights: skipped.
    assert rows["conv_small"]["status"].startswith("skipped")
    assert type(small.get_layer("conv_small")) is keras.layers.Conv2D
    assert isinstance(small.get_layer("conv_big"), FactorizedConv2D)
    assert isinstance(small.get_layer("fc"), FactorizedDense)
    for row in table:
        assert row["params_after"] == small.get_layer(row["layer"]).count_params()
        assert row["params_before"] == trained.get_layer(row["layer"]).count_params()
    # flops of fc: 2 * in * out dense vs 2 * r * (in + out) factorized.
    assert rows["fc"]["flops_before"] == 2 * 2048 * 96
    assert rows["fc"]["flops_after"] == 2 * 4 * (2048 + 96)
    assert small.count_params() < trained.count_params()


def test_original_untouched_and_full_rank_exact(trained, digits):
    _, (x_test, _) = digits
    before = [w.copy() for w in trained.get_weights()]
    exact, table = factorize(trained, rank=10_000, layers=["conv_big"])
    assert [r["layer"] for r in table] == ["conv_big"]
    assert all(np.array_equal(a, b) for a, b in zip(before, trained.get_weights()))
    # At full rank factorization is not smaller for this layer, so it is skipped; force with dict rank below.
    assert table[0]["status"].startswith("skipped")
    # Full-rank FactorizedConv2D in a model reproduces the dense model.
    full = min(3 * 4, 3 * 32)
    layer = FactorizedConv2D.from_conv2d(trained.get_layer("conv_big"), rank=full)
    inner = keras.Model(trained.input, trained.get_layer("conv_small").output)(x_test[:32])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(inner)),
                               keras.ops.convert_to_numpy(trained.get_layer("conv_big")(inner)), atol=1e-4)


def test_output_error_before_finetuning_matches_svd(trained, digits):
    _, (x_test, _) = digits
    small, _ = factorize(trained, rank={"fc": 8})
    # Reference: the same model with fc's kernel replaced by numpy's rank-8 truncation.
    kernel, bias = trained.get_layer("fc").get_weights()
    left, s, right = np.linalg.svd(kernel.astype("float64"), full_matrices=False)
    ref = keras.models.clone_model(trained)
    ref.set_weights(trained.get_weights())
    ref.get_layer("fc").set_weights([((left[:, :8] * s[:8]) @ right[:8]).astype("float32"), bias])
    np.testing.assert_allclose(small.predict(x_test, verbose=0), ref.predict(x_test, verbose=0), atol=1e-4)


def test_nested_sequential_and_errors(trained):
    inner = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, name="inner_fc")], name="inner")
    outer = keras.Sequential([keras.Input((64,)), inner, keras.layers.Dense(10, name="head")])
    small, table = factorize(outer, rank=2)
    assert {r["layer"] for r in table} == {"inner_fc", "head"}
    assert isinstance(small.layers[0].layers[0], FactorizedDense)
    with pytest.raises(ValueError, match="no layer named"):
        factorize(outer, layers=["missing"])
    with pytest.raises(ValueError, match="cannot be factorized"):
        factorize(trained, layers=["flatten"] if "flatten" in [l.name for l in trained.layers] else
                  [trained.layers[3].name])

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = keras.layers.Dense(4)

        def call(self, x):
            return self.fc(x)

    sub = Sub()
    sub(np.zeros((1, 8), "float32"))
    with pytest.raises(ValueError, match="get_config"):  # no config to re-create it from: says so
        factorize(sub)


def test_factorized_model_exports_smaller_and_agrees(trained, digits, tmp_path):
    _, (x_test, _) = digits
    small, table = factorize(trained, energy=0.9)
    dense_bytes, dense_report = export_tflite(trained)
    small_bytes, report = export_tflite(small)
    # The file shrinks by the float32 weights the table says were saved (within 5 %).
    saved = 4 * sum(r["params_before"] - r["params_after"] for r in table)
    assert saved > 0
    assert abs((len(dense_bytes) - len(small_bytes)) - saved) < 0.05 * saved
    assert len(gzip.compress(small_bytes)) < len(gzip.compress(dense_bytes))
    # Plain built-in ops only, the same kinds as the dense model (more CONV_2D / FULLY_CONNECTED).
    assert report.custom_ops == [] and set(report.op_histogram) == set(dense_report.op_histogram)
    assert report.op_histogram["CONV_2D"] > dense_report.op_histogram["CONV_2D"]
    parity = verify(small, small_bytes, x_test)
    assert parity.max_abs_error < 1e-3 and parity.top1_agreement == 1.0
    small.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    np.testing.assert_array_equal(loaded.predict(x_test, verbose=0), small.predict(x_test, verbose=0))


@keras.saving.register_keras_serializable(package="tfcompress_tests")
class _SubMLP(keras.Model):
    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.fc = keras.layers.Dense(units, activation="relu")
        self.head = keras.layers.Dense(5)

    def call(self, x):
        return self.head(self.fc(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_subclassed_model_factorizes_to_the_truncated_svd():
    sub = _SubMLP()
    x = np.random.default_rng(0).random((6, 24)).astype("float32")
    sub(x)
    small, table = factorize(sub, rank=3)
    assert [r["status"] for r in table] == ["factorized", "factorized"]
    assert type(small.fc).__name__ == "FactorizedDense" and small.built
    # numpy reference: each kernel replaced by its rank-3 truncated SVD
    def trunc(k):
        u, s, vt = np.linalg.svd(k, full_matrices=False)
        return (u[:, :3] * s[:3]) @ vt[:3]
    k1, b1, k2, b2 = [w.numpy() for w in (sub.fc.kernel, sub.fc.bias, sub.head.kernel, sub.head.bias)]
    expected = np.maximum(x @ trunc(k1) + b1, 0) @ trunc(k2) + b2
    np.testing.assert_allclose(np.asarray(small(x)), expected, rtol=1e-4, atol=1e-4)
    assert len(small.weights) == 6  # u, v, bias twice: no orphan Dense variables
