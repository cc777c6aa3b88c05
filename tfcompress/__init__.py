"""tfcompress: compress Keras 3 models and lower them to TFLite.

Namespaces, one per technique: `tfcompress.pruning`, `tfcompress.quantization`,
`tfcompress.distillation`, `tfcompress.factorization`, `tfcompress.clustering`, and
`tfcompress.export` (TFLite export, verification, reports, sparse kernels); `tfcompress.distribute`
has a MultiWorkerMirroredStrategy that works with Keras 3.15's `fit`. `tfcompress.strip`
unwraps every training wrapper of a model.

`import tfcompress` registers every serializable tfcompress class with Keras (wrappers,
layers, schedules, patterns, losses, callbacks), so `keras.saving.load_model` of a model saved
mid-compression needs no other import and no `custom_objects`. This imports Keras (about 2-3 s,
almost all of it TensorFlow); the export namespace (TFLite converter, LiteRT) still loads on first
use.

Example:
    >>> import tfcompress
    >>> tfcompress.__version__
    '0.1.0'
    >>> tfcompress.pruning.ConstantSparsity(0.5)(10)
    0.5
"""

import importlib
import os

__version__ = "0.1.0"

_NAMESPACES = ("clustering", "distillation", "distribute", "export", "factorization", "pruning",
               "quantization")
# Namespaces whose classes are registered with keras.saving (imported by `import tfcompress`).
_SERIALIZABLE = ("clustering", "distillation", "factorization", "pruning", "quantization")

__all__ = [*_NAMESPACES, "load_digits", "strip"]

from tfcompress.strip import strip  # noqa: E402  (rebinds the name after the submodule import)


def _register_serializables():
    for name in _SERIALIZABLE:
        importlib.import_module(f"tfcompress.{name}")


# The LiteRT child process of tfcompress.export._sandbox (interpreter probes, benchmarks, the
# "auto" guard's timing) needs no Keras class: importing Keras there cost seconds per call.
if not os.environ.get("TFCOMPRESS_SANDBOX_CHILD"):
    _register_serializables()


def __getattr__(name):
    if name in _NAMESPACES:
        return importlib.import_module(f"tfcompress.{name}")
    if name == "load_digits":
        from tfcompress.datasets import load_digits

        return load_digits
    raise AttributeError(f"module 'tfcompress' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
