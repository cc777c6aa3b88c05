"""verify: run a Keras model and its TFLite export on the same inputs and compare."""

import os

import numpy as np
from ai_edge_litert import interpreter as litert

from tfcompress.export.interpreter import run_tflite
from tfcompress.export.verify_report import VerifyReport


def _check_verify_args(model, tflite, data, batch_size):
    """verify's arguments, checked before any work; messages name argument, value, choices."""
    if model is None or not callable(getattr(model, "predict", None)):
        raise TypeError(f"model must be the keras.Model the file was exported from (anything "
                        f"with .predict), got {type(model).__name__}.")
    if not isinstance(tflite, (bytes, bytearray, memoryview, str, os.PathLike,
                               litert.Interpreter)):
        raise TypeError(f"tflite must be TFLite bytes, a path or an interpreter from "
                        f"load_interpreter, got {type(tflite).__name__}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if data is None:
        raise TypeError("data must be an input array (n, ...) or a list of arrays, got None.")
    arrays = list(data) if isinstance(data, (list, tuple)) else [data]
    if not arrays:
        raise ValueError("data is an empty list; give one input array (n, ...) per model input.")
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        where = f"data[{i}]" if isinstance(data, (list, tuple)) else "data"
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{where} must be a real numeric array, got dtype {a.dtype}.")
        if a.ndim == 0 or len(a) == 0:
            raise ValueError(f"{where} has no samples (shape {a.shape}); give at least one "
                             "sample of shape (n, ...).")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(f"{where} contains NaN or inf; compare on finite inputs.")


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

    Raises:
        TypeError: `model` has no `predict`, `tflite` is not bytes/path/interpreter, `data` is
            not a real numeric array (or list of them), `batch_size` is not an integer.
        ValueError: `data` has no samples or non-finite values, `batch_size` < 1, or the file
            cannot be loaded.

    Example:
        >>> report = verify(model, tflite_bytes, x_test)  # doctest: +SKIP
        >>> report.top1_agreement  # doctest: +SKIP
        0.997
    """
    _check_verify_args(model, tflite, data, batch_size)
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
