"""The model-surgery engine (tfcompress/_surgery.py) and `tfcompress.strip`: every model kind,
keras.ops nodes kept, weights copied, the user's model never mutated."""

import keras
import numpy as np
import pytest
from keras import ops

from tfcompress.export import export_tflite, run_tflite
from tfcompress.pruning import ConstantSparsity, PruningCallback, prune

L = keras.layers


def _apply_masks(pruned):
    cb = PruningCallback()
    cb.set_model(pruned)
    cb.on_train_begin()
    cb.on_train_batch_begin(0)
    cb.on_train_end()


def _cosine(a, b):
    a, b = np.ravel(a).astype("float64"), np.ravel(b).astype("float64")
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _ops_model():
    x = keras.Input((8,))
    h = L.Dense(16, name="d1")(x)
    h = h * 0.5 + 1.0  # keras.ops nodes (Multiply, Add), not layers
    h = ops.concatenate([h, ops.relu(h)], axis=-1)
    return keras.Model(x, L.Dense(3, name="d2")(h), name="ops_model")




def test_prune_keeps_keras_ops_nodes_and_exports_with_parity():
    import tfcompress

    model = _ops_model()
    before = [w.copy() for w in model.get_weights()]
    pruned = prune(model, schedule=ConstantSparsity(0.5, frequency=1))
    _apply_masks(pruned)
    plain = tfcompress.strip(pruned)
    names = [type(op).__name__ for op in plain.operations]
    assert names.count("Dense") == 2 and "Multiply" in names and "Concatenate" in names
    # independent reference: the model's own math in numpy with the 50 % smallest |w| zeroed
    x = np.random.default_rng(0).random((5, 8)).astype("float32")
    k1, b1, k2, b2 = [w.copy() for w in before]
    for k in (k1, k2):
        k[np.abs(k) <= np.sort(np.abs(k).ravel())[k.size // 2 - 1]] = 0.0
    h = (x @ k1 + b1) * 0.5 + 1.0
    expected = np.concatenate([h, np.maximum(h, 0)], -1) @ k2 + b2
    np.testing.assert_allclose(np.asarray(plain(x)), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(pruned(x)), expected, rtol=1e-5, atol=1e-5)
    tfl, _ = export_tflite(plain)
    np.testing.assert_allclose(run_tflite(tfl, x), expected, rtol=1e-5, atol=1e-5)
    for a, b in zip(before, model.get_weights()):  # the user's model is untouched
        np.testing.assert_array_equal(a, b)


def test_mobilenet_v3_small_prune_strip_export_matches_keras():
    import tfcompress

    model = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classes=10,
                                                classifier_activation=None)
    pruned = prune(model, schedule=ConstantSparsity(0.5, frequency=1))
    _apply_masks(pruned)
    plain = tfcompress.strip(pruned)
    assert not tfcompress._surgery.has_wrappers(plain)
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    keras_out = np.asarray(plain(x))
    np.testing.assert_allclose(np.asarray(pruned(x)), keras_out, rtol=1e-4, atol=1e-4)
    assert _cosine(keras_out, np.asarray(model(x))) < 0.9999  # the masks changed the function
    tfl, _ = export_tflite(pruned)  # export strips by itself
    assert _cosine(run_tflite(tfl, x), keras_out) > 0.999
