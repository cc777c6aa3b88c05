"""tfcompress: compress Keras 3 models and lower them to TFLite.

Namespaces, one per technique: `tfcompress.pruning`, `tfcompress.quantization`,
`tfcompress.distillation`, `tfcompress.factorization`, `tfcompress.clustering`, and
`tfcompress.export` (TFLite export, verification, reports, sparse kernels).

Example:
    >>> import tfcompress
    >>> tfcompress.__version__
    '0.1.0'
"""

__version__ = "0.1.0"

from tfcompress import clustering  # noqa: E402,F401
from tfcompress import distillation  # noqa: E402,F401
from tfcompress import export  # noqa: E402,F401
from tfcompress import factorization  # noqa: E402,F401
from tfcompress import pruning  # noqa: E402,F401
from tfcompress import quantization  # noqa: E402,F401
from tfcompress.datasets import load_digits  # noqa: E402,F401

__all__ = [
    "clustering",
    "distillation",
    "export",
    "factorization",
    "load_digits",
    "pruning",
    "quantization",
]
