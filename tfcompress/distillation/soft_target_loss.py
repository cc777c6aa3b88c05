"""SoftTargetLoss: Hinton et al.'s temperature-softened KL divergence, built on Keras's LogitsDistillation."""

import keras


@keras.saving.register_keras_serializable(package="tfcompress")
class SoftTargetLoss(keras.distillation.LogitsDistillation):
    """KL(teacher || student) between temperature-softened class distributions, scaled by T^2.

    This is `keras.distillation.LogitsDistillation` with a `keras.losses.KLDivergence` instance
    (its KL path divides the logits by T, applies softmax and multiplies by T^2 so gradient sizes do
    not depend on T; note that its default `loss="kl_divergence"` resolves to a plain function,
    which in Keras 3.15 skips that path and compares raw logits), plus
    `from_logits=False` for models that end in a softmax: their probabilities are turned back into
    logits (log-probabilities) before the temperature is applied. It is the default `loss` of
    `tfcompress.distillation.Distiller`, and can also be given to `keras.distillation.Distiller`.

    Args:
        temperature: Softening temperature T > 0. Defaults to 1.0, the `Distiller` default
            chosen by `benchmarks/distill_defaults.py`; 2-4 soften the targets (Hinton et al.),
            which helped there only when the teacher's outputs carried more than the labels.
        from_logits: Whether model outputs are logits (True) or probabilities (False).
            Defaults to True.

    Example:
        >>> import numpy as np
        >>> from tfcompress.distillation import SoftTargetLoss
        >>> loss = SoftTargetLoss(temperature=2.0)
        >>> logits = np.array([[2.0, 0.0, -1.0]], "float32")
        >>> float(loss.compute_loss(logits, logits)) < 1e-6
        True

    References:
        Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network".
    """

    def __init__(self, temperature=1.0, from_logits=True):
        # A KLDivergence instance: the string "kl_divergence" resolves to a plain function that
        # LogitsDistillation (Keras 3.15) then applies to raw logits instead of probabilities.
        super().__init__(temperature=temperature, loss=keras.losses.KLDivergence())
        self.from_logits = bool(from_logits)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        if not self.from_logits:
            to_logits = lambda p: keras.ops.log(keras.ops.clip(p, 1e-7, 1.0))  # noqa: E731
            teacher_outputs = keras.tree.map_structure(to_logits, teacher_outputs)
            student_outputs = keras.tree.map_structure(to_logits, student_outputs)
        return super().compute_loss(teacher_outputs, student_outputs, **kwargs)

    def get_config(self):
        return {"temperature": self.temperature, "from_logits": self.from_logits}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
