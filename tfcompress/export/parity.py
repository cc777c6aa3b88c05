"""verify: run a Keras model and its TFLite export on the same inputs and compare."""

import numpy as np

from tfcompress.export import _app_io


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

    Example:
        >>> report = verify(model, tflite_bytes, x_test)  # doctest: +SKIP
        >>> report.top1_agreement  # doctest: +SKIP
        0.997
    """
    return _app_io.verify_outputs(model, tflite, data, batch_size)
