"""tfcompress.export: Keras 3 -> TFLite, parity checks, target reports and LiteRT helpers.

Example:
    >>> from tfcompress.export import export_tflite, verify, benchmark_tflite
    >>> tflite, report = export_tflite(model, "m.tflite", quantize="int8",
    ...                                representative_data=x_train[:200])  # doctest: +SKIP
    >>> verify(model, tflite, x_test).top1_agreement  # doctest: +SKIP
    0.997
"""

import os as _os

if not _os.environ.get("TFCOMPRESS_SANDBOX_CHILD"):
    # The LiteRT child process of `_sandbox` imports only the light modules it needs
    # (interpreter, sparse): the converter side pulls in Keras and TensorFlow (seconds per call).
    from tfcompress.export.analysis import inspect_tflite
    from tfcompress.export.converter import export_tflite
    from tfcompress.export.export_report import ExportReport
    from tfcompress.export.interpreter import benchmark_tflite, load_interpreter, run_tflite
    from tfcompress.export.parity import verify
    from tfcompress.export.prepare import prepare_for_export
    from tfcompress.export.sparse import rewrite_tflite, sparse_kernel_markdown, sparse_kernel_report
    from tfcompress.export.target_report import TargetReport
    from tfcompress.export.verify_report import VerifyReport

__all__ = [
    "ExportReport",
    "TargetReport",
    "VerifyReport",
    "benchmark_tflite",
    "export_tflite",
    "inspect_tflite",
    "load_interpreter",
    "prepare_for_export",
    "rewrite_tflite",
    "run_tflite",
    "sparse_kernel_markdown",
    "sparse_kernel_report",
    "verify",
]
