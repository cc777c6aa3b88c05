"""Mid-pruning .keras save/load with no scope, and resuming after an interruption (BackupAndRestore)."""

import keras
import numpy as np
import pytest

from pruning_models import MODELS, outputs, sample_input
from tfcompress.pruning import (Channels, ConstantSparsity, PolynomialDecay, PruneWrapper,
                                PruningCallback, prune)

L = keras.layers


def _state(model):
    ws = [l for l in model.layers if isinstance(l, PruneWrapper)]
    return ([int(w.pruning_step.numpy()) for w in ws],
            [m.numpy().copy() for w in ws for (_, _, _, m, _) in w.pruned])


def _cnn():
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu", name="c1"),
                             L.Flatten(), L.Dense(16, activation="relu", name="d1"), L.Dense(10, name="d2")])


def _compile(m):
    m.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return m


@pytest.mark.parametrize("pattern", [None, Channels()])
def test_keras_file_round_trip_mid_pruning_and_resume(digits, tmp_path, pattern):
    (x, y), _ = digits
    x, y = x[:320], y[:320]
    schedule = PolynomialDecay(0.0, 0.75, begin_step=0, end_step=40, frequency=5)
    pruned = _compile(prune(_cnn(), schedule=schedule, pattern=pattern))
    pruned.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0, callbacks=[PruningCallback()])
    path = str(tmp_path / "mid.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects, no scope
    steps, masks = _state(pruned)
    l_steps, l_masks = _state(loaded)
    assert steps == l_steps == [10] * len(steps)
    for a, b in zip(masks, l_masks):
        np.testing.assert_array_equal(a, b)
    wp = [l for l in loaded.layers if isinstance(l, PruneWrapper)]
    assert wp[0].schedule == schedule and wp[0].pattern == (pattern or wp[0].pattern)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6)
    # both continue identically: same step, same schedule position, same masks
    for m in (pruned, loaded):
        m.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0, callbacks=[PruningCallback()])
    steps, masks = _state(pruned)
    l_steps, l_masks = _state(loaded)
    assert steps == l_steps == [30] * len(steps)
    for a, b in zip(masks, l_masks):
        np.testing.assert_array_equal(a, b)


def test_keras_file_round_trip_of_every_layer_type(tmp_path):
    for kind in ("functional_multi_io", "nested", "sequential"):
        model = MODELS[kind]()
        pruned = prune(model, schedule=ConstantSparsity(0.5, frequency=1))
        cb = PruningCallback()
        cb.set_model(pruned)
        cb.on_train_begin()
        cb.on_train_batch_begin(0)
        path = str(tmp_path / f"{kind}.keras")
        pruned.save(path)
        loaded = keras.saving.load_model(path)
        x = sample_input(model)
        for a, b in zip(outputs(loaded, x), outputs(pruned, x)):
            np.testing.assert_allclose(a, b, atol=1e-6)


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise RuntimeError("interrupted")


class _Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.at_end = {}
        self.at_begin = None

    def on_epoch_end(self, epoch, logs=None):
        self.at_end[epoch] = _state(self.model)

    def on_train_begin(self, logs=None):  # runs after BackupAndRestore.on_train_begin restored
        self.at_begin = _state(self.model)


def test_backup_and_restore_resumes_with_the_same_step_and_masks(digits, tmp_path):
    (x, y), _ = digits
    x, y = x[:320], y[:320]
    dense = _cnn()
    schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=40, frequency=5)
    backup = str(tmp_path / "backup")
    first = _compile(prune(dense, schedule=schedule))
    record = _Record()
    with pytest.raises(RuntimeError, match="interrupted"):
        first.fit(x, y, epochs=4, batch_size=32, shuffle=False, verbose=0,
                  callbacks=[PruningCallback(), keras.callbacks.BackupAndRestore(backup), record, _Interrupt(2)])
    saved_steps, saved_masks = record.at_end[1]
    assert saved_steps == [20] * 3
    # a fresh process would rebuild the same pruned model; PruningCallback listed first on purpose
    second = _compile(prune(dense, schedule=schedule))
    record2 = _Record()
    second.fit(x, y, epochs=4, batch_size=32, shuffle=False, verbose=0,
               callbacks=[PruningCallback(), keras.callbacks.BackupAndRestore(backup), record2])
    steps, masks = record2.at_begin
    assert steps == saved_steps
    for a, b in zip(masks, saved_masks):
        np.testing.assert_array_equal(a, b)
    final_steps, final_masks = _state(second)
    assert final_steps == [40] * 3  # epochs 3 and 4 only: 2 x 10 more steps
    assert all(abs((m == 0).mean() - 0.8) <= 0.01 for m in final_masks)
