"""FactorizedConv2D (spatial SVD) against keras Conv2D and numpy's SVD."""

import keras
import numpy as np
import pytest

from tfcompress.factorization import FactorizedConv2D

CASES = [
    dict(kernel_size=3, strides=1, padding="same", dilation_rate=1),
    dict(kernel_size=3, strides=2, padding="same", dilation_rate=1),
    dict(kernel_size=(3, 5), strides=(2, 1), padding="valid", dilation_rate=1),
    dict(kernel_size=3, strides=1, padding="same", dilation_rate=2),
    dict(kernel_size=1, strides=1, padding="valid", dilation_rate=1),
]


def _conv(rng, c_in=5, filters=7, activation=None, **kw):
    conv = keras.layers.Conv2D(filters, activation=activation, **kw)
    conv.build((None, 11, 10, c_in))
    kernel = rng.normal(size=tuple(conv.kernel.shape)).astype("float32")
    conv.set_weights([kernel, rng.normal(size=filters).astype("float32")])
    return conv


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_full_rank_reproduces_conv(rng, case):
    conv = _conv(rng, activation="relu", **case)
    kh, kw = conv.kernel_size
    full = min(kh * 5, kw * 7)
    fact = FactorizedConv2D.from_conv2d(conv, rank=full)
    x = rng.normal(size=(3, 11, 10, 5)).astype("float32")
    ref = keras.ops.convert_to_numpy(conv(x))
    out = keras.ops.convert_to_numpy(fact(x))
    assert out.shape == ref.shape == fact.compute_output_shape(x.shape)
    assert np.abs(out - ref).max() < 1e-4


@pytest.mark.parametrize("rank", [1, 4])
def test_rank_r_is_truncated_svd_of_kernel_matrix(rng, rank):
    conv = _conv(rng, kernel_size=3, padding="same")
    kernel, bias = conv.get_weights()
    fact = FactorizedConv2D.from_conv2d(conv, rank=rank)
    # Independent reference: numpy SVD of the (kh*c_in, kw*c_out) matrix, truncated, reshaped back.
    matrix = kernel.transpose(0, 2, 1, 3).reshape(3 * 5, 3 * 7).astype("float64")
    left, s, right = np.linalg.svd(matrix, full_matrices=False)
    approx = ((left[:, :rank] * s[:rank]) @ right[:rank]).reshape(3, 5, 3, 7).transpose(0, 2, 1, 3)
    reference = keras.layers.Conv2D(7, 3, padding="same")
    reference.build((None, 11, 10, 5))
    reference.set_weights([approx.astype("float32"), bias])
    x = rng.normal(size=(2, 11, 10, 5)).astype("float32")
    out, ref = keras.ops.convert_to_numpy(fact(x)), keras.ops.convert_to_numpy(reference(x))
    np.testing.assert_allclose(out, ref, atol=1e-4)
    # The kernel-space error is the closed-form tail of singular values.
    a, b = (keras.ops.convert_to_numpy(w) for w in (fact.vertical_kernel, fact.horizontal_kernel))
    rebuilt = np.einsum("hcr,wro->hwco", a[:, 0], b[0])
    np.testing.assert_allclose(np.linalg.norm(rebuilt - kernel), np.sqrt(np.sum(s[rank:] ** 2)), rtol=1e-4)
    assert fact.count_params() == rank * (3 * 5 + 3 * 7) + 7


def test_save_load_keras(tmp_path, rng):
    model = keras.Sequential([keras.Input((8, 8, 3)),
                              FactorizedConv2D(6, 3, rank=2, strides=2, padding="same", activation="relu")])
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    layer = loaded.layers[0]
    assert isinstance(layer, FactorizedConv2D) and (layer.rank, layer.strides, layer.padding) == (2, (2, 2), "same")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_rejects_unsupported_conv(rng):
    conv = keras.layers.Conv2D(4, 3, groups=2)
    conv.build((None, 6, 6, 4))
    with pytest.raises(ValueError, match="groups=2"):
        FactorizedConv2D.from_conv2d(conv, rank=2)
    with pytest.raises(ValueError, match="padding"):
        FactorizedConv2D(4, 3, rank=2, padding="causal")
