"""The app build of the kernels (-DTFC_USE_TFLITE_HEADERS) against TensorFlow Lite's own C headers.

The headers come from PyPI (tflite_export/test/tflite_headers.py: the sdist of edgefirst-tflite
0.9.0 carries TFLite's C headers; sha256-pinned, cached). Checked here, for x86-64 and aarch64:
- every struct member offset, struct size and constant of tfc_tflite_abi.h's own declarations (the
  host build) equals the real headers' (a program printing them, built both ways; aarch64 under qemu);
- the whole library compiles against the real headers with -Werror (Clang: the NDK's compiler) into
  a shared library whose only TFLite symbol is TfLiteIntArrayCreate, which every TFLite runtime
  provides;
- the x86-64 app build, loaded into the real LiteRT interpreter, runs float32 and int8 sparse files
  and a fused int8 block with outputs equal to the host build's and to the dense file.
GCC 12 cannot compile these headers in C (`typedef enum TfLiteQuantizationType : int` without a
C++ guard needs C23); Clang accepts it, so the app build here uses Clang.
"""

import ctypes
import importlib.util
import pathlib
import shutil
import subprocess

import keras
import numpy as np
import pytest

from tfcompress.export import export_tflite, load_interpreter
from tfcompress.export.sparse import rewrite_tflite
from tfcompress.export.sparse_native import custom_ops_in

ROOT = pathlib.Path(__file__).resolve().parents[2]
SRC = ROOT / "tflite_export"
FLAGS = ["-O2", "-std=c11", "-ffp-contract=fast", "-Wall", "-Wno-psabi", "-Werror", "-I", str(SRC)]
CLANG = {"x86_64": ["clang-14"], "aarch64": ["clang-14", "--target=aarch64-linux-gnu", "-fuse-ld=lld"]}


@pytest.fixture(scope="module")
def headers():
    for tool in ("clang-14", "ld.lld-14", "qemu-aarch64"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: apt-get install -y clang-14 lld-14 qemu-user (.ci/run does this)",
                        pytrace=False)
    spec = importlib.util.spec_from_file_location("_tfc_tflite_headers", SRC / "test" / "tflite_headers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.fetch()


def _cc(args, arch):
    p = subprocess.run(CLANG[arch] + FLAGS + args, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_abi_declarations_equal_the_real_headers(headers, arch, tmp_path):
    out = {}
    for name, extra in (("ours", []), ("real", ["-DTFC_USE_TFLITE_HEADERS", "-I", str(headers)])):
        exe = tmp_path / f"layout_{name}"
        static = ["-static"] if arch == "aarch64" else []
        _cc(static + extra + [str(SRC / "test" / "tfc_abi_layout.c"), "-o", str(exe)], arch)
        run = ["qemu-aarch64", str(exe)] if arch == "aarch64" else [str(exe)]
        out[name] = subprocess.run(run, capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out["real"]) > 80
    diff = [(a, b) for a, b in zip(out["ours"], out["real"]) if a != b]
    assert out["ours"] == out["real"], diff


def _shared_library(headers, arch, path, extra=()):
    _cc(["-shared", "-fPIC", "-DTFC_USE_TFLITE_HEADERS", "-I", str(headers),
         *map(str, sorted(SRC.glob("*.c"))), *extra, "-lm", "-pthread", "-o", str(path)], arch)
    return path


def test_aarch64_app_library_builds_against_the_real_headers(headers, tmp_path):
    lib = _shared_library(headers, "aarch64", tmp_path / "libtfc_sparse_ops.so")
    assert lib.read_bytes()[18:20] == (183).to_bytes(2, "little")  # ELF e_machine EM_AARCH64
    nm = subprocess.run(["llvm-nm-14", "-D", str(lib)], capture_output=True, text=True, check=True).stdout
    undefined = {ln.split()[-1] for ln in nm.splitlines() if ln.split()[-2:-1] == ["U"]}
    defined = {ln.split()[-1] for ln in nm.splitlines() if ln.split()[-2:-1] == ["T"]}
    assert {u for u in undefined if u.startswith("TfLite")} == {"TfLiteIntArrayCreate"}
    assert {"TfcRegisterSparseFullyConnected", "TfcRegisterSparseConv1x1", "TfcRegisterSparseInvertedResidual",
            "TfcSparseDelegateCreate"} <= defined


def _pruned_files(rng):
    """(tflite with TFC custom ops, dense twin, input) for float32 FC, int8 1x1 conv and a fused block."""
    files = []
    mlp = keras.Sequential([keras.Input((64,)), keras.layers.Dense(48, activation="relu"), keras.layers.Dense(10)])
    inp = keras.Input((6, 5, 24))
    h = keras.layers.Conv2D(40, 1, activation="relu6")(inp)
    conv = keras.Model(inp, keras.layers.Conv2D(24, 1)(h))
    inp = keras.Input((9, 7, 16))
    h = keras.layers.Conv2D(48, 1, activation="relu6")(inp)
    h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(h)
    block = keras.Model(inp, keras.layers.Add()([inp, keras.layers.Conv2D(16, 1)(h)]))
    for model in (mlp, conv, block):
        for layer in model.layers:
            if type(layer) in (keras.layers.Dense, keras.layers.Conv2D):
                k = layer.kernel.numpy()
                flat = k.reshape(-1, k.shape[-1])
                mask = np.repeat(rng.random((flat.shape[0] // 4, flat.shape[1])) < 0.8, 4, axis=0)
                layer.kernel.assign(np.where(mask, 0.0, flat).reshape(k.shape).astype("float32"))
                layer.bias.assign(rng.standard_normal(layer.bias.shape).astype("float32") * 0.1)
    x = rng.standard_normal((9, 64)).astype("float32")
    dense, _ = export_tflite(mlp)
    files.append((rewrite_tflite(dense, "custom"), dense, x))  # what export_tflite(sparse_kernels=) does
    for model in (conv, block):
        calib = rng.standard_normal((16,) + model.input_shape[1:]).astype("float32")
        dense, _ = export_tflite(model, quantize="int8", representative_data=calib)
        xq = rng.integers(-128, 128, (1,) + model.input_shape[1:]).astype(np.int8)
        files.append((rewrite_tflite(dense, "custom"), dense, xq))
    return files


def _invoke(interp, x):
    d = interp.get_input_details()[0]
    interp.resize_tensor_input(d["index"], x.shape)
    interp.allocate_tensors()
    interp.set_tensor(d["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def test_x86_app_library_runs_in_litert(headers, tmp_path, rng):
    from ai_edge_litert.interpreter import Interpreter, load_delegate

    lib = _shared_library(headers, "x86_64", tmp_path / "libtfc_app.so",
                          extra=[SRC / "test" / "tfc_intarray_create.c"])
    assert ctypes.CDLL(str(lib)).TfcAbiVersion() == 1
    files = _pruned_files(rng)
    assert [custom_ops_in(f[0]) for f in files] == [["TFC_SPARSE_FC"], ["TFC_SPARSE_CONV_1X1"],
                                                    ["TFC_SPARSE_INVERTED_RESIDUAL"]]
    for sparse, dense, x in files:
        app = Interpreter(model_content=sparse, experimental_delegates=[load_delegate(str(lib))], num_threads=2)
        got = _invoke(app, x)
        host = _invoke(load_interpreter(sparse, num_threads=2), x)
        ref = _invoke(load_interpreter(dense), x)
        if got.dtype == np.float32:  # Clang here, GCC for the host build: FMA contraction may differ
            np.testing.assert_allclose(got, host, rtol=1e-5, atol=1e-6 * np.abs(host).max())
            assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
        else:  # integer arithmetic: equal to the host build; within one step of TFLite's kernels
            np.testing.assert_array_equal(got, host)
            assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
