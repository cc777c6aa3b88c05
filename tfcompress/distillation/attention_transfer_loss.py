"""AttentionTransferLoss: match spatial attention maps of teacher and student (Zagoruyko & Komodakis)."""

import keras


@keras.saving.register_keras_serializable(package="tfcompress")
class AttentionTransferLoss(keras.distillation.DistillationLoss):
    """Activation-based attention transfer between two NHWC feature maps.

    The attention map of a `(batch, h, w, c)` feature is `sum_c |a|^p` flattened to `h * w` values and
    L2-normalised per example; the loss is the mean squared difference of the teacher's and the
    student's maps (the authors' implementation), so channel counts need not match and no adapter
    is needed. When spatial sizes differ by an integer factor the larger map is average-pooled.

    Args:
        teacher_layer_name: Name of the teacher layer (4-D NHWC output).
        student_layer_name: Name of the student layer (4-D NHWC output).
        p: Exponent of the attention map. Defaults to 2.
        weight: Multiplier of this loss in the Distiller's total (the paper's beta). Defaults to 1000.0.

    Example:
        >>> import numpy as np
        >>> from tfcompress.distillation import AttentionTransferLoss
        >>> at = AttentionTransferLoss("t_conv", "s_conv")
        >>> a = np.random.rand(2, 4, 4, 8).astype("float32")
        >>> float(at.compute_loss(a, a * 3.0)) < 1e-9  # scale-invariant
        True

    References:
        Zagoruyko & Komodakis 2017, "Paying More Attention to Attention: Improving the Performance
        of Convolutional Neural Networks via Attention Transfer".
    """

    def __init__(self, teacher_layer_name, student_layer_name, p=2, weight=1000.0):
        if not teacher_layer_name or not student_layer_name:
            raise ValueError("AttentionTransferLoss needs both teacher_layer_name and student_layer_name.")
        self.teacher_layer_name = teacher_layer_name
        self.student_layer_name = student_layer_name
        self.p = p
        self.weight = float(weight)

    def attention_map(self, features):
        """`(batch, h * w)` L2-normalised attention map of an NHWC feature."""
        if len(features.shape) != 4:
            raise ValueError(
                f"AttentionTransferLoss needs 4-D NHWC features, got shape {tuple(features.shape)}; "
                "use FeatureLoss for Dense outputs.")
        a = keras.ops.sum(keras.ops.power(keras.ops.abs(features), self.p), axis=-1)
        a = keras.ops.reshape(a, (-1, a.shape[1] * a.shape[2]))
        norm = keras.ops.sqrt(keras.ops.sum(keras.ops.square(a), axis=-1, keepdims=True))
        return a / keras.ops.maximum(norm, 1e-12)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        diff = self.attention_map(student_outputs) - self.attention_map(teacher_outputs)
        return keras.ops.mean(keras.ops.square(diff))

    def get_config(self):
        return {"teacher_layer_name": self.teacher_layer_name,
                "student_layer_name": self.student_layer_name, "p": self.p, "weight": self.weight}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
