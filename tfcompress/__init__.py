"""tfcompress: compress Keras 3 models and lower them to TFLite.

Namespaces, one per technique: `tfcompress.pruning`, `tfcompress.quantization`,
`tfcompress.distillation`, `tfcompress.factorization`, `tfcompress.clustering`, and
`tfcompress.export` (TFLite export, verification, reports, sparse kernels). They are imported on
first use, so `import tfcompress` (and the `tfcompress` command's argument parsing) does not load
TensorFlow.

Example:
    >>> import tfcompress
    >>> tfcompress.__version__
    '0.1.0'
    >>> tfcompress.pruning.ConstantSparsity(0.5)(10)
    0.5
"""

import importlib

__version__ = "0.1.0"

_NAMESPACES = ("clustering", "distillation", "export", "factorization", "pruning", "quantization")

__all__ = [*_NAMESPACES, "load_digits"]


def __getattr__(name):
    if name in _NAMESPACES:
        return importlib.import_module(f"tfcompress.{name}")
    if name == "load_digits":
        from tfcompress.datasets import load_digits

        return load_digits
    raise AttributeError(f"module 'tfcompress' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
