"""verify: run a Keras model and its TFLite export on the same inputs and compare."""

import os

import numpy as np
from ai_edge_litert import interpreter as litert

from tfcompress.export import _app_io


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
        raise TypeError("data must be an input array (n, ...), a list of arrays or a dict of "
                        "arrays keyed by input name, got None.")
    if isinstance(data, dict):
        arrays = list(data.items())
    elif isinstance(data, (list, tuple)):
        arrays = list(enumerate(data))
    else:
        arrays = [(None, data)]
    if not arrays:
        raise ValueError("data is empty; give one input array (n, ...) per model input.")
    for key, a in arrays:
        a = np.asarray(a)
        where = "data" if key is None else f"data[{key!r}]"
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
        data: Input array `(n, ...)`, a list of arrays for multi-input models (Keras input order),
            or a dict of arrays keyed by input name.
        batch_size: Samples per step on both sides. Defaults to 256.

    Outputs are matched by name (Keras output names, or the keys of a dict output, against the
    file's signature keys) when the file keeps them, else by position.

    Returns:
        A `VerifyReport` over all outputs (max/mean abs error, top-1 agreement of the first output,
        samples compared); `report.per_output` maps each output name to its own `VerifyReport`.

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
    return _app_io.verify_outputs(model, tflite, data, batch_size)
