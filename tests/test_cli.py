"""The `tfcompress` command line: exit codes, one-line errors, convert round trip, inspect, bench."""

import os
import re
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from tfcompress.cli import main
from tfcompress.export import export_tflite, run_tflite

# Lines the TensorFlow / LiteRT native runtimes print on import, outside tfcompress's control.
RUNTIME_LOG = re.compile(r"^(WARNING: All log messages before absl|[IWEF]\d{4} |INFO: |"
                         r"To enable the following instructions)")


def _run_cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "tfcompress.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)
    ours = [ln for ln in proc.stderr.splitlines() if ln.strip() and not RUNTIME_LOG.match(ln)]
    return proc.returncode, ours, proc.stdout


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small trained .keras model, calibration .npy, a .tflite, a truncated copy, a text file."""
    from tfcompress.datasets import load_digits

    root = tmp_path_factory.mktemp("cli")
    (x, y), (x_test, _) = load_digits()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=6, batch_size=32, verbose=0)
    model.save(root / "model.keras")
    np.save(root / "calib.npy", x[:100])
    np.save(root / "calib16.npy", np.zeros((4, 16, 16, 1), "float32"))  # wrong input size
    tflite, _ = export_tflite(model)
    (root / "model.tflite").write_bytes(tflite)
    (root / "truncated.tflite").write_bytes(tflite[: len(tflite) // 2])
    (root / "notes.txt").write_text("hello, I am not a model\n")
    (root / "fake.keras").write_text("not a zip\n")
    return root, model, x_test


def test_inspect_truncated_file_in_a_real_process(files):
    root, _, _ = files
    code, err, out = _run_cli("inspect", str(root / "truncated.tflite"))
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith("tfcompress: error: ") and "truncated" in err[0]
    assert "Traceback" not in out


@pytest.mark.parametrize("argv, message", [
    (["inspect", "{root}/missing.tflite"], "no such file"),
    (["inspect", "{root}/notes.txt"], "not a TFLite model"),
    (["inspect", "{root}/truncated.tflite"], "truncated"),
    (["bench", "{root}/notes.txt"], "not a TFLite model"),
    (["bench", "{root}/model.tflite", "--threads", "0"], "positive integer"),
    (["bench", "{root}/model.tflite", "--runs", "many"], "positive integer"),
    (["inspect", "{root}/model.tflite", "--target", "tpu"], "invalid choice"),
    (["convert", "{root}/fake.keras", "-o", "{root}/o.tflite"], "not a .keras model"),
    (["convert", "{root}/notes.txt", "-o", "{root}/o.tflite"], "ending in .keras"),
    (["convert", "{root}/model.tflite", "-o", "{root}/o.tflite"], "ending in .keras"),
    (["convert", "{root}/model.keras", "-o", "{root}/o.tflite", "--quantize", "int4"],
     "invalid choice"),
    (["convert", "{root}/model.keras", "-o", "{root}/o.tflite", "--quantize", "int8"],
     "needs --calibration"),
    (["convert", "{root}/model.keras", "-o", "{root}/o.tflite", "--quantize", "int8",
      "--calibration", "{root}/notes.txt"], "not a readable .npy"),
    (["convert", "{root}/model.keras", "-o", "{root}/o.tflite", "--quantize", "int8",
      "--calibration", "{root}/calib16.npy"], "takes (8, 8, 1)"),
    (["convert", "{root}/model.keras", "-o", "{root}/no/dir/o.tflite"], "does not exist"),
    (["demo", "--out", "{root}/notes.txt"], "is a file"),
    (["demo", "--out", "/proc/tfcompress_demo/out"], "Cannot write to /proc"),
    (["demo", "--out", "{root}/notes.txt/sub"], "is a file, not a folder"),
    (["convert", "{root}/model.keras", "-o", "/proc/o.tflite"], "Cannot write to /proc"),
    (["convert", "{root}/model.keras"], "required: -o/--output"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_bad_input_exit_2_one_line(files, capsys, argv, message):
    root, _, _ = files
    code = main([a.format(root=root) for a in argv])
    captured = capsys.readouterr()
    err = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert code == 2, captured
    assert len(err) == 1 and err[0].startswith("tfcompress: error: ") and message in err[0], err
    assert not os.path.exists(root / "o.tflite")


def test_convert_round_trip_inspect_and_bench(files, capsys):
    root, model, x_test = files
    out = root / "int8.tflite"
    code = main(["convert", str(root / "model.keras"), "-o", str(out), "--quantize", "int8",
                 "--calibration", str(root / "calib.npy")])
    printed = capsys.readouterr().out
    assert code == 0 and out.exists()
    assert "**Quantization:** int8" in printed and "wrote" in printed
    agreement = np.mean(run_tflite(str(out), x_test).argmax(-1)
                        == model.predict(x_test, verbose=0).argmax(-1))
    assert agreement >= 0.95
    assert main(["inspect", str(out), "--target", "edgetpu"]) == 0
    printed = capsys.readouterr().out
    assert "| CONV_2D | 1 |" in printed and "edgetpu (export target)" in printed
    assert "Float ops:** none" in printed
    assert main(["bench", str(out), "--runs", "5", "--threads", "2"]) == 0
    assert re.search(r"median [0-9.]+ ms, p90 [0-9.]+ ms", capsys.readouterr().out)


def test_convert_for_gpu_defaults_to_float16(files, capsys):
    root, _, _ = files
    out = root / "gpu.tflite"
    assert main(["convert", str(root / "model.keras"), "-o", str(out), "--target", "gpu"]) == 0
    assert "**Quantization:** float16" in capsys.readouterr().out


def test_bench_runs_a_model_with_token_inputs(tmp_path, capsys):
    """Index inputs (Embedding) get in-range values, not random int32 that Gather rejects."""
    model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(50, 4),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(3)])
    path = tmp_path / "tokens.tflite"
    export_tflite(model, str(path))
    code = main(["bench", str(path), "--runs", "3", "--warmup", "1"])
    assert code == 0, capsys.readouterr().err
    assert "median" in capsys.readouterr().out


def test_quiet_stderr_hides_runtime_logging_but_not_python_warnings(capfd):
    from tfcompress.cli import _quiet_stderr

    with _quiet_stderr():
        os.write(2, b"I0000 runtime log line\n")  # what the C++ runtime writes to fd 2
        warnings.warn("tfcompress: a warning the user must see", UserWarning)
    err = capfd.readouterr().err
    assert "a warning the user must see" in err
    assert "runtime log line" not in err


def test_unexpected_failure_is_one_line_exit_2_and_debug_shows_traceback(files, capsys,
                                                                        monkeypatch):
    import tfcompress.cli as cli

    root, _, _ = files

    def broken(args):
        raise RuntimeError("boom from a bug")

    monkeypatch.setattr(cli, "_cmd_inspect", broken)
    monkeypatch.delenv("TFCOMPRESS_DEBUG", raising=False)
    assert main(["inspect", str(root / "model.tflite")]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("tfcompress: error: RuntimeError: boom"), err
    assert "TFCOMPRESS_DEBUG=1" in err[0]
    monkeypatch.setenv("TFCOMPRESS_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["inspect", str(root / "model.tflite")])


@pytest.mark.parametrize("delay", [0.1, 0.3, 0.5])
def test_sigterm_during_convert_cleans_up(delay, files, tmp_path):
    """SIGTERM mid-conversion: one line, exit 143, no output file, no temp file or folder; also
    when the handler runs inside a finalizer, which drops its exception (TensorFlow's `__del__`s
    run during the conversion: a CI run once exited 0 with the file written)."""
    import signal
    import time

    root, _, _ = files
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = tmp_path / "m.tflite"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": str(scratch)}
    proc = subprocess.Popen([sys.executable, "-m", "tfcompress.cli", "convert",
                             str(root / "model.keras"), "-o", str(out), "--quantize", "int8",
                             "--calibration", str(root / "calib.npy")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        if "converting to TFLite" in line:
            break
    time.sleep(delay)  # inside export_tflite (>= 1 s of work)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    ours = [ln for ln in stderr.splitlines() if ln.strip() and not RUNTIME_LOG.match(ln)]
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert ours == ["tfcompress: error: terminated by SIGTERM"], ours
    assert not out.exists() and list(tmp_path.iterdir()) == [scratch]
    assert list(scratch.iterdir()) == []


def test_bench_threads_upper_bound(files, capsys):
    root, _, _ = files
    assert main(["bench", str(root / "model.tflite"), "--threads", "100000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected 1 to 256 threads, got '100000'" in err[0], err


# -- custom layers: `convert --import MODULE` (a module name or a .py file), in real CLI processes --

_USER_DENSE = '''
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfc_cli_test")
class UserDense(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="ones", name="bias")

    def call(self, x):
        return ops.tanh(ops.matmul(x, self.kernel) + self.bias)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
'''

# Not registered: Keras finds it by the module name recorded in the file ('tfc_cli_scale').
_USER_SCALE = '''
import keras


class UserScale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
'''


def _cli_in(cwd, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tfcompress only
    proc = subprocess.run([sys.executable, "-m", "tfcompress.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300, cwd=cwd)
    ours = [ln for ln in proc.stderr.splitlines() if ln.strip() and not RUNTIME_LOG.match(ln)]
    return proc.returncode, ours, proc.stdout


def _import_file(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    """A model saved with two user layers: one in a module found by name, one in a file by path."""
    root = tmp_path_factory.mktemp("custom")
    (root / "tfc_cli_dense.py").write_text(_USER_DENSE)
    layers_dir = root / "elsewhere"
    layers_dir.mkdir()
    (layers_dir / "tfc_cli_scale.py").write_text(_USER_SCALE)
    dense, scale = _import_file(root / "tfc_cli_dense.py"), _import_file(layers_dir / "tfc_cli_scale.py")
    keras.utils.set_random_seed(4)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(3)(scale.UserScale(0.5)(dense.UserDense(8)(inputs))))
    model.save(root / "custom.keras")
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    # independent reference: the layers' math in numpy
    k1, b1, k2, b2 = model.get_weights()
    expected = (np.tanh(x @ k1 + b1) * 0.5) @ k2 + b2
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-5, atol=1e-5)
    return root, x, expected


def test_convert_imports_custom_layers_by_module_name_and_by_file(custom):
    root, x, expected = custom
    out = root / "custom.tflite"
    code, err, stdout = _cli_in(str(root), "convert", "custom.keras", "-o", str(out),
                                "--import", "tfc_cli_dense", "--import", "elsewhere/tfc_cli_scale.py")
    assert code == 0 and err == [], err
    assert "wrote" in stdout
    np.testing.assert_allclose(run_tflite(str(out), x), expected, rtol=1e-5, atol=1e-5)


def test_convert_without_import_names_the_missing_class_and_its_module(custom):
    root, _, _ = custom
    out = root / "missing.tflite"
    code, err, _ = _cli_in(str(root / "elsewhere"), "convert", str(root / "custom.keras"), "-o", str(out),
                           "--import", "tfc_cli_scale.py")  # the other module stays missing
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("tfcompress: error: cannot load ")
    assert "custom class 'UserDense' (module 'tfc_cli_dense') is unknown" in err[0] and "--import tfc_cli_dense" in err[0]
    assert not out.exists()


def test_convert_import_of_a_failing_module_shows_the_root_cause(custom):
    root, _, _ = custom
    (root / "tfc_cli_broken.py").write_text("import keras\n\nSCALE = 1 / 0\n")
    code, err, _ = _cli_in(str(root), "convert", "custom.keras", "-o", str(root / "b.tflite"),
                           "--import", "tfc_cli_broken")
    assert code == 2 and len(err) == 1, err
    assert err[0] == ("tfcompress: error: --import tfc_cli_broken: importing it failed: "
                      "ZeroDivisionError: division by zero (tfc_cli_broken.py:3)"), err


@pytest.mark.parametrize("spec, message", [
    ("tfc_cli_no_such_module", "no module named 'tfc_cli_no_such_module' on the Python path"),
    ("{root}/no_such_file.py", "no_such_file.py: no such file"),
    ("{root}/bad-name.py", "'bad-name' is not a valid module name"),
    ("not a module", "not a module name or a .py file"),
    ("{root}/tfc_cli_syntax.py", "SyntaxError: "),
    ("tfc_cli_imports_missing", "ModuleNotFoundError: No module named 'tfc_cli_nowhere'"),
])
def test_convert_import_errors_exit_2_one_line(custom, capsys, monkeypatch, spec, message):
    root, _, _ = custom
    (root / "bad-name.py").write_text("")
    (root / "tfc_cli_syntax.py").write_text("def broken(:\n")
    (root / "tfc_cli_imports_missing.py").write_text("import tfc_cli_nowhere\n")
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI adds the current folder
    code = main(["convert", str(root / "custom.keras"), "-o", str(root / "e.tflite"),
                 "--import", spec.format(root=root)])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert err[0].startswith("tfcompress: error: --import ")
    for name in ("tfc_cli_syntax", "tfc_cli_imports_missing", "tfc_cli_no_such_module"):
        sys.modules.pop(name, None)
