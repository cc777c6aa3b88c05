"""FactorizedDense against numpy: exact at full rank, Eckart-Young error at rank r, saving."""

import keras
import numpy as np
import pytest

from tfcompress.factorization import FactorizedDense


def _dense(rng, n_in=24, n_out=12, activation=None):
    dense = keras.layers.Dense(n_out, activation=activation)
    dense.build((None, n_in))
    dense.set_weights([rng.normal(size=(n_in, n_out)).astype("float32"),
                       rng.normal(size=n_out).astype("float32")])
    return dense


def test_full_rank_reproduces_dense(rng):
    dense = _dense(rng, activation="relu")
    x = rng.normal(size=(16, 24)).astype("float32")
    fact = FactorizedDense.from_dense(dense, rank=12)
    err = np.abs(keras.ops.convert_to_numpy(fact(x)) - keras.ops.convert_to_numpy(dense(x))).max()
    assert err < 1e-4


@pytest.mark.parametrize("rank", [1, 3, 7])
def test_rank_r_error_is_truncated_svd_error(rng, rank):
    dense = _dense(rng)
    kernel, bias = dense.get_weights()
    fact = FactorizedDense.from_dense(dense, rank=rank)
    u, v = keras.ops.convert_to_numpy(fact.u), keras.ops.convert_to_numpy(fact.v)
    s = np.linalg.svd(kernel.astype("float64"), compute_uv=False)
    # Eckart-Young: the Frobenius error of the best rank-r approximation is the tail of singular values.
    np.testing.assert_allclose(np.linalg.norm(kernel - u @ v), np.sqrt(np.sum(s[rank:] ** 2)), rtol=1e-4)
    left, s_full, right = np.linalg.svd(kernel.astype("float64"), full_matrices=False)
    w_r = (left[:, :rank] * s_full[:rank]) @ right[:rank]
    x = rng.normal(size=(16, 24)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fact(x)), x @ w_r + bias, atol=1e-4)


def test_params_and_trainable_from_scratch(digits):
    model = keras.Sequential([keras.Input((64,)), FactorizedDense(32, 4, activation="relu"), keras.layers.Dense(10)])
    assert model.layers[0].count_params() == 4 * (64 + 32) + 32
    (x, y), _ = digits
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.layers[0].get_weights()
    model.fit(x.reshape(len(x), -1)[:256], y[:256], epochs=1, verbose=0)
    assert all(np.abs(a - b).max() > 0 for a, b in zip(before, model.layers[0].get_weights()))


def test_save_load_keras(tmp_path, rng):
    model = keras.Sequential([keras.Input((24,)), FactorizedDense(8, 3, activation="relu", use_bias=False)])
    x = rng.normal(size=(4, 24)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.layers[0], FactorizedDense) and loaded.layers[0].rank == 3
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("kwargs", [{"units": 0, "rank": 2}, {"units": 4, "rank": 0}, {"units": 4, "rank": 1.5}])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError, match="positive integer"):
        FactorizedDense(**kwargs)
