"""The sparse kernels built for aarch64 (GCC and Clang) and run under qemu-aarch64.

Every op, layout, pattern, dtype and edge shape of tflite_export/test/make_cases.py runs through the
real Init / Prepare / Invoke / Free of the C kernels in tflite_export/test/tfc_test_driver.c (a
fake TfLiteContext) and is compared with numpy references computed in Python; malformed weights,
options and shapes must be rejected in Prepare with the stated message. Two CPU models: cortex-a53
(ARMv8.0, no dotprod: the plain-NEON paths) and max (ARMv8.2+ with dotprod: the sdot paths).

Needs the Debian cross toolchain and user-mode emulation (.ci/run installs them):
    apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
        qemu-user clang-14 lld-14 llvm-14
"""

import importlib.util
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SRC_DIR = ROOT / "tflite_export"
APT = ("apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross "
       "qemu-user clang-14 lld-14 llvm-14")
CFLAGS = ["-O3", "-std=c11", "-ffp-contract=fast", "-Wall", "-Wno-psabi", "-static",
          "-I", str(SRC_DIR)]
COMPILERS = {
    "gcc": ["aarch64-linux-gnu-gcc"],
    "clang": ["clang-14", "--target=aarch64-linux-gnu", "-fuse-ld=lld"],
}
CPUS = {"cortex-a53": "no", "max": "yes"}  # CPU model -> dotprod reported by getauxval


def _need(tool):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} not found: the aarch64 tests need the Debian cross toolchain and qemu; run "
                    f"`apt-get update && {APT}` (.ci/run does this)", pytrace=False)


def _sources():
    """The library's C files (all of tflite_export/*.c) plus the driver."""
    return [str(p) for p in sorted(SRC_DIR.glob("*.c"))] + [str(SRC_DIR / "test" / "tfc_test_driver.c")]


def _make_cases_module():
    spec = importlib.util.spec_from_file_location("_tfc_make_cases", SRC_DIR / "test" / "make_cases.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{"gcc": binary, "clang": binary} (static aarch64, built in parallel), and the case file."""
    for tool in ("aarch64-linux-gnu-gcc", "clang-14", "ld.lld-14", "qemu-aarch64"):
        _need(tool)
    out = tmp_path_factory.mktemp("aarch64")
    procs = {}
    for name, cc in COMPILERS.items():
        exe = out / f"tfc_test_{name}"
        procs[name] = (exe, subprocess.Popen(cc + CFLAGS + _sources() + ["-lm", "-o", str(exe)],
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    cases = out / "cases.bin"
    names = _make_cases_module().write_cases(cases, seed=1234)
    bins = {}
    for name, (exe, p) in procs.items():
        log, _ = p.communicate(timeout=600)
        assert p.returncode == 0, f"{name} failed to build the aarch64 driver:\n{log}"
        bins[name] = exe
    return bins, cases, names


@pytest.mark.parametrize("cpu", list(CPUS))
@pytest.mark.parametrize("compiler", list(COMPILERS))
def test_kernels_match_numpy_under_qemu(built, compiler, cpu):
    bins, cases, names = built
    cmd = ["qemu-aarch64", "-cpu", cpu, str(bins[compiler]), str(cases)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = r.stdout.splitlines()
    failed = [ln for ln in lines if ln.startswith("FAIL")]
    assert not failed, "\n".join(failed[:20])
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert f"cpu: aarch64, dotprod {CPUS[cpu]}" in lines
    passed = [re.match(r"PASS (.*) max_err=\S+$", ln).group(1) for ln in lines if ln.startswith("PASS ")]
    assert passed == names  # every case ran, in order, none silently dropped
    assert lines[-1] == f"{len(names)} passed, 0 failed"


def test_case_generator_covers_the_matrix():
    """The case list spans every pattern x dtype x op and the edge shapes the brief asks for."""
    names = [n for n, _ in _make_cases_module().build_cases(np.random.default_rng(0))]
    for dtype in ("float32", "int8"):
        for pattern in ("unstructured", "2:4", "1x4/B4", "1x4/B1", "4x1"):
            ours = [n for n in names if n.startswith(f"{dtype}/{pattern}")]
            rows = {int(re.search(r"/rows(\d+)/", n).group(1)) for n in ours}
            assert {1, 2, 3, 5, 15, 16, 64, 70, 150} <= rows, (dtype, pattern, rows)
            assert any("/conv/" in n for n in ours) and any("/fc/" in n for n in ours)
            for act in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
                assert any(n.endswith("/" + act) for n in ours), (dtype, pattern, act)
    assert sum(n.startswith("malformed/") for n in names) >= 20
