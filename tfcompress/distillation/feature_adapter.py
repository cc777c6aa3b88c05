"""FeatureAdapter: learned 1x1 projection of a student feature to the teacher's channel count."""

import keras


@keras.saving.register_keras_serializable(package="tfcompress")
class FeatureAdapter(keras.layers.Layer):
    """Projects `student` features onto the channel count of `teacher` features (FitNets regressor).

    Called as `adapter(student, teacher)`; builds from both shapes. A linear map over the last axis
    (a 1x1 convolution on NHWC maps, a Dense on vectors) with `mode="auto"` is created only when the
    channel counts differ, otherwise the student feature passes through unchanged. It lives in the
    Distiller (trained with the student, saved with the Distiller) and is not part of the student.

    Args:
        mode: "auto" (project only if channels differ) or "always". Defaults to "auto".
        **kwargs: Forwarded to `keras.layers.Layer`.

    Example:
        >>> import numpy as np
        >>> from tfcompress.distillation import FeatureAdapter
        >>> adapter = FeatureAdapter()
        >>> s, t = np.ones((2, 4, 4, 8), "float32"), np.ones((2, 4, 4, 16), "float32")
        >>> tuple(adapter(s, t).shape)
        (2, 4, 4, 16)

    References:
        Romero et al. 2015, "FitNets: Hints for Thin Deep Nets".
    """

    def __init__(self, mode="auto", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("auto", "always"):
            raise ValueError(f"FeatureAdapter: mode must be 'auto' or 'always', got {mode!r}.")
        self.mode = mode

    def build(self, student_shape, teacher_shape):
        c_s, c_t = student_shape[-1], teacher_shape[-1]
        self.kernel = None
        if self.mode == "always" or c_s != c_t:
            self.kernel = self.add_weight(name="kernel", shape=(c_s, c_t), initializer="glorot_uniform")

    def call(self, student, teacher):
        if self.kernel is None:
            return student
        return keras.ops.matmul(student, self.kernel)

    def compute_output_shape(self, student_shape, teacher_shape):
        return tuple(student_shape[:-1]) + (teacher_shape[-1],)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
