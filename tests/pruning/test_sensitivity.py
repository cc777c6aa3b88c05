"""sensitivity(): per-layer drops against a direct NumPy masking + evaluation."""

import os

import keras
import numpy as np
import pytest

from tfcompress.pruning import sensitivity

L = keras.layers


def _model():
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu", name="c"),
                             L.Flatten(), L.Dense(32, activation="relu", name="d1"), L.Dense(10, name="d2")])


def test_drops_match_direct_masking(digits, tmp_path):
    (x, y), (xt, yt) = digits
    model = _model()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, verbose=0)
    before = [w.copy() for w in model.get_weights()]
    report = sensitivity(model, (xt, yt), sparsities=(0.5, 0.95), plot_path=str(tmp_path / "s.png"))
    base = float((model.predict(xt, verbose=0).argmax(-1) == yt).mean())
    assert report["baseline"] == pytest.approx(base)
    assert set(report["drops"]) == {"c", "d1", "d2"}
    # reference for d1 at 95 %: zero its smallest 95 % weights in a copy and evaluate
    ref = keras.models.clone_model(model)
    ref.set_weights(model.get_weights())
    k = ref.get_layer("d1").kernel
    v = k.numpy()
    thr = np.sort(np.abs(v).ravel())[int(round(0.95 * v.size)) - 1]
    k.assign(np.where(np.abs(v) > thr, v, 0))
    acc = float((ref.predict(xt, verbose=0).argmax(-1) == yt).mean())
    assert report["drops"]["d1"][0.95] == pytest.approx(base - acc, abs=1e-9)
    assert report["drops"]["c"][0.95] > report["drops"]["c"][0.5] - 0.01
    assert "| d1 |" in report["markdown"] and os.path.getsize(report["plot"]) > 1000
    for a, b in zip(model.get_weights(), before):  # the model is untouched
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, error", [
    ({"sparsities": (0.0, 0.5)}, ValueError), ({"sparsities": (1.2,)}, ValueError),
    ({"layers": ["nope"]}, ValueError), ({"pattern": "block"}, TypeError),
])
def test_bad_arguments(kwargs, error):
    x, y = np.zeros((4, 8, 8, 1), "float32"), np.zeros(4, "int64")
    with pytest.raises(error):
        sensitivity(_model(), (x, y), **kwargs)


def test_bad_data_and_model():
    with pytest.raises(ValueError, match="tuple"):
        sensitivity(_model(), np.zeros((4, 8, 8, 1)))
    with pytest.raises(TypeError, match="keras.Model"):
        sensitivity("m", (np.zeros(1), np.zeros(1)))
