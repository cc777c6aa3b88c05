"""Distiller: Keras training loop, frozen inference-mode teacher, features, saving, callbacks, export."""

import keras
import numpy as np
import pytest

from tfcompress.distillation import AttentionTransferLoss, Distiller, FeatureLoss, SoftTargetLoss
from tfcompress.export import export_tflite, verify

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _teacher():
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="t_conv1")(inp)
    x = keras.layers.BatchNormalization(name="t_bn")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="t_conv2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.Dense(64, activation="relu", name="t_fc")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="t_logits")(x), name="teacher")


def _student():
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="s_conv")(inp)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="s_fc")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="s_logits")(x), name="student")


@pytest.fixture(scope="module")
def teacher(digits):
    keras.utils.set_random_seed(3)
    (x, y), _ = digits
    model = _teacher()
    model.compile("adam", LOSS, metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    return model


def test_fit_evaluate_metrics_validation_and_frozen_teacher(teacher, digits):
    (x, y), (x_test, y_test) = digits
    before = [w.copy() for w in teacher.get_weights()]  # includes BN moving statistics
    student = _student()
    distiller = Distiller(teacher, student, loss=SoftTargetLoss(4.0), alpha=0.3)
    distiller.compile("adam", metrics=["accuracy"])
    history = distiller.fit(x[:512], y[:512], epochs=2, batch_size=64, validation_data=(x_test, y_test), verbose=0)
    assert {"loss", "accuracy", "student_loss", "distillation_loss", "val_accuracy"} <= set(history.history)
    assert history.history["loss"][-1] < history.history["loss"][0]
    # Frozen teacher: no trainable weight changed and BN ran in inference mode (moving stats untouched).
    assert all(np.array_equal(a, b) for a, b in zip(before, teacher.get_weights()))
    assert len(distiller.trainable_variables) == len(student.trainable_variables)
    # Reported accuracy is the student's own accuracy.
    result = distiller.evaluate(x_test, y_test, verbose=0, return_dict=True)
    own = np.mean(np.argmax(student.predict(x_test, verbose=0), -1) == y_test)
    assert result["accuracy"] == pytest.approx(own, abs=1e-6)
    # Total loss = alpha * hard + (1 - alpha) * soft on a batch, recomputed independently.
    xb, yb = x_test[:64], y_test[:64]
    hard = float(LOSS(yb, student(xb)))
    soft = float(SoftTargetLoss(4.0).compute_loss(teacher(xb, training=False), student(xb)))
    total = float(distiller.compute_loss(x=xb, y=yb, y_pred=distiller(xb, training=False), training=False))
    assert total == pytest.approx(0.3 * hard + 0.7 * soft, rel=1e-4)


def test_student_equal_to_teacher_has_zero_distillation_loss(teacher, digits):
    _, (x_test, _) = digits
    twin = keras.models.clone_model(teacher)
    twin.set_weights(teacher.get_weights())
    distiller = Distiller(teacher, twin, alpha=0.0)
    loss = distiller.compute_loss(x=x_test[:32], y=None, y_pred=distiller(x_test[:32], training=False))
    assert float(loss) < 1e-5


def test_feature_and_attention_losses_with_adapters_save_load(teacher, digits, tmp_path):
    (x, y), (x_test, _) = digits
    features = [FeatureLoss("t_conv2", "s_conv"), AttentionTransferLoss("t_conv1", "s_conv"),
                FeatureLoss("t_fc", "s_fc", weight=0.1)]
    distiller = Distiller(teacher, _student(), features=features)
    distiller.compile("adam", metrics=["accuracy"])
    history = distiller.fit(x[:256], y[:256], epochs=2, batch_size=64, verbose=0)
    assert history.history["feature_loss"][-1] < history.history["feature_loss"][0]
    # s_conv (4 ch) -> t_conv2 (32 ch), s_fc (16) -> t_fc (64): learned projections.
    assert [tuple(a.kernel.shape) for a in distiller.adapters] == [(4, 32), (16, 64)]
    distiller.save(tmp_path / "d.keras")
    loaded = keras.models.load_model(tmp_path / "d.keras")
    np.testing.assert_array_equal(loaded.predict(x_test, verbose=0), distiller.predict(x_test, verbose=0))
    for a, b in zip(loaded.adapters, distiller.adapters):
        np.testing.assert_array_equal(np.asarray(a.kernel), np.asarray(b.kernel))
    assert int(loaded.optimizer.iterations) == int(distiller.optimizer.iterations)
    before = int(loaded.optimizer.iterations)
    resumed = loaded.fit(x[:64], y[:64], epochs=1, batch_size=32, verbose=0)  # resumes training
    assert int(loaded.optimizer.iterations) == before + 2
    assert np.isfinite(resumed.history["loss"][0])


def test_subclassed_student_with_feature_loss(teacher, digits):
    (x, y), _ = digits

    @keras.saving.register_keras_serializable(package="tfcompress_tests")
    class Small(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="sub_conv")
            self.flat = keras.layers.Flatten()
            self.out = keras.layers.Dense(10)

        def call(self, inputs):
            return self.out(self.flat(self.conv(inputs)))

    student = Small()
    student(x[:1])
    distiller = Distiller(teacher, student, features=[AttentionTransferLoss("t_conv1", "sub_conv"),
                                                      FeatureLoss("t_conv1", "sub_conv")])
    distiller.compile("adam")
    history = distiller.fit(x[:256], y[:256], epochs=2, batch_size=64, verbose=0)
    assert history.history["feature_loss"][-1] < history.history["feature_loss"][0]
    assert tuple(distiller.adapters[0].kernel.shape) == (4, 16)


def test_callbacks_and_steps_per_execution(teacher, digits, tmp_path):
    (x, y), (x_test, y_test) = digits
    distiller = Distiller(teacher, _student())
    distiller.compile("adam", metrics=["accuracy"], steps_per_execution=4)
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True),
                 keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_loss",
                                                 save_best_only=True),
                 keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))]
    history = distiller.fit(x[:512], y[:512], epochs=3, batch_size=64, validation_data=(x_test, y_test),
                            callbacks=callbacks, verbose=0)
    best = keras.models.load_model(tmp_path / "best.keras")
    assert isinstance(best, Distiller)
    assert best.evaluate(x_test, y_test, verbose=0, return_dict=True)["loss"] == pytest.approx(
        min(history.history["val_loss"]), rel=1e-4)

    # BackupAndRestore: an interrupted run resumes at the epoch it stopped.
    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    fresh = Distiller(teacher, _student())
    fresh.compile("adam")
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup2"))
    with pytest.raises(RuntimeError, match="interrupted"):
        fresh.fit(x[:256], y[:256], epochs=4, batch_size=64, callbacks=[backup, Stop()], verbose=0)
    resumed = Distiller(teacher, _student())
    resumed.compile("adam")
    history = resumed.fit(x[:256], y[:256], epochs=4, batch_size=64, callbacks=[backup], verbose=0)
    assert len(history.history["loss"]) == 2  # epochs 3 and 4 only


def test_student_exports_to_int8_and_verifies(teacher, digits):
    (x, y), (x_test, y_test) = digits
    student = _student()
    distiller = Distiller(teacher, student)
    distiller.compile("adam")
    distiller.fit(x, y, epochs=3, batch_size=64, verbose=0)
    tflite, report = export_tflite(student, quantize="int8", representative_data=x[:200])
    assert report.is_full_integer
    parity = verify(student, tflite, x_test)
    assert parity.top1_agreement >= 0.95


def test_errors():
    with pytest.raises(ValueError, match="alpha"):
        Distiller(_teacher(), _student(), alpha=1.5)
    with pytest.raises(TypeError, match="DistillationLoss"):
        Distiller(_teacher(), _student(), loss="kl_divergence")
    with pytest.raises(ValueError, match="no top-level layer named 'nope'"):
        Distiller(_teacher(), _student(), features=[FeatureLoss("t_fc", "nope")])
