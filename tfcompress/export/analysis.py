"""inspect_tflite: the ExportReport of an existing .tflite file."""

from tfcompress.export import targets as _targets
from tfcompress.export._flatbuffer import read_bytes, read_model
from tfcompress.export.export_report import ExportReport

TARGETS = ("cpu", "gpu", "edgetpu")


def inspect_tflite(tflite, target="cpu", quantize=None):
    """Reports what a TFLite model contains and whether it suits each target.

    Args:
        tflite: TFLite bytes, or a path to a `.tflite` file.
        target: The target whose verdict `report.compatible` gives: "cpu", "gpu" or "edgetpu".
            Every target is checked either way. Defaults to "cpu".
        quantize: Recorded in the report only. Defaults to None.

    Returns:
        An `ExportReport`.

    The native checks (LiteRT interpreter load, GPU analyzer) run in a child process, so a
    corrupt file that crashes LiteRT gives a `ValueError`, never a crash of the caller.

    Raises:
        FileNotFoundError: the path does not exist.
        TypeError: `tflite` is neither bytes nor a path.
        ValueError: the file is not a TFLite model, is truncated/corrupt, or LiteRT cannot load
            or run it (the message says which).

    Example:
        >>> report = inspect_tflite("model.tflite")  # doctest: +SKIP
        >>> report.targets["edgetpu"].offending_ops  # doctest: +SKIP
        []
    """
    _check_target(target)
    if quantize is not None and not isinstance(quantize, str):
        raise TypeError(f"quantize must be None or a string (it is only recorded), got "
                        f"{quantize!r}.")
    return report_for_bytes(read_bytes(tflite), target, quantize, trusted=False)


def _check_target(target):
    if not isinstance(target, str) or target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(map(repr, TARGETS))}, got {target!r}.")


def _check_indices(parsed):
    """Every tensor index an op or the model I/O names exists in its own subgraph."""
    tensors = parsed["tensors"]

    def bad(i, subgraph):
        return not 0 <= i < len(tensors) or tensors[i]["subgraph"] != subgraph

    for op in parsed["ops"]:
        for i in op["inputs"] + op["outputs"]:
            if bad(i, op["subgraph"]):
                raise ValueError(f"Corrupt TFLite flatbuffer: {op['name']} (op #{op['index']}) "
                                 "names a tensor that does not exist in its subgraph.")
    for i in parsed["inputs"] + parsed["outputs"]:
        if bad(i, 0):
            raise ValueError("Corrupt TFLite flatbuffer: a model input/output names a tensor "
                             "that does not exist.")


def report_for_bytes(data, target, quantize, trusted):
    """The ExportReport of verified-identifier bytes `data`.

    `trusted=True` (bytes the converter just produced) runs LiteRT in this process; otherwise
    the native work runs in a child process (`_sandbox`) and a crash there is a ValueError.
    """
    parsed = read_model(data)  # pure Python: rejects most corrupt files before any native code
    _check_indices(parsed)
    if trusted:
        cpu = _targets.xnnpack_report(data, parsed)
        gpu = _targets.gpu_report(data, parsed)
    else:
        from tfcompress.export import _sandbox

        native = _sandbox.run("probe", data, {"ops": True, "gpu_analysis": True})
        cpu = _targets.xnnpack_report(data, parsed, nodes=native.get("ops"),
                                      load_error=native.get("ops_error"))
        gpu = _targets.gpu_report(data, parsed, analysis_text=native["gpu_analysis"])
    reports = {"cpu": cpu, "gpu": gpu, "edgetpu": _targets.edgetpu_report(parsed)}
    return ExportReport(parsed, reports, target=target, quantize=quantize)
