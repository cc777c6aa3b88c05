"""FeatureLoss: FitNets hint loss between intermediate layers, with a learned adapter."""

import keras


@keras.saving.register_keras_serializable(package="tfcompress")
class FeatureLoss(keras.distillation.FeatureDistillation):
    """Matches a student layer's output to a teacher layer's output (FitNets hints).

    Extends `keras.distillation.FeatureDistillation` (same layer-name arguments, same `loss`) with:
    a learned adapter (a 1x1 projection over the channel axis, `FeatureAdapter`) when the channel
    counts differ (or always, with `adapter=True`), average pooling of the larger map when spatial
    sizes differ by an integer factor, a per-loss `weight`, and subclassed models (the
    `tfcompress.distillation.Distiller` captures the named layers' outputs during the forward pass).

    Args:
        teacher_layer_name: Name of the teacher layer whose output is the target.
        student_layer_name: Name of the student layer whose output is matched.
        loss: Keras loss between the (adapted) student feature and the teacher feature.
            Defaults to "mse".
        weight: Multiplier of this loss in the Distiller's total. Defaults to 1.0.
        adapter: "auto" (learned projection only if channel counts differ), True (always) or
            False (never; the shapes must then match). Defaults to "auto".

    Example:
        >>> from tfcompress.distillation import FeatureLoss
        >>> hint = FeatureLoss("teacher_conv", "student_conv", weight=0.5)
        >>> hint.adapter
        'auto'

    References:
        Romero et al. 2015, "FitNets: Hints for Thin Deep Nets".
    """

    def __init__(self, teacher_layer_name, student_layer_name, loss="mse", weight=1.0, adapter="auto"):
        if not teacher_layer_name or not student_layer_name:
            raise ValueError("FeatureLoss needs both teacher_layer_name and student_layer_name.")
        if adapter not in ("auto", True, False):
            raise ValueError(f"FeatureLoss: adapter must be 'auto', True or False, got {adapter!r}.")
        super().__init__(loss=loss, teacher_layer_name=teacher_layer_name,
                         student_layer_name=student_layer_name)
        self.weight = float(weight)
        self.adapter = adapter
        self._loss_config = loss if isinstance(loss, str) else keras.losses.serialize(self.loss)

    def get_config(self):
        return {"teacher_layer_name": self.teacher_layer_name,
                "student_layer_name": self.student_layer_name, "loss": self._loss_config,
                "weight": self.weight, "adapter": self.adapter}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("loss"), dict):
            config["loss"] = keras.losses.deserialize(config["loss"])
        return cls(**config)
