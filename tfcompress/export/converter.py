"""export_tflite: Keras 3 model -> TFLite bytes (+ file, written atomically) and an ExportReport."""

import collections.abc
import contextlib
import inspect
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import warnings

import numpy as np

from tfcompress.export import _app_io
from tfcompress.export import prepare as _prepare
from tfcompress.export.analysis import TARGETS, report_for_bytes

QUANTIZE_MODES = (None, "float32", "dynamic", "float16", "int8")
IO_TYPES = (None, "float32", "int8", "uint8")
# Largest |value| accepted in calibration data for float inputs: int8 quantization of a range
# wider than this cannot keep the resolution typical inputs need (1e30 gave 0-10 % agreement).
CALIBRATION_MAX_ABS = 1e6
# An int8 export whose outputs agree with Keras on fewer calibration samples than this fraction
# is an error (a broken calibration, not quantization noise).
MIN_CALIBRATION_AGREEMENT = 0.5


def _io_type(value, name):
    if value is None:
        return None
    try:
        text = np.dtype(getattr(value, "as_numpy_dtype", value)).name
    except TypeError:
        text = str(value)
    if text not in IO_TYPES:
        raise ValueError(f"{name} must be None, 'float32', 'int8' or 'uint8', got {value!r}.")
    return text


def _model_inputs(model):
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    return list(inputs) if inputs else None


def _host_tag():
    return re.sub(r"[^A-Za-z0-9]", "-", socket.gethostname())[:32] or "host"


def _temp_prefix(kind):
    """Prefix of this process's temp files and folders: tool, kind, host, pid.

    The pid lets a later run remove what a killed run left (see `_remove_stale`).
    """
    return f"tfcompress-{kind}-{_host_tag()}-{os.getpid()}-"


_STALE = re.compile(r"tfcompress-(?:export|write|probe)-(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)-")


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process (or cannot tell): leave its files alone
    return True


def _remove_stale(folders):
    """Removes temp files/folders of tfcompress processes on this host that no longer run.

    A process killed by SIGKILL (or a power cut) cannot clean up after itself; the next export
    does it. Only names made by `_temp_prefix` with this host's name and a dead pid are touched.
    """
    host = _host_tag()
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            m = _STALE.match(name.lstrip("."))
            entry = os.path.join(folder, name)
            if not m or m.group("host") != host or int(m.group("pid")) == os.getpid():
                continue
            if _pid_alive(int(m.group("pid"))):
                continue
            if os.path.isdir(entry) and not os.path.islink(entry):
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry)


def _check_path(path):
    """Checks an output path before any work: a file name in an existing, writable folder."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be None or a file path (str or os.PathLike), got "
                        f"{type(path).__name__}.")
    path = os.fspath(path)
    if not path:
        raise ValueError("path is empty; give a file path like 'model.tflite' or None.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory; give a file path like {path}/model.tflite.")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"Directory {parent} does not exist; create it before exporting.")
    try:  # the only reliable test (root, read-only mounts, /proc): create a file there
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{_temp_prefix('probe')}",
                                     suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise PermissionError(f"Cannot write to {parent} ({e.strerror or e}); choose an output "
                              "path in a folder you can write to.") from None
    return path


@contextlib.contextmanager
def _private_tempdir():
    """A temp folder named for this process, also made `tempfile`'s default for the duration.

    TensorFlow writes its own temp files while exporting (autograph's generated modules, the
    converter's scratch files), named without any owner and only removed at a normal exit. With
    `tempfile.tempdir` pointing into this folder they all land here, and the folder goes on every
    exit path: `finally` for exceptions and signals turned into exceptions, `_remove_stale` in a
    later export for a process killed outright.
    """
    work = tempfile.mkdtemp(prefix=_temp_prefix("export"))
    saved = tempfile.tempdir
    tempfile.tempdir = work
    try:
        yield work
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(work, ignore_errors=True)


def _umask():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path, data):
    """Writes to a temp file in the same directory, then os.replace: never a partial file.

    The file gets the permissions a normal `open(path, "wb")` would (0666 less the umask), not
    mkstemp's 0600.
    """
    parent = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{_temp_prefix('write')}", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _conversion_error_detail(error):
    """The useful part of a converter error: unsupported TF ops if any, else its first lines."""
    text = str(error)
    select = [ln.split("TF Select ops:", 1)[1].strip() for ln in text.splitlines()
              if "TF Select ops:" in ln]
    if select:
        return (f"TensorFlow ops with no TFLite builtin kernel: {select[0]}. Rewrite the layer "
                "using ops TFLite supports (see the TFLite op list).")
    if "mismatched quantized axes" in text:
        return ("a weight fake-quantized per channel feeds an op whose weights the converter transposes "
                "(a matmul lowered to FULLY_CONNECTED, Conv1D), and TFLite cannot move the per-channel "
                "axis ('tfl.transpose' op has mismatched quantized axes). Quantize that weight per tensor: "
                "axis None in the layer's tfcompress_quantizable_weights() or its QuantizeConfig.")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[:3]) if lines else type(error).__name__


@contextlib.contextmanager
def _quiet():
    """Silences the converter's prints, Python-level and C++ (fd 1), e.g. "fully_quantize: 0"."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1 (embedded interpreters): only the Python-level redirect
        saved = None
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        if saved is not None:
            os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            if saved is not None:
                os.dup2(saved, 1)
                os.close(saved)


def _iter_representative(data):
    """Returns an iterator over the elements of representative data, or raises TypeError."""
    import tensorflow as tf

    if isinstance(data, np.ndarray):
        return iter([data])
    if isinstance(data, tf.data.Dataset):
        return data.as_numpy_iterator()
    if inspect.isgenerator(data) or isinstance(data, collections.abc.Iterator):
        return data
    if callable(data) and not isinstance(data, type):
        produced = data()
        if isinstance(produced, collections.abc.Iterable) and not isinstance(produced, (str, bytes)):
            return iter(produced)
        raise TypeError(
            "representative_data was a callable that returned "
            f"{type(produced).__name__}; it must return a generator of input arrays."
        )
    raise TypeError(
        "representative_data must be a numpy array of inputs (n, ...), a tf.data.Dataset, or a "
        f"generator (or a function returning one) yielding input arrays; got "
        f"{type(data).__module__}.{type(data).__name__}."
    )


def _real_array(x):
    """The array of one representative element: real numbers only, floats as float32."""
    try:
        a = np.asarray(x)
    except Exception as e:  # ragged lists and the like
        raise ValueError(f"representative_data holds an element numpy cannot make an array of "
                         f"({type(e).__name__}: {e}); give arrays of the model's input shape.") from None
    if a.dtype.kind == "c":
        raise ValueError(f"representative_data is complex ({a.dtype}); the model takes real "
                         "inputs: pass the real-valued data (e.g. np.real(x) or np.abs(x), as the "
                         "model was trained on).")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"representative_data must be numeric, got dtype {a.dtype}; convert it "
                         "to the model's input dtype (e.g. x.astype('float32')).")
    return a.astype(np.float32) if a.dtype.kind == "f" else a


def check_representative_samples(samples, inputs=None):
    """Checks calibration samples before conversion; raises ValueError naming problem and fix.

    Each sample (a list with one array of batch 1 per model input) must be finite, fit the
    model input's shape and dtype (integer inputs such as token ids need integral values), and
    float inputs must stay within +-`CALIBRATION_MAX_ABS`.

    Args:
        samples: List of samples, each a list of arrays (one per model input, batch first).
        inputs: The model's input tensors (`model.inputs`), or None to skip the shape and dtype
            comparison. Defaults to None.

    Raises:
        ValueError: empty, wrong shape, NaN/inf, non-integer values for an integer input, or
            values beyond the sane range.

    Example:
        >>> check_representative_samples([[np.full((1, 4), np.nan, "float32")]])
        Traceback (most recent call last):
        ...
        ValueError: representative_data contains NaN (4 values; first in sample 0); ...
    """
    if not samples:
        raise ValueError("representative_data is empty: give a few hundred typical inputs.")
    n_inputs = len(samples[0])
    shapes = [tuple(t.shape[1:]) for t in inputs] if inputs else [None] * n_inputs
    dtypes = ([np.dtype(getattr(t.dtype, "name", t.dtype)) for t in inputs] if inputs
              else [None] * n_inputs)
    for k in range(n_inputs):
        stacked = np.concatenate([sample[k] for sample in samples], axis=0)
        which = f"representative_data (input {k})" if n_inputs > 1 else "representative_data"
        want = shapes[k]
        if want is not None and (len(want) != stacked.ndim - 1 or any(
                w is not None and w != g for w, g in zip(want, stacked.shape[1:]))):
            raise ValueError(f"{which} holds samples of shape {tuple(stacked.shape[1:])}, but the "
                             f"model input takes {want} (None = any); give samples of that "
                             "shape.")
        if stacked.dtype.kind == "f":
            bad = ~np.isfinite(stacked)
            if bad.any():
                first = int(np.argwhere(bad.reshape(len(stacked), -1).any(axis=1))[0, 0])
                kinds = " and ".join(name for name, hit in (
                    ("NaN", np.isnan(stacked).any()), ("inf", np.isinf(stacked).any())) if hit)
                raise ValueError(f"{which} contains {kinds} ({int(bad.sum())} values; first in "
                                 f"sample {first}); calibration needs finite inputs: drop or fix "
                                 "those samples (e.g. x[np.isfinite(x).all(axis=...)]).")
        dtype = dtypes[k]
        if dtype is not None and dtype.kind in "iub":
            if stacked.dtype.kind == "f" and not np.array_equal(stacked, np.round(stacked)):
                raise ValueError(f"{which} has non-integer values, but the model input is "
                                 f"{dtype.name} (e.g. token ids); give integer data.")
        elif stacked.size and stacked.dtype.kind in "iuf":
            peak = float(np.max(np.abs(stacked.astype(np.float64))))
            if peak > CALIBRATION_MAX_ABS:
                raise ValueError(f"{which} reaches |x| = {peak:.3g}, beyond the sane range "
                                 f"+-{CALIBRATION_MAX_ABS:.0e} for int8 calibration; give inputs "
                                 "preprocessed exactly as for training (e.g. scaled to [0, 1]).")


def representative_samples(data, input_ranks, limit=200):
    """Collects up to `limit` single samples (each a list of arrays with batch 1) from `data`.

    Elements may be `(x, y)` pairs (the labels are dropped), batches (rank = the model input's
    rank) or single samples (rank one less).
    """
    samples = []
    n_inputs = len(input_ranks) if input_ranks else 1
    for element in _iter_representative(data):
        if isinstance(element, dict):
            raise TypeError("representative_data elements must be arrays or (x, y) tuples, got a "
                            "dict; map the dataset to the model's input array first.")
        if isinstance(element, (tuple, list)):
            element = element if (n_inputs > 1 and len(element) == n_inputs) else element[0]
        xs = list(element) if isinstance(element, (tuple, list)) else [element]
        xs = [_real_array(x) for x in xs]
        if len(xs) != n_inputs:
            raise ValueError(f"The model has {n_inputs} inputs; a representative element gave "
                             f"{len(xs)} arrays.")
        ranks = input_ranks or [max(xs[0].ndim, 1)]
        if xs[0].ndim == ranks[0] - 1:
            xs = [x[None] for x in xs]
        elif xs[0].ndim != ranks[0]:
            raise ValueError(
                f"representative_data element of shape {xs[0].shape} does not fit the model input "
                f"of rank {ranks[0]} (give batches of shape (n, ...) or single samples)."
            )
        for i in range(len(xs[0])):
            samples.append([x[i : i + 1] for x in xs])
            if len(samples) >= limit:
                return samples
    if not samples:
        raise ValueError("representative_data is empty: give a few hundred typical inputs.")
    return samples


def _convert(converter, quantize, samples, input_type, output_type, input_names=None):
    import tensorflow as tf

    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if samples is not None:
            # Keyed by the signature's input names, so multi-input models get the right order.
            names = input_names or [f"input_{i}" for i in range(len(samples[0]))]
            converter.representative_dataset = lambda: (dict(zip(names, sample)) for sample in samples)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = getattr(tf, input_type)
        converter.inference_output_type = getattr(tf, output_type)
    with _quiet(), warnings.catch_warnings():
        # TensorFlow's int8 calibration (inside convert(), not our code: tfcompress runs files with
        # ai_edge_litert) warns that its interpreter is deprecated; the caller cannot act on it
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated",
                                category=UserWarning)
        return converter.convert()


def _check_int8_result(tflite, prepared, samples, input_type, output_type, name):
    """After an int8 conversion: the file is what was asked for and agrees with Keras.

    Raises ValueError when calibrated (`samples` given) but ops still compute in float, when the
    I/O dtypes differ from `input_type` / `output_type`, or when the int8 outputs disagree with
    the Keras model on most calibration samples (beyond quantization noise).
    """
    from tfcompress.export._flatbuffer import FLOAT_TYPES, read_model
    from tfcompress.export.export_report import ExportReport

    parsed = read_model(tflite)
    facts = ExportReport(parsed, {})
    io_wrong = [f"{kind} '{t['name']}' is {t['dtype']}, asked {want}"
                for kind, want, ts in (("input", input_type, facts.inputs),
                                       ("output", output_type, facts.outputs))
                for t in ts if t["dtype"] in FLOAT_TYPES + ("int8", "uint8") and t["dtype"] != want
                and not (want == "float32" and t["dtype"] in FLOAT_TYPES)]
    if io_wrong or (samples is not None and facts.float_ops):
        cause = "; ".join(io_wrong) or f"float ops left: {', '.join(facts.float_ops[:6])}"
        raise ValueError(
            f"Full-integer export of model '{name}' came out not full-integer ({cause}). The "
            "calibration ranges are unusable (e.g. constant, NaN or extreme inputs) or a layer "
            "has no int8 kernel; check representative_data or keep that layer in float.")
    if samples is None or len(facts.outputs) != 1:
        return
    from tfcompress.export.interpreter import load_interpreter, run_tflite

    xs = [np.concatenate([sample[k] for sample in samples]) for k in range(len(samples[0]))]
    expected = prepared(xs[0] if len(xs) == 1 else xs, training=False)
    expected = [np.asarray(e, dtype=np.float64) for e in _flat_outputs(expected)]
    if len(expected) != 1:
        return
    interp = load_interpreter(tflite)
    detail = interp.get_output_details()[0]
    actual = np.asarray(run_tflite(interp, xs if len(xs) > 1 else xs[0]), dtype=np.float64)
    expected = expected[0]
    if actual.shape != expected.shape or not len(expected):
        return
    e2, a2 = expected.reshape(len(expected), -1), actual.reshape(len(actual), -1)
    spread = float(e2.max() - e2.min()) if e2.size else 0.0
    q_scale = float(detail["quantization"][0] or 0.0)
    tol = max(4 * q_scale, 0.05 * spread, 1e-6)
    if e2.shape[1] > 1:  # classes: the TFLite pick must be (near) the Keras best
        rows = np.arange(len(e2))
        ok = e2[rows, a2.argmax(1)] >= e2.max(1) - tol
    else:
        ok = np.abs(e2 - a2).max(1) <= max(tol, 0.1 * spread)
    agreement = float(np.mean(ok))
    if agreement < MIN_CALIBRATION_AGREEMENT:
        raise ValueError(
            f"The int8 export of model '{name}' agrees with the Keras model on only "
            f"{agreement:.0%} of the {len(e2)} calibration samples (tolerance {tol:.3g}): the "
            "calibration data does not match the inputs the model expects (scale, "
            "preprocessing) or holds outliers; give typical, preprocessed inputs.")


def _flat_outputs(outputs):
    if isinstance(outputs, dict):
        return [outputs[k] for k in sorted(outputs)]
    if isinstance(outputs, (list, tuple)):
        return [o for item in outputs for o in _flat_outputs(item)]
    return [outputs]


def _check_finite_weights(model, name):
    """Refuses weights holding NaN or infinity (a diverged training): the TFLite converter crashes
    the whole process on them (a QAT EfficientNet whose weights went NaN in two steps: "scale out of
    expressed type range", then a segmentation fault) instead of raising."""
    for v in model.weights:
        a = np.asarray(v.numpy())
        bad = int(a.size - np.count_nonzero(np.isfinite(a))) if a.dtype.kind == "f" else 0
        if bad:
            raise ValueError(
                f"model '{name}': weight '{v.path}' holds {bad} NaN or infinite value(s) of {a.size}, so "
                "nothing was exported. Training diverged (lower the learning rate, check the loss and the "
                "inputs) or the weights were loaded wrong; export a checkpoint from before it happened.")


def export_tflite(model, path=None, *, quantize=None, representative_data=None, target="cpu",
                  input_type=None, output_type=None, sparse_kernels=None, calibration_samples=200,
                  batch_size=None, num_threads=(1, 2)):
    """Converts a Keras 3 model to TFLite and reports what came out.

    The model first goes through `prepare_for_export` (training wrappers stripped; QAT fake-quant
    kept). The given model is never mutated. When `path` is given the file is written atomically
    (temp file in the same directory, then `os.replace`): a failed export leaves no file.

    Args:
        model: A built `keras.Model` (Sequential, Functional or subclassed).
        path: Where to write the .tflite file. Defaults to None (bytes only).
        quantize: None or "float32" (float32 weights), "float16" (float16 weights), "dynamic"
            (int8 weights, float activations), or "int8" (full integer; needs
            `representative_data` unless the model is quantization-aware). Defaults to None,
            which means "float16" for target="gpu" and "int8" for target="edgetpu".
        representative_data: Calibration inputs for "int8": a numpy array `(n, ...)`, a
            `tf.data.Dataset` (of inputs or `(x, y)` pairs, batched or not), or a generator (or
            function returning one) of such arrays. Defaults to None.
        target: "cpu" (XNNPACK), "gpu" or "edgetpu"; sets defaults (see `quantize`; edgetpu also
            fixes the batch to 1 and integer I/O) and which verdict `report.compatible` gives.
            Every target is reported. Defaults to "cpu".
        input_type: Model input dtype for quantize="int8": "int8", "uint8" or "float32"
            (quantize inside the model). Defaults to None: "int8" for int8 models, else float32.
        output_type: Like `input_type`, for the outputs. Defaults to None (same rule).
        sparse_kernels: Options for the tfcompress sparse custom ops, handed to
            `tfcompress.export.sparse.rewrite_tflite`. Defaults to None (no sparse kernels).
        calibration_samples: Most samples taken from `representative_data`. Defaults to 200.
        batch_size: A fixed batch size for every input (e.g. 1 for an app that runs one sample
            at a time): static shapes let the delegates (XNNPACK, GPU) take every op they
            support, where a dynamic batch adds shape arithmetic (SHAPE, STRIDED_SLICE, PACK)
            they cannot. Defaults to None (dynamic batch; 1 for target="edgetpu").
        num_threads: With sparse_kernels="auto": the thread counts the app will run the model
            at (an int or a sequence, 1 to 64). The rewritten file is timed against the dense
            one on this host at each count it has cores for (a few seconds, in a child process;
            `absl.logging` shows progress) and layers are reverted to dense, least predicted
            gain first, until it is not slower than dense at any of them; the report's
            `sparse_kernel_guard` / `sparse_kernel_markdown` give the measured ratios. The
            measurement is this host's (x86 says nothing about a phone): for an ARM app pass
            None (per-layer cost model only) and time both files on the device. Ignored by the
            other `sparse_kernels` modes. Defaults to (1, 2).

    Inputs and outputs of Functional and Sequential models keep their Keras names as the
    signature keys, in the Keras order.

    Returns:
        `(tflite_bytes, ExportReport)`.

    Raises:
        TypeError: `representative_data` is not an array, Dataset or generator.
        ValueError: a bad option value, a weight holding NaN / infinity (training diverged), or
            the converter failed (message names the model).

    Example:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
        >>> x = np.random.rand(64, 8).astype("float32")
        >>> tflite, report = export_tflite(model, quantize="int8", representative_data=x)
        >>> report.is_full_integer
        True
    """
    import keras
    import tensorflow as tf

    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(map(repr, TARGETS))}, got {target!r}.")
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}.")
    if quantize is None:
        quantize = {"gpu": "float16", "edgetpu": "int8"}.get(target, "float32")
    if target == "edgetpu" and quantize != "int8":
        raise ValueError(f"target='edgetpu' needs quantize='int8' (full integer), got {quantize!r}.")
    input_type = _io_type(input_type, "input_type")
    output_type = _io_type(output_type, "output_type")
    if quantize != "int8" and {input_type, output_type} & {"int8", "uint8"}:
        raise ValueError("int8/uint8 input_type/output_type need quantize='int8'; "
                         f"got quantize={quantize!r}.")
    if quantize == "int8":
        input_type = input_type or "int8"
        output_type = output_type or "int8"
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError(f"model '{model.name}' is not built: start it with keras.Input(shape) "
                         "or call it once on a batch before exporting.")
    if isinstance(calibration_samples, bool) or not isinstance(calibration_samples, int) \
            or calibration_samples < 1:
        raise ValueError(f"calibration_samples must be a positive integer, got "
                         f"{calibration_samples!r}.")
    if sparse_kernels is not None and not isinstance(sparse_kernels, str):
        raise TypeError(f"sparse_kernels must be None or one of 'auto', 'custom', 'builtin', got "
                        f"{sparse_kernels!r}.")
    if sparse_kernels == "auto":
        from tfcompress.export._auto_guard import check_threads

        check_threads(num_threads)
    if representative_data is not None and quantize != "int8":
        raise ValueError(f"representative_data is only used by quantize='int8', got "
                         f"quantize={quantize!r}; drop it or ask for int8.")
    batch = _app_io.static_batch(batch_size, target)
    if path is not None:
        path = _check_path(path)
    _remove_stale([tempfile.gettempdir()] + (
        [os.path.dirname(os.path.abspath(path))] if path is not None else []))

    prepared = _prepare.prepare_for_export(model)
    _check_finite_weights(prepared, model.name)
    inputs = _model_inputs(prepared)
    input_ranks = [len(t.shape) for t in inputs] if inputs else None
    samples = None
    if representative_data is not None:
        samples = representative_samples(representative_data, input_ranks, calibration_samples)
        check_representative_samples(samples, inputs)
        if inputs:  # e.g. uint8 images for a float32 input: cast to what the model takes
            dtypes = [np.dtype(getattr(t.dtype, "name", t.dtype)) for t in inputs]
            samples = [[x.astype(d, copy=False) for x, d in zip(sample, dtypes)]
                       for sample in samples]
    elif quantize == "int8" and _prepare.needs_calibration(prepared):
        hint = (" (the Edge TPU needs full-integer models: give calibration inputs or "
                "train with quantization-aware training)") if target == "edgetpu" else ""
        raise ValueError(
            f"quantize='int8' needs representative_data for model '{model.name}': a few hundred "
            f"typical inputs as a numpy array, tf.data.Dataset or generator{hint}."
        )

    input_names = output_names = None
    if inputs:
        input_names = _app_io.signature_names([getattr(t, "name", None) for t in inputs], "input")
        keras_output_names = _app_io.output_names(prepared)
        output_names = keras_output_names and _app_io.signature_names(keras_output_names, "output")
        specs = [tf.TensorSpec([batch] + list(t.shape[1:]), t.dtype, name=name)
                 for t, name in zip(inputs, input_names)]
    elif samples:
        specs = [tf.TensorSpec([batch] + list(x.shape[1:]), x.dtype, name=f"input_{i}")
                 for i, x in enumerate(samples[0])]
    else:
        specs = None
    try:
        with _private_tempdir() as work_dir:
            saved_dir = os.path.join(work_dir, "saved_model")
            if specs is not None:
                def serve(*xs):
                    outputs = prepared(_app_io.pack_inputs(prepared, xs), training=False)
                    if not output_names:
                        return outputs
                    return _app_io.named_outputs(outputs, keras_output_names, output_names)

                archive = keras.export.ExportArchive()
                archive.track(prepared)
                archive.add_endpoint("serve", serve, input_signature=specs)
                archive.write_out(saved_dir, verbose=False)
                converter = tf.lite.TFLiteConverter.from_saved_model(saved_dir)
            else:
                with _quiet():
                    converter = tf.lite.TFLiteConverter.from_keras_model(prepared)
            tflite = _convert(converter, quantize, samples and _app_io.calibration_batches(samples, batch),
                              input_type, output_type, input_names)
        if input_names:
            tflite = _app_io.keras_io_order(tflite, input_names, output_names)
    except Exception as e:
        detail = _conversion_error_detail(e)
        raise ValueError(
            f"TFLite conversion of model '{model.name}' failed (quantize={quantize!r}, "
            f"target={target!r}): {detail}"
        ) from e

    if quantize == "int8":
        _check_int8_result(tflite, prepared, samples, input_type, output_type, model.name)

    if sparse_kernels is not None:
        try:
            from tfcompress.export import sparse as _sparse
        except ImportError:
            raise ValueError("sparse_kernels needs tfcompress.export.sparse, which this build "
                             "does not include.") from None
        tflite = _sparse.rewrite_tflite(tflite, sparse_kernels, num_threads=num_threads)

    report = report_for_bytes(tflite, target, quantize, trusted=True)
    if path is not None:
        _atomic_write(path, tflite)
    return tflite, report
