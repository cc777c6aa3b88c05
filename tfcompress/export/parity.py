"""verify: run a Keras model and its TFLite export on the same inputs and compare."""

import numpy as np

from tfcompress.export.interpreter import run_tflite
from tfcompress.export.verify_report import VerifyReport


def verify(model, tflite, data, batch_size=256):
    """Compares a Keras model with a TFLite model on the same inputs.

    int8/uint8 TFLite inputs are quantized and outputs dequantized with the file's own scales, so
    the numbers are comparable to the Keras floats.

    Args:
        model: The `keras.Model` the file was exported from (or any callable with `.predict`).
        tflite: TFLite bytes, a path, or an interpreter from `load_interpreter`.
        data: Input array `(n, ...)` (or a list of arrays for multi-input models).
        batch_size: Samples per step on both sides. Defaults to 256.

    Returns:
        A `VerifyReport` (max/mean abs error, top-1 agreement, samples compared).

    Example:
        >>> report = verify(model, tflite_bytes, x_test)  # doctest: +SKIP
        >>> report.top1_agreement  # doctest: +SKIP
        0.997
    """
    expected = model.predict(data, batch_size=batch_size, verbose=0)
    actual = run_tflite(tflite, data, batch_size=batch_size)
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    actual = actual if isinstance(actual, (list, tuple)) else [actual]
    if len(expected) != len(actual):
        raise ValueError(f"The Keras model has {len(expected)} outputs, the TFLite model "
                         f"{len(actual)}.")
    expected = [np.asarray(e, dtype=np.float64) for e in expected]
    actual = [np.asarray(a, dtype=np.float64) for a in actual]
    for e, a in zip(expected, actual):
        if e.shape != a.shape:
            raise ValueError(f"Output shapes differ: Keras {e.shape} vs TFLite {a.shape}.")
    diffs = np.concatenate([np.abs(e - a).ravel() for e, a in zip(expected, actual)])
    first_e, first_a = expected[0], actual[0]
    if first_e.ndim >= 2 and first_e.shape[-1] > 1:
        agreement = float(np.mean(first_e.argmax(-1) == first_a.argmax(-1)))
    else:
        agreement = None
    scale = max(float(np.abs(e).max()) if e.size else 0.0 for e in expected)
    return VerifyReport(diffs.max() if diffs.size else 0.0, diffs.mean() if diffs.size else 0.0,
                        agreement, len(first_e), scale)
