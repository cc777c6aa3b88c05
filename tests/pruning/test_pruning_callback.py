"""PruningCallback / PruningLogger in fit: reached sparsity, schedule timing, missing-callback error,
Taylor importance and global scope against NumPy/GradientTape references."""

import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

from pruning_models import apply_masks_now, copy_model
from tfcompress.pruning import (Block, ConstantSparsity, NofM, PolynomialDecay, PruneWrapper, PruningCallback,
                                PruningLogger, prune, strip)

L = keras.layers


def digits_cnn(width=16):
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(width, 3, activation="relu", name="c1"),
                             L.Conv2D(2 * width, 3, activation="relu", name="c2"), L.Flatten(),
                             L.Dense(2 * width, activation="relu", name="d1"), L.Dense(10, name="d2")])


def compile_(m, opt=None):
    opt = opt or keras.optimizers.Adam(3e-3)
    m.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return m


def test_fit_reaches_target_sparsity_in_every_layer_and_stays_accurate(digits, tmp_path):
    (x, y), (xt, yt) = digits
    steps = int(np.ceil(len(x) / 64))
    dense = compile_(digits_cnn(32))
    dense.fit(x, y, epochs=6, batch_size=64, verbose=0)
    _, dense_acc = dense.evaluate(xt, yt, verbose=0)
    pruned = compile_(prune(dense, schedule=PolynomialDecay(0.0, 0.8, 0, 3 * steps, frequency=10)))
    hist = pruned.fit(x, y, epochs=5, batch_size=64, verbose=0,
                      callbacks=[PruningCallback(), PruningLogger(log_dir=str(tmp_path), verbose=False)])
    for w in [l for l in pruned.layers if isinstance(l, PruneWrapper)]:
        assert abs((w.pruned[0][3].numpy() == 0).mean() - 0.8) <= 0.01
        assert int(w.pruning_step.numpy()) == 5 * steps
    assert hist.history["sparsity"][-1] == pytest.approx(0.8, abs=0.01)
    assert hist.history["sparsity"][0] < hist.history["sparsity"][-1]
    events = glob.glob(str(tmp_path / "pruning" / "events.out.tfevents*"))
    logged = {}
    for record in tf.data.TFRecordDataset(events):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for v in event.summary.value:
            logged[(v.tag, event.step)] = float(tf.make_ndarray(v.tensor))
    assert set(logged) >= {(f"sparsity/{n}", e) for n in ("c1", "c2", "d1", "d2", "mean") for e in range(5)}
    assert logged[("sparsity/d1", 4)] == pytest.approx(0.8, abs=0.01)
    _, acc = pruned.evaluate(xt, yt, verbose=0)
    assert acc >= dense_acc - 0.03 and acc > 0.92, (acc, dense_acc)
    plain = strip(pruned)
    for layer in plain.layers:
        if layer.weights:  # zeros baked into the plain model
            assert abs((layer.kernel.numpy() == 0).mean() - 0.8) <= 0.01, layer.name
    np.testing.assert_allclose(plain.predict(xt, verbose=0), pruned.predict(xt, verbose=0), atol=1e-5)


def test_masks_change_only_on_schedule(digits):
    (x, y), _ = digits
    pruned = compile_(prune(digits_cnn(), schedule=ConstantSparsity(0.5, begin_step=4, frequency=100)))
    pruned.fit(x[:48], y[:48], epochs=1, batch_size=16, verbose=0, callbacks=[PruningCallback()])  # steps 0-2
    assert all(l.pruned[0][3].numpy().min() == 1.0 for l in pruned.layers if isinstance(l, PruneWrapper))
    pruned.fit(x[:48], y[:48], epochs=1, batch_size=16, verbose=0, callbacks=[PruningCallback()])  # 3-5
    for l in [l for l in pruned.layers if isinstance(l, PruneWrapper)]:
        assert (l.pruned[0][3].numpy() == 0).mean() == pytest.approx(0.5, abs=0.01)


def test_fit_without_the_callback_fails_at_the_first_batch(digits):
    (x, y), _ = digits
    pruned = compile_(prune(digits_cnn(), schedule=ConstantSparsity(0.5)))
    with pytest.raises(RuntimeError, match="PruningCallback"):
        pruned.fit(x[:32], y[:32], epochs=1, verbose=0)
    # inference and evaluation need no callback
    pruned.evaluate(x[:32], y[:32], verbose=0)


def test_callback_on_a_model_without_wrappers_is_an_error(digits):
    (x, y), _ = digits
    with pytest.raises(ValueError, match="no PruneWrapper"):
        compile_(digits_cnn()).fit(x[:32], y[:32], verbose=0, callbacks=[PruningCallback()])


def test_taylor_importance_equals_w_times_grad_and_drives_the_masks(rng):
    model = keras.Sequential([keras.Input((6,)), L.Dense(5, activation="tanh", name="a"), L.Dense(3, name="b")])
    x = rng.random((16, 6)).astype("float32")
    y = rng.random((16, 3)).astype("float32")
    pruned = prune(model, schedule=ConstantSparsity(0.5, begin_step=1, frequency=1), criterion="taylor")
    pruned.compile(keras.optimizers.SGD(0.0), "mse")  # lr 0: weights stay, gradients still flow
    pruned.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[PruningCallback()])
    ref = copy_model(model)
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, ref(x))
    kernels = [ref.layers[0].kernel, ref.layers[1].kernel]
    grads = tape.gradient(loss, kernels)
    wrappers = [l for l in pruned.layers if isinstance(l, PruneWrapper)]
    for w, k, g in zip(wrappers, kernels, grads):
        expected = np.abs(k.numpy() * g.numpy())
        np.testing.assert_allclose(w.pruned[0][4].numpy(), expected, rtol=1e-4, atol=1e-7)
    cb = PruningCallback()
    cb.set_model(pruned)
    cb.on_train_begin()
    cb.on_train_batch_begin(0)  # step 1: update from the accumulated importance
    for w, k, g in zip(wrappers, kernels, grads):
        importance = np.abs(k.numpy() * g.numpy()).ravel()
        kth = np.sort(importance)[int(round(0.5 * importance.size)) - 1]
        np.testing.assert_array_equal(w.pruned[0][3].numpy().ravel(), (importance > kth).astype("float32"))
        assert not w.pruned[0][4].numpy().any()  # reset after the update


def test_global_scope_ranks_weights_across_layers(rng):
    model = keras.Sequential([keras.Input((8,)), L.Dense(16, name="a"), L.Dense(16, name="b")])
    a, b = model.layers
    a.kernel.assign(a.kernel.numpy() * 10.0)  # layer a has much larger weights
    pruned = prune(model, schedule=ConstantSparsity(0.6, frequency=1), scope="global")
    apply_masks_now(pruned)
    allw = np.concatenate([np.abs(a.kernel.numpy()).ravel(), np.abs(b.kernel.numpy()).ravel()])
    kth = np.sort(allw)[int(round(0.6 * allw.size)) - 1]
    wa, wb = [l for l in pruned.layers if isinstance(l, PruneWrapper)]
    np.testing.assert_array_equal(wa.pruned[0][3].numpy(), (np.abs(a.kernel.numpy()) > kth).astype("float32"))
    np.testing.assert_array_equal(wb.pruned[0][3].numpy(), (np.abs(b.kernel.numpy()) > kth).astype("float32"))
    za, zb = (wa.pruned[0][3].numpy() == 0).mean(), (wb.pruned[0][3].numpy() == 0).mean()
    assert zb > za and (za * 128 + zb * 256) / 384 == pytest.approx(0.6, abs=0.01)


def test_n_of_m_and_block_masks_on_real_kernels_after_fit(digits):
    (x, y), _ = digits
    for pattern in (NofM(2, 4), Block((1, 4))):
        pruned = compile_(prune(digits_cnn(), schedule=PolynomialDecay(0.0, 0.5, 0, 20, frequency=5),
                                pattern=pattern))
        pruned.fit(x[:512], y[:512], epochs=2, batch_size=32, verbose=0, callbacks=[PruningCallback()])
        plain = strip(pruned)
        for layer in plain.layers:
            if not layer.weights or layer.kernel.shape[-2] == 1:  # c1 has a single input channel
                continue
            k = layer.kernel.numpy()
            k = np.moveaxis(k, -2, 0).reshape(k.shape[-2], -1)  # input channels first
            groups = (k != 0).reshape(k.shape[0] // 4, 4, -1)  # every input size here divides by 4
            if isinstance(pattern, NofM):
                assert groups.sum(axis=1).max() <= 2, layer.name
                assert (k == 0).mean() == pytest.approx(0.5, abs=0.01)
            else:  # a block of 4 input channels is all zero or all non-zero
                assert np.all((groups.sum(axis=1) == 0) | (groups.sum(axis=1) == 4)), layer.name
                assert (k == 0).mean() == pytest.approx(0.5, abs=0.02)
