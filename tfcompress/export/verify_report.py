"""VerifyReport: how closely a TFLite model reproduces its Keras model."""

import numpy as np


class VerifyReport:
    """Keras-vs-TFLite parity on the same inputs.

    Attributes:
        max_abs_error: Largest |keras - tflite| over all outputs.
        mean_abs_error: Mean |keras - tflite|.
        top1_agreement: Fraction (0..1) of samples whose argmax over the last axis agrees; None
            when the output has a single unit per sample.
        num_samples: Samples compared.
        output_scale: Largest |keras output|, to read the errors against.
        per_output: `{output name: VerifyReport}` of each output, filled by `verify`.

    Example:
        >>> r = VerifyReport(max_abs_error=0.01, mean_abs_error=0.002, top1_agreement=0.995,
        ...                  num_samples=200, output_scale=1.0)
        >>> r.top1_agreement >= 0.99
        True
    """

    def __init__(self, max_abs_error, mean_abs_error, top1_agreement, num_samples, output_scale):
        for name, value in (("max_abs_error", max_abs_error), ("mean_abs_error", mean_abs_error),
                            ("output_scale", output_scale)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                    or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}.")
        if top1_agreement is not None and not (
                isinstance(top1_agreement, (int, float, np.number))
                and 0.0 <= top1_agreement <= 1.0):
            raise ValueError(f"top1_agreement must be None or a fraction in [0, 1], got "
                             f"{top1_agreement!r}.")
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) \
                or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}.")
        self.max_abs_error = float(max_abs_error)
        self.mean_abs_error = float(mean_abs_error)
        self.top1_agreement = None if top1_agreement is None else float(top1_agreement)
        self.num_samples = int(num_samples)
        self.output_scale = float(output_scale)
        self.per_output = {}

    def __repr__(self):
        top1 = "n/a" if self.top1_agreement is None else f"{self.top1_agreement:.2%}"
        return (f"VerifyReport(max_abs_error={self.max_abs_error:.4g}, "
                f"mean_abs_error={self.mean_abs_error:.4g}, top1_agreement={top1}, "
                f"num_samples={self.num_samples})")
