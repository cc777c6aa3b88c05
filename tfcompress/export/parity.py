"""verify: run a Keras model and its TFLite export on the same inputs and compare."""

import numpy as np

from tfcompress.export.interpreter import _ordered, load_interpreter, run_tflite
from tfcompress.export.verify_report import VerifyReport


def _keras_named(model, predicted):
    """`[(name, array)]` of a Keras prediction (array, list/tuple or dict), in the model's order."""
    if isinstance(predicted, dict):
        try:
            order = [k for k in model.output if k in predicted]
        except (AttributeError, ValueError, TypeError):
            order = []
        order += [k for k in predicted if k not in order]
        return [(k, predicted[k]) for k in order]
    flat = list(predicted) if isinstance(predicted, (list, tuple)) else [predicted]
    try:
        names = list(model.output_names)
    except (AttributeError, ValueError, TypeError):
        names = []
    if len(names) != len(flat):
        names = [f"output_{i}" for i in range(len(flat))]
    return list(zip(names, flat))


def _positional_inputs(interp, data):
    """`data` as run_tflite takes it; a dict keyed by input name is put in the file's input order."""
    if not isinstance(data, dict):
        return data
    try:
        key_of = {d["index"]: key for key, d in interp.get_signature_runner().get_input_details().items()}
    except (ValueError, KeyError, RuntimeError):
        key_of = {}
    details = _ordered(interp.get_input_details(), r"input_(\d+)")  # run_tflite's input order
    keys = [key_of.get(d["index"]) for d in details]
    if sorted(map(str, keys)) != sorted(map(str, data)):
        raise ValueError(f"data has the inputs {sorted(data)}, the TFLite model takes {keys}; give "
                         "one array per input name (or a list in the model's input order).")
    return [data[k] for k in keys]


def _tflite_named(tflite, data, batch_size):
    """`[(name, array)]` of the TFLite outputs: signature keys where the file has a signature."""
    interp = tflite if hasattr(tflite, "get_output_details") else load_interpreter(tflite)
    outputs = run_tflite(interp, _positional_inputs(interp, data), batch_size=batch_size)
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    details = _ordered(interp.get_output_details(), r":(\d+)$")  # run_tflite's output order
    key_of = {}
    try:
        for key, d in interp.get_signature_runner().get_output_details().items():
            key_of[d["index"]] = key
    except (ValueError, KeyError, RuntimeError):
        pass  # no signature: positions only
    return [(key_of.get(d["index"], f"output_{i}"), o) for i, (d, o) in enumerate(zip(details, outputs))]


def _pair_outputs(expected, actual):
    """Matches Keras and TFLite outputs by name when every Keras name is a TFLite key, else by position."""
    if len(expected) != len(actual):
        raise ValueError(f"The Keras model has {len(expected)} outputs "
                         f"({', '.join(n for n, _ in expected)}), the TFLite model {len(actual)} "
                         f"({', '.join(n for n, _ in actual)}).")
    by_name = dict(actual)
    if len(by_name) == len(actual) and all(n in by_name for n, _ in expected):
        return [(n, e, by_name[n]) for n, e in expected]
    return [(n, e, a) for (n, e), (_, a) in zip(expected, actual)]


def _compare(e, a):
    """`VerifyReport` of one output."""
    e, a = np.asarray(e, dtype=np.float64), np.asarray(a, dtype=np.float64)
    diffs = np.abs(e - a).ravel()
    agreement = float(np.mean(e.argmax(-1) == a.argmax(-1))) if e.ndim >= 2 and e.shape[-1] > 1 else None
    return VerifyReport(diffs.max() if diffs.size else 0.0, diffs.mean() if diffs.size else 0.0,
                        agreement, len(e), float(np.abs(e).max()) if e.size else 0.0)


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
    expected = _keras_named(model, model.predict(data, batch_size=batch_size, verbose=0))
    pairs = _pair_outputs(expected, _tflite_named(tflite, data, batch_size))
    for name, e, a in pairs:
        if np.shape(e) != np.shape(a):
            raise ValueError(f"Output '{name}' shapes differ: Keras {np.shape(e)} vs TFLite {np.shape(a)}.")
    per_output = {name: _compare(e, a) for name, e, a in pairs}
    diffs = np.concatenate([np.abs(np.asarray(e, np.float64) - np.asarray(a, np.float64)).ravel()
                            for _, e, a in pairs])
    first = per_output[pairs[0][0]]
    scale = max(r.output_scale for r in per_output.values())
    report = VerifyReport(diffs.max() if diffs.size else 0.0, diffs.mean() if diffs.size else 0.0,
                          first.top1_agreement, first.num_samples, scale)
    report.per_output.update(per_output)
    return report
