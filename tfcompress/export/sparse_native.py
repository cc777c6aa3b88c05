"""The native tfcompress sparse kernels: locating the host library and registering it.

The kernels (``tflite_export/*.c``) are compiled by ``pip install`` into the extension
``tfcompress/export/_tfc_sparse_ops*.so`` (plain C, loaded with dlopen, no Python API).
The LiteRT Python interpreter cannot take new op registrations from outside (its wheel
exports no ``MutableOpResolver::AddCustom``), so the library also implements the external
delegate plugin ABI: ``load_delegate(path)`` gives a delegate that claims exactly the
``TFC_*`` custom nodes and runs them with the kernels; XNNPACK still takes everything else.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.machinery
import os
import subprocess
import sys
import tempfile

CUSTOM_OPS = ("TFC_SPARSE_FC", "TFC_SPARSE_CONV_1X1", "TFC_SPARSE_INVERTED_RESIDUAL")
_SOURCES = ("tfc_op.c", "tfc_format.c", "tfc_relayout.c", "tfc_kernels_portable.c", "tfc_kernels_x86.c",
            "tfc_kernels_x86_avx2.c",
            "tfc_kernels_aarch64.c",
            "tfc_sparse_delegate.c", "tfc_threads.c", "tfc_fused.c", "tfc_fused_kernels.c", "tfc_fused_x86.c")
_HEADERS = ("tfc_tflite_abi.h", "tfc_sparse_ops.h", "tfc_internal.h", "tfc_threads.h")
# Host build flags; keep in sync with setup.py (see tflite_export/README.md, "Host build").
HOST_CFLAGS = ["-O3", "-std=c11", "-ffp-contract=fast", "-Wno-psabi", "-fPIC", "-DTFC_MULTIVERSION",
               "-DTFC_X86_DISPATCH", "-pthread"]


def _source_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "tflite_export"))


def _packaged_library():
    here = os.path.dirname(os.path.abspath(__file__))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(here, "_tfc_sparse_ops" + suffix)
        if os.path.exists(path):
            return path
    found = glob.glob(os.path.join(here, "_tfc_sparse_ops*.so"))
    return found[0] if found else None


def _build_from_sources(src):
    """Compiles the kernels with the system C compiler into a per-user cache (dev checkouts)."""
    digest = hashlib.sha256()
    for name in _SOURCES + _HEADERS:
        with open(os.path.join(src, name), "rb") as f:
            digest.update(f.read())
    digest.update(" ".join(HOST_CFLAGS).encode())
    cache = os.environ.get("TFCOMPRESS_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "tfcompress")
    os.makedirs(cache, exist_ok=True)
    out = os.path.join(cache, f"libtfc_sparse_ops-{digest.hexdigest()[:16]}.so")
    if os.path.exists(out):
        return out
    cc = os.environ.get("CC", "cc")
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
    os.close(fd)
    cmd = [cc, *HOST_CFLAGS, "-shared", "-o", tmp, *[os.path.join(src, s) for s in _SOURCES], "-lm"]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        os.unlink(tmp)
        detail = getattr(e, "stderr", "") or str(e)
        raise RuntimeError(
            f"Could not compile the tfcompress sparse kernels with {cc!r}: {detail.strip()[:500]}. "
            "Install a C compiler (apt-get install gcc) and reinstall tfcompress (pip install .)."
        ) from None
    os.replace(tmp, out)
    return out


def library_path() -> str:
    """Path of the host build of the tfcompress sparse kernels (a shared library).

    The library built by ``pip install`` is used; in a source checkout where it was not
    built, the kernels are compiled once with the system C compiler into
    ``~/.cache/tfcompress`` (or ``$TFCOMPRESS_CACHE``).

    Returns:
        Absolute path of the shared library.

    Raises:
        RuntimeError: the library is missing and cannot be compiled.

    Example:
        >>> import ctypes
        >>> ctypes.CDLL(library_path()).TfcAbiVersion()
        1
    """
    path = _packaged_library()
    if path:
        return path
    src = _source_dir()
    if all(os.path.exists(os.path.join(src, s)) for s in _SOURCES + _HEADERS):
        return _build_from_sources(src)
    raise RuntimeError(
        "The tfcompress sparse kernels were not built: reinstall with `pip install .` "
        f"(needs a C compiler); looked in {os.path.dirname(os.path.abspath(__file__))}."
    )


def sparse_delegate():
    """A LiteRT delegate that runs the ``TFC_*`` custom ops with the tfcompress kernels.

    Returns:
        An ``ai_edge_litert.interpreter.Delegate`` to pass in ``experimental_delegates``.

    Example:
        >>> from ai_edge_litert.interpreter import Interpreter
        >>> interp = Interpreter(model_content=tflite,
        ...                      experimental_delegates=[sparse_delegate()])  # doctest: +SKIP
    """
    from ai_edge_litert.interpreter import load_delegate

    return load_delegate(library_path())


def custom_ops_in(tflite_bytes) -> list:
    """Names of the tfcompress custom ops used by a TFLite model (bytes)."""
    from ai_edge_litert import schema_py_generated as schema

    names = set()
    try:
        model = schema.Model.GetRootAs(bytes(tflite_bytes), 0)
        for i in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(i).CustomCode()
            if code is not None:
                name = code.decode() if isinstance(code, bytes) else str(code)
                if name in CUSTOM_OPS:
                    names.add(name)
    except Exception:  # noqa: BLE001 - not a flatbuffer: LiteRT reports it when loading
        return []
    return sorted(names)


def with_sparse_kernels(tflite_bytes, interpreter_kwargs: dict) -> dict:
    """Adds the sparse-kernel delegate to interpreter kwargs when the model needs it."""
    if not custom_ops_in(tflite_bytes):
        return interpreter_kwargs
    kwargs = dict(interpreter_kwargs)
    kwargs["experimental_delegates"] = [sparse_delegate(), *(kwargs.get("experimental_delegates") or [])]
    return kwargs


if __name__ == "__main__":  # `python -m tfcompress.export.sparse_native` prints the library path
    sys.stdout.write(library_path() + "\n")
