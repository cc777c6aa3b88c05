"""Distiller: a keras.Model that trains a student from a frozen teacher (logits, features, attention)."""

import keras

from tfcompress._surgery import is_graph_model
from tfcompress.distillation.feature_adapter import FeatureAdapter
from tfcompress.distillation.feature_loss import FeatureLoss
from tfcompress.distillation.soft_target_loss import SoftTargetLoss


class _Untracked:
    """Plain holder, so Keras does not track (and save twice) the helper models it holds."""


def _capture(model, layer_name, role):
    """Records the output of `model.get_layer(layer_name)` each time it runs (subclassed models)."""
    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        names = [layer.name for layer in model.layers]
        raise ValueError(f"Distiller: the {role} '{model.name}' has no layer named '{layer_name}'. "
                         f"Its layers: {names}.") from None
    box = _Untracked()
    box.value = None
    original = layer.call

    def call(*args, **kwargs):
        out = original(*args, **kwargs)
        box.value = out
        return out

    layer.call = call
    return box


def _match_spatial(a, b):
    """Average-pools the larger of two NHWC maps so both have the same height and width."""
    if len(a.shape) != 4 or tuple(a.shape[1:3]) == tuple(b.shape[1:3]):
        return a, b
    (ha, wa), (hb, wb) = a.shape[1:3], b.shape[1:3]
    if ha >= hb and wa >= wb and ha % hb == 0 and wa % wb == 0:
        return keras.ops.average_pool(a, (ha // hb, wa // wb), padding="valid"), b
    if hb >= ha and wb >= wa and hb % ha == 0 and wb % wa == 0:
        return a, keras.ops.average_pool(b, (hb // ha, wb // wa), padding="valid")
    raise ValueError(f"Distiller: feature maps of spatial sizes {(ha, wa)} and {(hb, wb)} cannot be "
                     "matched; pick layers whose sizes are equal or differ by an integer factor.")


def _label_mixing_layer(augment):
    """The keras.layers.MixUp / CutMix inside an augmentation (layer or Sequential), else None."""
    layers = augment.layers if isinstance(augment, keras.Sequential) else [augment]
    return next((layer for layer in layers if isinstance(layer, (keras.layers.MixUp, keras.layers.CutMix))), None)


@keras.saving.register_keras_serializable(package="tfcompress")
class Distiller(keras.Model):
    """Trains `student` to match a frozen `teacher` while fitting the labels (knowledge distillation).

    A `keras.Model`: `compile`, `fit`, `evaluate` and `predict` behave as usual (metrics on the
    student's predictions, validation data, callbacks such as EarlyStopping / ModelCheckpoint /
    BackupAndRestore, `steps_per_execution`, `tf.distribute` strategies). The loss is

        alpha * student_loss(y, student(x))
        + (1 - alpha) * loss(teacher(x), student(x))
        + sum(f.weight * f(teacher features, student features) for f in features)

    The teacher is frozen (`trainable = False`) and always runs with `training=False`. Keep
    `distiller.student` after training: it is the same object you passed in, so pruning, QAT or
    factorized layers in it keep their wrappers.

    What this adds to `keras.distillation.Distiller` (whose loss classes it accepts, and which its
    own loss classes extend): learned adapters for feature maps of different widths and pooling for
    different spatial sizes (FitNets), attention transfer, feature losses on subclassed models,
    softmax-output models (`SoftTargetLoss(from_logits=False)`), one forward pass of the student
    per step (its features come from the same pass as its predictions), sample weights on the
    label loss, and saving the whole Distiller (adapters included) to `.keras` with no scope.

    Args:
        teacher: Trained `keras.Model`. Frozen by this constructor.
        student: `keras.Model` to train; Sequential, Functional or subclassed.
        loss: Output distillation loss, any `keras.distillation.DistillationLoss`.
            Defaults to `SoftTargetLoss(temperature=1.0)` (see "Defaults" below).
        alpha: Weight of the label loss in [0, 1]; the output distillation loss gets `1 - alpha`.
            Defaults to 0.5 (see "Defaults" below).
        student_loss: Keras loss on the labels (also settable with `compile(loss=...)`). Defaults to
            sparse categorical cross-entropy, `from_logits` taken from `loss` (True if it has none).
        features: List of `FeatureLoss` / `AttentionTransferLoss` (or Keras `FeatureDistillation`
            with layer names) on intermediate layers. Defaults to None.
        augment: Callable `x -> x` applied to each training batch (in `fit` only, not in
            `evaluate`/`predict`); the teacher and the student both see the same augmented batch,
            so the teacher's soft targets describe inputs off the training points ("consistent"
            augmentation / function matching). Must keep the labels valid (e.g. small random
            shifts or noise: `keras.Sequential([keras.layers.RandomTranslation(0.1, 0.1)])`).
            A Keras layer (or Sequential) is called with `training=True`, so GaussianNoise or
            Dropout inside it are active; a Keras layer or registered function is saved with
            the Distiller. `keras.layers.MixUp` / `CutMix` blend images but not labels, so they
            need `alpha=0` (the teacher's outputs are then the only targets). Defaults to None.
        **kwargs: Forwarded to `keras.Model` (e.g. `name`).

    Example:
        >>> import keras, numpy as np
        >>> from tfcompress.distillation import Distiller
        >>> teacher = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, "relu"), keras.layers.Dense(3)])
        >>> student = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
        >>> distiller = Distiller(teacher, student)  # alpha=0.5, SoftTargetLoss(temperature=1.0)
        >>> distiller.compile(optimizer="adam", metrics=["accuracy"])
        >>> x, y = np.random.rand(64, 8).astype("float32"), np.random.randint(0, 3, 64)
        >>> history = distiller.fit(x, y, epochs=1, verbose=0)
        >>> trained = distiller.student

    Defaults (alpha=0.5, temperature 1): chosen by `benchmarks/distill_defaults.py` on the 8x8
    digits, a grid of alpha in {0.1, 0.3, 0.5, 0.7, 0.9} x T in {1, 2, 4, 8} plus the student alone,
    for 100 / 300 / 1150 training images x two 2.3 k-parameter students (CNN, MLP) x 3 seeds, the
    teacher (98-99 % test) trained on all 1150 images; best mean rank of validation accuracy (a
    split carved from the training data; the test split never entered the choice). Mean test top-1
    over the 18 cells: alone 90.9 %, alpha=0.5/T=1 90.9 % (within 0.1 point of alone for every
    size and student, validation and test), the former defaults alpha=0.1/T=4 89.2 % (100 images: 80.3 vs
    84.2 % for the CNN, 82.2 vs 86.8 % for the MLP), alpha=0.5/T=2 89.9 %. The teacher saw the
    student's images (at T=1 it gives their label 99.98 % probability on average), so a small
    student gained nothing robust from softer targets there, while in the worst cell T=2 cost up to
    2.8 points and T=4-8 up to 8-15 (validation, vs alone): the defaults are the setting that does
    not hurt. Raise
    the temperature (2-4) and lower alpha when the teacher's outputs on the student's data are
    informative (a teacher trained on other data, `augment=`, a student with capacity to spare)
    and check the choice on a validation split.

    References:
        Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network"; Romero et al.
        2015, "FitNets: Hints for Thin Deep Nets"; Zagoruyko & Komodakis 2017, "Paying More
        Attention to Attention"; Beyer et al. 2022, "Knowledge distillation: A good teacher is
        patient and consistent" (consistent augmentation); Cho & Hariharan 2019, "On the Efficacy
        of Knowledge Distillation" (small students and soft targets).
    """

    def __init__(self, teacher, student, *, loss=None, alpha=0.5, student_loss=None, features=None,
                 augment=None, **kwargs):
        kwargs.setdefault("name", "distiller")
        super().__init__(**kwargs)
        for role, model in (("teacher", teacher), ("student", student)):
            if not isinstance(model, keras.Model):
                raise TypeError(f"Distiller: {role} must be a keras.Model, got {type(model).__name__}.")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"Distiller: alpha must be in [0, 1], got {alpha!r}.")
        loss = SoftTargetLoss(temperature=1.0) if loss is None else loss
        if not isinstance(loss, keras.distillation.DistillationLoss):
            raise TypeError("Distiller: loss must be a keras.distillation.DistillationLoss such as "
                            f"SoftTargetLoss(temperature=4.0), got {type(loss).__name__}.")
        if augment is not None and not callable(augment):
            raise TypeError("Distiller: augment must be a callable x -> x (e.g. a keras.layers."
                            f"RandomTranslation), got {type(augment).__name__}.")
        mixing = _label_mixing_layer(augment)
        if mixing is not None and float(alpha) > 0:
            raise ValueError(
                f"Distiller: augment contains {type(mixing).__name__} '{mixing.name}', which blends "
                "images without blending their labels, so the label loss (alpha > 0) would train on "
                f"wrong labels. Use alpha=0 (got {alpha!r}): the teacher's outputs on the blended "
                "images are then the only targets (function matching, Beyer et al. 2022).")
        features = list(features or [])
        for f in features:
            if not getattr(f, "teacher_layer_name", None) or not getattr(f, "student_layer_name", None):
                raise ValueError(f"Distiller: feature loss {f!r} must name a teacher and a student layer "
                                 "(FeatureLoss, AttentionTransferLoss or FeatureDistillation).")
        self.teacher = teacher
        self.student = student
        self.teacher.trainable = False
        self.distillation_loss = loss
        self.alpha = float(alpha)
        if student_loss is None:
            student_loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=getattr(loss, "from_logits", True))
        self.student_loss = keras.losses.get(student_loss)
        self.features = features
        self.adapters = [FeatureAdapter(mode="always" if f.adapter is True else "auto",
                                        name=f"adapter_{i}_{f.student_layer_name}")
                         if isinstance(f, FeatureLoss) and f.adapter is not False else None
                         for i, f in enumerate(features)]
        self.adapters = [a for a in self.adapters if a is not None]
        self._aux = _Untracked()
        self._aux.augment = augment
        self._aux.adapter_of = {}
        k = 0
        for i, f in enumerate(features):
            if isinstance(f, FeatureLoss) and f.adapter is not False:
                self._aux.adapter_of[i] = self.adapters[k]
                k += 1
        self._aux.student = self._feature_source(student, [f.student_layer_name for f in features], "student")
        self._aux.teacher = self._feature_source(teacher, [f.teacher_layer_name for f in features], "teacher")
        self._aux.student_features = None
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.feature_loss_tracker = keras.metrics.Mean(name="feature_loss") if features else None
        self._build_symbolically()

    def _build_symbolically(self):
        """Builds the Distiller (and its adapters) from a graph student's inputs, so callbacks that
        need a built model (BackupAndRestore) work before the first batch."""
        if not self.built and is_graph_model(self.student) and self.student.inputs:
            inputs = self.student.inputs
            self(inputs[0] if len(inputs) == 1 else inputs)
            self.built = True

    def _feature_source(self, model, names, role):
        """Returns a function `x, training -> (outputs, [features])` running `model` once."""
        if not names:
            return lambda x, training: (model(x, training=training), [])
        if is_graph_model(model) and model.inputs:
            outputs = {"outputs": model.outputs[0] if len(model.outputs) == 1 else model.outputs}
            for i, name in enumerate(names):
                try:
                    outputs[f"feature_{i}"] = model.get_layer(name).output
                except ValueError:
                    raise ValueError(
                        f"Distiller: the {role} '{model.name}' has no top-level layer named '{name}'. "
                        f"Its layers: {[layer.name for layer in model.layers]}.") from None
            extractor = keras.Model(model.inputs, outputs, name=f"{model.name}_features")

            def run(x, training):
                out = extractor(x, training=training)
                return out["outputs"], [out[f"feature_{i}"] for i in range(len(names))]

            return run
        boxes = [_capture(model, name, role) for name in names]
        return lambda x, training: (model(x, training=training), [box.value for box in boxes])

    def _pairs(self, student_features, teacher_features):
        pairs = []
        for i, (f, s, t) in enumerate(zip(self.features, student_features, teacher_features)):
            s, t = _match_spatial(s, t)
            if i in self._aux.adapter_of:
                s = self._aux.adapter_of[i](s, t)
            pairs.append((f, s, t))
        return pairs

    def call(self, inputs, training=None):
        outputs, features = self._aux.student(inputs, training)
        self._aux.student_features = features
        if self.adapters and not all(a.built for a in self.adapters):
            # Builds the adapters from the real feature shapes (Keras's symbolic build, or the first call).
            _, teacher_features = self._aux.teacher(inputs, False)
            self._pairs(features, teacher_features)
        return outputs

    @property
    def augment(self):
        """The callable applied to each training batch before both models see it (or None)."""
        return self._aux.augment

    def train_step(self, data):
        if self._aux.augment is not None:
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            augment = self._aux.augment
            # A Keras layer gets training=True: layers such as GaussianNoise or Dropout default to
            # training=False when called outside a model and would otherwise do nothing here.
            x = augment(x, training=True) if isinstance(augment, keras.layers.Layer) else augment(x)
            data = keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
        return super().train_step(data)

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """Configures training like `keras.Model.compile`; `loss`, if given, replaces `student_loss`.

        Example:
            >>> # distiller.compile(optimizer="adam", metrics=["accuracy"])
        """
        if loss is not None:
            self.student_loss = keras.losses.get(loss)
        super().compile(optimizer=optimizer, loss=None, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        # Restores compile() (optimizer state included) when a saved Distiller is loaded.
        config = keras.saving.deserialize_keras_object(config)
        config.pop("loss", None)
        self.compile(**config)
        self._build_symbolically()
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        student_features = self._aux.student_features or []
        teacher_out, teacher_features = self._aux.teacher(x, False)
        teacher_out = keras.ops.stop_gradient(teacher_out)
        soft = self.distillation_loss.compute_loss(teacher_out, y_pred)
        total = soft
        hard = keras.ops.zeros(())
        if y is not None and self.alpha > 0:
            hard = self.student_loss(y, y_pred, sample_weight=sample_weight)
            total = self.alpha * hard + (1.0 - self.alpha) * soft
        if self.features:
            teacher_features = [keras.ops.stop_gradient(t) for t in teacher_features]
            feature_total = keras.ops.zeros(())
            for f, s, t in self._pairs(student_features, teacher_features):
                feature_total = feature_total + getattr(f, "weight", 1.0) * f.compute_loss(t, s)
            total = total + feature_total
            self.feature_loss_tracker.update_state(feature_total)
        self.student_loss_tracker.update_state(hard)
        self.distillation_loss_tracker.update_state(soft)
        losses = list(self.student.losses)  # the student's regularizers (not the frozen teacher's)
        if losses:
            total = total + keras.ops.sum(keras.ops.stack([keras.ops.cast(v, total.dtype) for v in losses]))
        return total

    def get_config(self):
        return {
            **super().get_config(),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "loss": keras.saving.serialize_keras_object(self.distillation_loss),
            "alpha": self.alpha,
            "student_loss": keras.losses.serialize(self.student_loss),
            "features": [keras.saving.serialize_keras_object(f) for f in self.features],
            "augment": None if self.augment is None else keras.saving.serialize_keras_object(self.augment),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("teacher", "student", "loss"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        config["student_loss"] = keras.losses.deserialize(config["student_loss"])
        config["features"] = [keras.saving.deserialize_keras_object(f) for f in config["features"]]
        if config.get("augment") is not None:
            config["augment"] = keras.saving.deserialize_keras_object(config["augment"])
        return cls(**config)
