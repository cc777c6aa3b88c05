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

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not a TFLite model, or is truncated/corrupt.

    Example:
        >>> report = inspect_tflite("model.tflite")  # doctest: +SKIP
        >>> report.targets["edgetpu"].offending_ops  # doctest: +SKIP
        []
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(map(repr, TARGETS))}, got {target!r}.")
    data = read_bytes(tflite)
    parsed = read_model(data)
    reports = {
        "cpu": _targets.xnnpack_report(data, parsed),
        "gpu": _targets.gpu_report(data, parsed),
        "edgetpu": _targets.edgetpu_report(parsed),
    }
    return ExportReport(parsed, reports, target=target, quantize=quantize)
