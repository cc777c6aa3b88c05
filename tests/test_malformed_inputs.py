"""Malformed inputs: every bad input to the CLI and to tfcompress.export is a clean error.

The CLI in real processes: corrupted .tflite files (seeded byte flips) through `inspect` and
`bench`; NaN / inf / 1e30 / complex calibration data, an unwritable `-o`, `--threads 100000`:
exit 0 or 2, one `tfcompress: error:` line, no signal, no traceback, within seconds. Exports
killed with SIGKILL at random moments leave no partial file and, after the next export, no temp
file or folder. Every public export function rejects bad arguments up front, naming them.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import pytest

from tfcompress.export import (TargetReport, VerifyReport, benchmark_tflite, export_tflite,
                               inspect_tflite, load_interpreter, run_tflite, verify)
from tfcompress.export import converter as _converter
from tfcompress.pruning import ConstantSparsity, PolynomialDecay

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Lines the TensorFlow / LiteRT native runtimes print on import, outside tfcompress's control.
RUNTIME_LOG = ("WARNING: All log messages before absl", "INFO: ", "To enable the following")


def _env(**extra):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    env.pop("TFCOMPRESS_DEBUG", None)
    return env


def _cli(*args, timeout=120):
    """Runs `python -m tfcompress.cli ARGS` for real: (exit code, our stderr lines, stdout, s)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tfcompress.cli", *map(str, args)],
                          capture_output=True, text=True, env=_env(), timeout=timeout)
    took = time.perf_counter() - start
    ours = [ln for ln in proc.stderr.splitlines()
            if ln.strip() and not ln.startswith(RUNTIME_LOG)
            and not (len(ln) > 5 and ln[0] in "IWEF" and ln[1:5].isdigit())]
    return proc.returncode, ours, proc.stdout, took


def _assert_one_line_error(code, err, out, needle):
    assert code == 2, (code, err, out[-500:])
    assert len(err) == 1 and err[0].startswith("tfcompress: error: "), err
    assert needle in err[0], err
    assert "Traceback" not in out and "Traceback" not in " ".join(err)


def _cnn():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small .keras CNN, good and bad calibration .npy files, float32 and int8 .tflite files."""
    root = tmp_path_factory.mktemp("malformed")
    model = _cnn()
    model.save(root / "model.keras")
    x = np.random.default_rng(0).uniform(0, 1, (48, 8, 8, 1)).astype("float32")
    np.save(root / "calib.npy", x)
    with_inf = x.copy()
    with_inf[5, 3, 3, 0] = np.inf
    np.save(root / "inf.npy", with_inf)
    np.save(root / "nan.npy", np.full_like(x, np.nan))
    np.save(root / "huge.npy", x * 1e30)
    np.save(root / "complex.npy", x.astype(np.complex64))
    float_bytes, _ = export_tflite(model, root / "float32.tflite")
    int8_bytes, _ = export_tflite(model, root / "int8.tflite", quantize="int8",
                                  representative_data=x)
    return root, model, x, float_bytes, int8_bytes


# ---------------------------------------------------------------- CLI, in real processes


@pytest.mark.parametrize("name, needle", [("inf", "inf"), ("nan", "NaN"), ("huge", "1e+30"),
                                          ("complex", "complex")])
def test_cli_bad_calibration_exit_2_one_line_fast(files, name, needle):
    root = files[0]
    out = root / f"out_{name}.tflite"
    code, err, stdout, took = _cli("convert", root / "model.keras", "-o", out, "--quantize", "int8",
                                   "--calibration", root / f"{name}.npy")
    _assert_one_line_error(code, err, stdout, needle)
    assert took < 60, took  # rejected before TensorFlow is loaded: ~1 s on an idle machine
    assert not out.exists()


@pytest.mark.parametrize("argv, needle", [
    (["convert", "{root}/model.keras", "-o", "/proc/tfcompress_test.tflite"], "Cannot write"),
    (["convert", "{root}/model.keras", "-o", "{root}"], "is a directory"),
    (["bench", "{root}/float32.tflite", "--threads", "100000"], "1 to 256"),
    (["bench", "{root}/float32.tflite", "--threads", "257"], "1 to 256"),
    (["convert", "{root}/model.keras", "-o", "{root}/o.tflite", "--calibration",
      "{root}/calib.npy"], "only used for full int8"),
])
def test_cli_bad_paths_and_flags_exit_2_one_line_fast(files, argv, needle):
    root = files[0]
    code, err, out, took = _cli(*[a.format(root=root) for a in argv])
    _assert_one_line_error(code, err, out, needle)
    assert took < 60, took
    assert not (root / "o.tflite").exists()


def test_cli_bench_surfaces_deferred_prepare_error(tmp_path):
    """A reshape that only fails when run: `bench` says so in one line instead of exit 1."""
    path = tmp_path / "deferred.tflite"
    path.write_bytes(_deferred_error_model())
    code, err, out, _ = _cli("bench", path, "--runs", "2")
    _assert_one_line_error(code, err, out, "cannot run this model")
    assert "RESHAPE" in err[0]


def _corrupt(data, rng):
    data = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
    return bytes(data)


def test_byte_flips_in_real_processes(files, tmp_path):
    """Seeded corruptions of two exports through the real command: exit 0 or 2, one line."""
    _, _, _, float_bytes, int8_bytes = files
    rng = np.random.default_rng(1234)
    codes = []
    for k in range(6):
        path = tmp_path / f"flip_{k}.tflite"
        path.write_bytes(_corrupt(float_bytes if k % 2 else int8_bytes, rng))
        for argv in (["inspect", path], ["bench", path, "--runs", "2", "--warmup", "1"]):
            code, err, out, _ = _cli(*argv)
            codes.append(code)
            assert code in (0, 2), (argv, code, err)  # a signal would be negative
            assert "Traceback" not in out and not any("Traceback" in ln for ln in err)
            if code == 2:
                assert len(err) == 1 and err[0].startswith("tfcompress: error: "), err
            else:
                assert not err, err
    assert 2 in codes  # the corruptions are not all harmless


@pytest.mark.slow
def test_byte_flip_script():
    """tests/malformed_flip.py: seeded corruptions of five exports through inspect and bench.

    CI runs TFCOMPRESS_FLIP_FILES (default 48) files; the full loop is
    `python tests/malformed_flip.py --files 240` (figures in the report of issue 14).
    """
    n = int(os.environ.get("TFCOMPRESS_FLIP_FILES", "48"))
    proc = subprocess.run([sys.executable, os.path.join(HERE, "malformed_flip.py"), "--files",
                           str(n), "--seed", "7"], capture_output=True, text=True, env=_env(),
                          timeout=1800)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-2000:])
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert result["bad"] == []
    assert sum(result["exit_counts"].values()) == 2 * n
    assert set(result["exit_counts"]) <= {f"{c} exit {e}" for c in ("inspect", "bench")
                                          for e in (0, 2)}


# ---------------------------------------------------------------- kills and temp files

_KILL_WORKER = r"""
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
t0 = time.perf_counter()
import keras, numpy as np
from tfcompress.export import export_tflite
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3),
                          keras.layers.Flatten(), keras.layers.Dense(10)])
x = np.random.default_rng(0).uniform(0, 1, (32, 8, 8, 1)).astype("float32")
print("READY", flush=True)
while True:
    export_tflite(model, sys.argv[1], quantize="int8", representative_data=x)
    print("WROTE", flush=True)
"""


def test_sigkill_during_export_leaves_nothing_behind(tmp_path, monkeypatch):
    """Ten SIGKILLs at random moments of int8 exports: never a partial file (at most the killed
    export's hidden temp file beside it); the next export removes every temp file and folder the
    killed ones left (theirs by host and dead pid)."""
    scratch, out_dir = tmp_path / "tmp", tmp_path / "out"
    scratch.mkdir()
    out_dir.mkdir()
    out = out_dir / "model.tflite"
    rng = np.random.default_rng(0)
    left_behind = 0
    for _ in range(10):
        worker = subprocess.Popen([sys.executable, "-c", _KILL_WORKER, str(out)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  env=_env(TMPDIR=str(scratch)))
        assert worker.stdout.readline().strip() == "READY"
        time.sleep(float(rng.uniform(0.0, 2.5)))  # one export takes ~1-2 s here
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=60)
        assert worker.returncode == -signal.SIGKILL
        if out.exists():  # whatever is there is a whole model (checked in a child process)
            assert inspect_tflite(str(out)).is_full_integer
        # no partial file: at most the killed export's own hidden temp file (killed between its
        # write and the rename; SIGKILL gives no chance to remove it), which the next export removes
        names = sorted(p.name for p in out_dir.iterdir())
        temps = [n for n in names if n.startswith(f".tfcompress-write-{_converter._host_tag()}-{worker.pid}-")]
        assert [n for n in names if n not in temps] in ([], ["model.tflite"]), names
        left_behind += len(list(scratch.iterdir())) + len(temps)
    # The next export (here, in this process) removes what the killed ones left.
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    model = _cnn()
    export_tflite(model, out)
    assert list(scratch.iterdir()) == [] and [p.name for p in out_dir.iterdir()] == ["model.tflite"]
    print(f"temp entries left by the 10 killed exports before cleanup: {left_behind}")


def test_stale_cleanup_only_touches_dead_processes_of_this_host(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead = int(finished.stdout)
    host = _converter._host_tag()
    names = {
        f"tfcompress-export-{host}-{dead}-abc": "dead",
        f".tfcompress-write-{host}-{dead}-abc.tmp": "dead",
        f"tfcompress-export-{host}-1-abc": "alive",  # pid 1 always runs
        f"tfcompress-export-otherhost-{dead}-abc": "other host",
        "tfcompress-export-notours": "not ours",
        "user_file.tmp": "not ours",
    }
    for name in names:
        if name.endswith(".tmp"):
            (tmp_path / name).write_bytes(b"x")
        else:
            (tmp_path / name).mkdir()
            (tmp_path / name / "saved_model.pb").write_bytes(b"x")
    _converter._remove_stale([str(tmp_path)])
    kept = {p.name for p in tmp_path.iterdir()}
    assert kept == {n for n, why in names.items() if why != "dead"}


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_exported_file_permissions_follow_umask(tmp_path, umask, mode):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    old = os.umask(umask)
    try:
        export_tflite(model, tmp_path / "m.tflite")
    finally:
        os.umask(old)
    assert (tmp_path / "m.tflite").stat().st_mode & 0o777 == mode


def test_failed_export_leaves_no_file_and_no_temp(files, tmp_path):
    _, model, x, _, _ = files
    out = tmp_path / "m.tflite"
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        export_tflite(model, out, quantize="int8", representative_data=bad)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- calibration data and results


@pytest.mark.parametrize("make, match", [
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 7, np.inf, x), r"contains inf"),
    (lambda x: np.full_like(x, np.nan), r"contains NaN"),
    (lambda x: x * 1e30, r"\|x\| = 1e\+30.*scaled"),
    (lambda x: x.astype(np.complex128), r"complex.*real"),
    (lambda x: x.astype(str), r"must be numeric.*<U"),
    (lambda x: x[:0], r"empty"),
    (lambda x: x[:, :4], r"shape \(4, 8, 1\).*takes \(8, 8, 1\)"),
    (lambda x: np.stack([x, x], -1), r"rank|shape"),
])
def test_bad_calibration_data_named_before_conversion(files, make, match):
    _, model, x, _, _ = files
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        export_tflite(model, quantize="int8", representative_data=make(x))
    assert time.perf_counter() - start < 20  # before the converter runs


def test_integer_input_needs_integral_calibration():
    model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(20, 4),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="non-integer values.*int32"):
        export_tflite(model, quantize="int8",
                      representative_data=np.full((8, 6), 2.5, "float32"))


def test_result_check_refuses_a_float_file_asked_as_full_integer(files, monkeypatch):
    """With the data checks switched off, all-NaN calibration (which made the converter emit
    float I/O and float ops with exit 0) is refused after conversion, naming the cause."""
    _, model, x, _, _ = files
    monkeypatch.setattr(_converter, "check_representative_samples", lambda *a, **k: None)
    with pytest.raises(ValueError, match=r"came out not full-integer \((input|output|float ops)"):
        export_tflite(model, quantize="int8", representative_data=np.full_like(x, np.nan))


def test_result_check_refuses_int8_outputs_that_disagree_with_keras(digits, tmp_path):
    """One outlier pixel (1e3, inside the accepted range) stretches the input scale so far that
    typical inputs quantize to ~0: the file is refused (reference: the Keras model's own
    predictions on the same calibration samples), and nothing is written."""
    (x, y), _ = digits
    model = _cnn()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    calibration = x[:100].copy()
    calibration[0, 4, 4, 0] = 1e3
    with pytest.raises(ValueError, match=r"agrees with the Keras model on only \d+% of the 100"):
        export_tflite(model, tmp_path / "m.tflite", quantize="int8",
                      representative_data=calibration)
    assert list(tmp_path.iterdir()) == []
    # The same model with clean calibration data exports fine (the check is not too strict).
    export_tflite(model, tmp_path / "m.tflite", quantize="int8", representative_data=x[:100])


# ---------------------------------------------------------------- runtime and analyzer


def _deferred_error_model():
    """A model LiteRT allocates fine but whose RESHAPE fails at the first invoke."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32)])
    def f(x):
        return tf.reshape(x, tf.stack([tf.shape(x)[0] * 3, 5]))

    return tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()],
                                                           f).convert()


def test_load_interpreter_surfaces_deferred_errors_at_load():
    data = _deferred_error_model()
    from ai_edge_litert import interpreter as litert

    plain = litert.Interpreter(model_content=data)
    plain.allocate_tensors()  # LiteRT itself only fails later, in invoke()
    with pytest.raises(RuntimeError):
        plain.invoke()
    with pytest.raises(ValueError, match=r"cannot run this model.*RESHAPE"):
        load_interpreter(data)
    with pytest.raises(ValueError, match=r"cannot run this model"):
        benchmark_tflite(data, runs=1)


def test_inspect_turns_a_runtime_crash_into_an_error(monkeypatch, files, tmp_path):
    """A child that dies by a signal (as the GPU analyzer did on a 2-byte change of a demo file)
    is a ValueError naming the signal, and the caller lives on. The crash is a real SIGSEGV of
    the real child, injected with a sitecustomize module on its PYTHONPATH."""
    (tmp_path / "sitecustomize.py").write_text(
        "import os, signal\n"
        "if os.environ.get('TFCOMPRESS_SANDBOX_CHILD'):\n"
        "    os.kill(os.getpid(), signal.SIGSEGV)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with pytest.raises(ValueError, match=r"LiteRT crashed \(SIGSEGV\)"):
        inspect_tflite(files[3])
    root = files[0]
    proc = subprocess.run([sys.executable, "-m", "tfcompress.cli", "bench",
                           str(root / "float32.tflite")], capture_output=True, text=True,
                          env={**_env(), "PYTHONPATH": os.pathsep.join([ROOT, str(tmp_path)])},
                          timeout=120)
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("tfcompress: error:")]
    assert proc.returncode == 2 and len(err) == 1 and "LiteRT crashed (SIGSEGV)" in err[0], \
        proc.stderr


# ---------------------------------------------------------------- public API arguments


@pytest.mark.parametrize("call, error, match", [
    (lambda m, b: export_tflite(None), TypeError, r"model must be a keras.Model, got NoneType"),
    (lambda m, b: export_tflite(m, quantize="int4"), ValueError, r"quantize must be one of"),
    (lambda m, b: export_tflite(m, target="tpu"), ValueError, r"target must be one of.*'tpu'"),
    (lambda m, b: export_tflite(m, calibration_samples=0), ValueError,
     r"calibration_samples must be a positive integer, got 0"),
    (lambda m, b: export_tflite(m, calibration_samples=-5), ValueError, r"got -5"),
    (lambda m, b: export_tflite(m, sparse_kernels=3), TypeError, r"sparse_kernels.*'auto'.*got 3"),
    (lambda m, b: export_tflite(m, quantize="float16", representative_data=np.zeros((2, 8))),
     ValueError, r"representative_data is only used by quantize='int8'"),
    (lambda m, b: export_tflite(m, 42), TypeError, r"path must be None or a file path"),
    (lambda m, b: export_tflite(m, "/proc/x.tflite"), PermissionError, r"Cannot write to /proc"),
    (lambda m, b: export_tflite(m, input_type="int16"), ValueError, r"input_type must be"),
    (lambda m, b: export_tflite(m, quantize="int8", representative_data=42), TypeError,
     r"representative_data must be"),
    (lambda m, b: inspect_tflite(None), TypeError, r"Expected TFLite model bytes or a path"),
    (lambda m, b: inspect_tflite(b"garbage!garbage"), ValueError, r"not a TFLite model"),
    (lambda m, b: inspect_tflite(b, target="npu"), ValueError, r"target must be one of"),
    (lambda m, b: inspect_tflite(b, quantize=8), TypeError, r"quantize must be None or a string"),
    (lambda m, b: load_interpreter(b, num_threads=0), ValueError,
     r"num_threads must be an integer in \[1, 256\], got 0"),
    (lambda m, b: load_interpreter(b, num_threads=100000), ValueError, r"got 100000"),
    (lambda m, b: load_interpreter(b, num_threads="2"), TypeError, r"num_threads.*got '2'"),
    (lambda m, b: load_interpreter(b, num_threads=True), TypeError, r"got True"),
    (lambda m, b: run_tflite(b, None), TypeError, r"x must be an input array"),
    (lambda m, b: run_tflite(b, np.zeros((0, 8, 8, 1))), ValueError, r"no samples"),
    (lambda m, b: run_tflite(b, np.zeros((2, 8, 8, 1), complex)), TypeError, r"complex"),
    (lambda m, b: run_tflite(b, np.zeros((2, 8, 8, 1)), batch_size=-1), ValueError,
     r"batch_size must be None or an integer >= 1, got -1"),
    (lambda m, b: run_tflite(b, np.zeros((2, 4, 8, 1))), ValueError, r"expects shape"),
    (lambda m, b: benchmark_tflite(b, runs=0), ValueError, r"runs must be an integer >= 1"),
    (lambda m, b: benchmark_tflite(b, warmup=-1), ValueError, r"warmup must be"),
    (lambda m, b: benchmark_tflite(b, batch_size=0), ValueError, r"batch_size must be"),
    (lambda m, b: benchmark_tflite(b, num_threads=100000), ValueError, r"num_threads.*256"),
    (lambda m, b: verify(None, b, np.zeros((2, 8, 8, 1))), TypeError,
     r"model must be the keras.Model.*got NoneType"),
    (lambda m, b: verify(m, b, np.zeros((0, 8, 8, 1))), ValueError, r"data has no samples"),
    (lambda m, b: verify(m, b, np.zeros((2, 8, 8, 1)), batch_size=-1), ValueError,
     r"batch_size must be a positive integer, got -1"),
    (lambda m, b: verify(m, b, None), TypeError, r"data must be an input array"),
    (lambda m, b: verify(m, 3.5, np.zeros((2, 8, 8, 1))), TypeError, r"tflite must be"),
    (lambda m, b: verify(m, b, np.full((2, 8, 8, 1), np.nan)), ValueError, r"NaN or inf"),
    (lambda m, b: PolynomialDecay(power=float("nan")), ValueError,
     r"power must be a positive finite number.*nan"),
    (lambda m, b: PolynomialDecay(power=float("inf")), ValueError, r"got inf"),
    (lambda m, b: PolynomialDecay(final_sparsity=float("nan")), ValueError,
     r"final_sparsity must be in \[0, 1\), got nan"),
    (lambda m, b: ConstantSparsity(float("nan")), ValueError, r"target_sparsity.*got nan"),
    (lambda m, b: TargetReport("tpu", True), ValueError, r"target must be one of.*'tpu'"),
    (lambda m, b: TargetReport("cpu", "yes"), ValueError, r"compatible must be True, False"),
    (lambda m, b: VerifyReport(0.1, 0.01, 1.5, 10, 1.0), ValueError,
     r"top1_agreement must be None or a fraction in \[0, 1\], got 1.5"),
    (lambda m, b: VerifyReport(0.1, 0.01, 0.9, 0, 1.0), ValueError,
     r"num_samples must be a positive integer, got 0"),
    (lambda m, b: VerifyReport(None, 0.01, 0.9, 3, 1.0), ValueError, r"max_abs_error.*None"),
])
def test_public_functions_reject_bad_arguments_naming_them(files, call, error, match):
    _, model, _, float_bytes, _ = files
    with pytest.raises(error, match=match):
        call(model, float_bytes)
