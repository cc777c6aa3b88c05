"""The real TensorFlow Lite C headers, fetched from PyPI, for the app build of the kernels.

No TensorFlow or LiteRT wheel and no Debian package ships `tensorflow/lite/c/common.h`. The
source distribution of `edgefirst-tflite` 0.9.0 on PyPI (Apache-2.0, Au-Zone's Rust bindings of the
TFLite C API) carries an unmodified copy of TFLite's C headers under `crates/tflite-sys/` for
bindgen. This module downloads that sdist once (sha256-pinned), extracts only the `tensorflow/**.h`
headers into a cache and returns the include directory; nothing of it enters this repository.

Set `TFC_TFLITE_HEADERS=/path/to/include` to use another copy (a TensorFlow checkout): the
directory must hold `tensorflow/lite/core/c/common.h` or `tensorflow/lite/c/common.h`.

    python tflite_export/test/tflite_headers.py      # prints the include directory

Example (needs network access to PyPI the first time):
    >>> inc = fetch()                                                 # doctest: +SKIP
    >>> (inc / "tensorflow/lite/core/c/common.h").is_file()           # doctest: +SKIP
    True
"""

import hashlib
import os
import pathlib
import sys
import tarfile
import tempfile
import time
import urllib.request

SDIST = "edgefirst_tflite-0.9.0.tar.gz"
URL = ("https://files.pythonhosted.org/packages/0e/44/3e1bf304a6e1e5fd539584e4ae909d5bc04275a6493ae2"
       "3bcc9e45a05b5e/" + SDIST)
SHA256 = "908319e030a1155935866a93d4f147103a07df441a4c4825a2aee20886358267"
PREFIX = "edgefirst_tflite-0.9.0/crates/tflite-sys/"


def _cache_dir() -> pathlib.Path:
    base = os.environ.get("TFCOMPRESS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tfcompress")
    return pathlib.Path(base) / "tflite-headers" / SDIST.replace(".tar.gz", "")


def _download(dest: pathlib.Path, attempts: int = 3) -> None:
    last = None
    for i in range(attempts):
        try:
            with urllib.request.urlopen(URL, timeout=60) as r:
                data = r.read()
            digest = hashlib.sha256(data).hexdigest()
            if digest != SHA256:
                raise RuntimeError(f"{SDIST}: sha256 {digest} is not the pinned {SHA256}")
            dest.write_bytes(data)
            return
        except OSError as e:  # network hiccup: retry
            last = e
            time.sleep(2 + 3 * i)
    raise RuntimeError(f"could not download {URL} ({last}); set TFC_TFLITE_HEADERS to an include "
                       "directory holding tensorflow/lite/core/c/common.h instead")


def fetch() -> pathlib.Path:
    """Include directory of the real TFLite C headers (downloaded and cached on first use).

    Returns:
        A directory `inc` with `inc/tensorflow/lite/core/c/common.h` (or `.../lite/c/common.h`).

    Raises:
        RuntimeError: the download failed or its checksum differs; or `TFC_TFLITE_HEADERS` names a
            directory without the headers.
    """
    given = os.environ.get("TFC_TFLITE_HEADERS")
    if given:
        inc = pathlib.Path(given)
        if not any((inc / p).is_file() for p in ("tensorflow/lite/core/c/common.h", "tensorflow/lite/c/common.h")):
            raise RuntimeError(f"TFC_TFLITE_HEADERS={given} holds no tensorflow/lite/core/c/common.h")
        return inc
    inc = _cache_dir()
    if (inc / "tensorflow/lite/core/c/common.h").is_file():
        return inc
    inc.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=inc.parent) as tmp:
        archive = pathlib.Path(tmp) / SDIST
        _download(archive)
        out = pathlib.Path(tmp) / "inc"
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                name = member.name
                if not (member.isfile() and name.startswith(PREFIX + "tensorflow/") and name.endswith(".h")):
                    continue
                rel = pathlib.PurePosixPath(name[len(PREFIX):])
                if ".." in rel.parts:
                    continue
                target = out / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
        if not (out / "tensorflow/lite/core/c/common.h").is_file():
            raise RuntimeError(f"{SDIST} holds no tensorflow/lite/core/c/common.h under {PREFIX}")
        try:
            os.replace(out, inc)
        except OSError:  # another process finished first
            if not (inc / "tensorflow/lite/core/c/common.h").is_file():
                raise
    return inc


if __name__ == "__main__":
    sys.stdout.write(str(fetch()) + "\n")
