"""Distiller(augment=...): teacher and student see the same augmented batch, in fit only."""

import keras
import numpy as np


class _Recorder(keras.layers.Layer):
    """Identity layer that keeps a numpy copy of each concrete input it sees, with the training flag."""

    def __init__(self, log, **kwargs):
        super().__init__(**kwargs)
        self._log = lambda: log  # a bare list attribute would be copied into a Keras TrackedList

    def call(self, x, training=None):
        try:
            value = keras.ops.convert_to_numpy(x).copy()
        except Exception:  # symbolic tensor while Keras builds the model: nothing to record
            return x
        self._log().append((bool(training), value))
        return x

    def compute_output_shape(self, input_shape):
        return input_shape


def _model(log, name):
    inp = keras.Input((6,))
    x = _Recorder(log, name=f"{name}_rec")(inp)
    return keras.Model(inp, keras.layers.Dense(3, name=f"{name}_out")(x), name=name)


def _fit(augment, x, y):
    from tfcompress.distillation import Distiller

    teacher_log, student_log = [], []
    distiller = Distiller(_model(teacher_log, "t"), _model(student_log, "s"), alpha=0.5, augment=augment)
    distiller.compile("sgd", run_eagerly=True)
    distiller.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return distiller, teacher_log, student_log


def test_teacher_and_student_see_the_same_deterministic_augmentation():
    x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    y = np.arange(8) % 3
    _, teacher_log, student_log = _fit(lambda b: keras.ops.flip(b, axis=1) * 2.0 + 1.0, x, y)
    reference = x[:, ::-1] * 2.0 + 1.0  # numpy reference of the augmentation
    assert len(teacher_log) == 1 and len(student_log) == 1
    (t_training, t_seen), (s_training, s_seen) = teacher_log[0], student_log[0]
    assert t_training is False and s_training is True  # teacher in inference mode, student training
    np.testing.assert_allclose(t_seen, reference, rtol=0, atol=1e-6)
    np.testing.assert_allclose(s_seen, reference, rtol=0, atol=1e-6)


def test_random_augmentation_is_drawn_once_per_batch_and_skipped_outside_fit():
    keras.utils.set_random_seed(1)
    x = np.zeros((16, 6), "float32")
    y = np.arange(16) % 3
    seed = keras.random.SeedGenerator(7)
    distiller, teacher_log, student_log = _fit(
        lambda b: b + keras.random.normal(keras.ops.shape(b), stddev=0.5, seed=seed), x, y)
    t_seen, s_seen = teacher_log[0][1], student_log[0][1]
    np.testing.assert_array_equal(t_seen, s_seen)  # one draw, shared by both models
    assert 0.35 < float(np.std(s_seen)) < 0.65  # it is the N(0, 0.5^2) noise added to zeros
    teacher_log.clear(), student_log.clear()
    distiller.evaluate(x, y, batch_size=16, verbose=0)
    np.testing.assert_array_equal(student_log[-1][1], x)  # evaluate: no augmentation
    np.testing.assert_array_equal(teacher_log[-1][1], x)


def test_augment_layer_saved_and_bad_augment_rejected(tmp_path):
    import pytest

    from tfcompress.distillation import Distiller

    teacher = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    student = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    distiller = Distiller(teacher, student, augment=keras.layers.RandomTranslation(0.25, 0.25))
    distiller.compile("adam")
    x, y = np.random.rand(8, 4, 4, 1).astype("float32"), np.arange(8) % 3
    distiller.fit(x, y, epochs=1, verbose=0)
    distiller.save(tmp_path / "d.keras")
    loaded = keras.saving.load_model(tmp_path / "d.keras")
    assert isinstance(loaded.augment, keras.layers.RandomTranslation)
    assert loaded.augment.height_factor == distiller.augment.height_factor
    np.testing.assert_allclose(loaded.student.predict(x, verbose=0), student.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(TypeError, match="augment must be a callable"):
        Distiller(teacher, student, augment=3)


def test_keras_layer_augmentation_runs_in_training_mode():
    # GaussianNoise defaults to training=False when called outside a model: the Distiller must pass
    # training=True, or a Sequential([..., GaussianNoise]) augmentation silently adds no noise.
    keras.utils.set_random_seed(3)
    x = np.zeros((64, 6), "float32")
    y = np.arange(64) % 3
    augment = keras.Sequential([keras.layers.GaussianNoise(0.5)])
    _, teacher_log, student_log = _fit(augment, x, y)
    t_seen, s_seen = teacher_log[0][1], student_log[0][1]
    np.testing.assert_array_equal(t_seen, s_seen)  # one draw, shared by both models
    assert 0.4 < float(np.std(s_seen)) < 0.6  # N(0, 0.5^2) noise on zeros: sd 0.5 (384 draws)
    assert abs(float(np.mean(s_seen))) < 0.1


def test_label_mixing_augmentation_needs_alpha_zero():
    import pytest

    from tfcompress.distillation import Distiller

    teacher = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    student = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    mix = keras.Sequential([keras.layers.GaussianNoise(0.1), keras.layers.MixUp(0.4, name="mix")])
    with pytest.raises(ValueError, match=r"MixUp 'mix'.*Use alpha=0 \(got 0.1\)"):
        Distiller(teacher, student, alpha=0.1, augment=mix)
    # alpha=0 is accepted and trains: the student learns the teacher's function on blended images.
    keras.utils.set_random_seed(0)
    x, y = np.random.rand(64, 4, 4, 1).astype("float32"), np.arange(64) % 3
    distiller = Distiller(teacher, student, alpha=0.0, augment=mix)
    distiller.compile(keras.optimizers.Adam(0.05))
    history = distiller.fit(x, y, epochs=30, batch_size=16, verbose=0).history["distillation_loss"]
    assert history[-1] < 0.5 * history[0]
