"""The tfcompress thread pool (tflite_export/tfc_threads.c) and the sparse kernels on threads.

The pool is tested by a standalone C program (tests/native/c/test_tfc_threads.c), built here
with the system compiler, also under ThreadSanitizer and with the condition-variable wait path
(the one iOS / macOS use) forced on Linux.
"""

import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SRC = os.path.join(ROOT, "tflite_export")
CC = os.environ.get("CC", "cc")


def _build(tmp_path, name, *flags):
    exe = str(tmp_path / name)
    cmd = [CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", f"-I{SRC}", *flags,
           os.path.join(HERE, "c", "test_tfc_threads.c"), os.path.join(SRC, "tfc_threads.c"), "-o", exe]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


def _tsan_works(tmp_path):
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    r = subprocess.run([CC, "-fsanitize=thread", str(probe), "-o", str(tmp_path / "probe")],
                       capture_output=True)
    return r.returncode == 0 and subprocess.run([str(tmp_path / "probe")]).returncode == 0


@pytest.mark.parametrize("variant", ["futex", "condvar"])
def test_pool_c_unit(tmp_path, variant):
    """Every task runs exactly once with the right result, over 20k+ jobs of 1..64 tasks; the
    workers take part; max_threads bounds the worker index; two pools and two callers on one
    pool at once; the last release joins every tfc-pool-* thread (counted in /proc)."""
    flags = ["-O2"] + (["-DTFC_POOL_NO_FUTEX"] if variant == "condvar" else [])
    exe = _build(tmp_path, f"t_{variant}", *flags)
    r = subprocess.run([exe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stderr


@pytest.mark.parametrize("variant", ["futex", "condvar"])
def test_pool_c_unit_thread_sanitizer(tmp_path, variant):
    """The same program under ThreadSanitizer: no data race in the pool."""
    if shutil.which(CC) is None or not _tsan_works(tmp_path):
        pytest.skip("this compiler has no working -fsanitize=thread")
    flags = ["-O1", "-g", "-fsanitize=thread"] + (["-DTFC_POOL_NO_FUTEX"] if variant == "condvar" else [])
    exe = _build(tmp_path, f"tsan_{variant}", *flags)
    r = subprocess.run([exe], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "TSAN_OPTIONS": "halt_on_error=1"})
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stderr[-3000:]
