"""export_tflite: Keras 3 model -> TFLite bytes (+ file, written atomically) and an ExportReport."""

import collections.abc
import contextlib
import inspect
import os
import sys
import tempfile

import numpy as np

from tfcompress.export import _app_io
from tfcompress.export import prepare as _prepare
from tfcompress.export.analysis import TARGETS, inspect_tflite

QUANTIZE_MODES = (None, "float32", "dynamic", "float16", "int8")
IO_TYPES = (None, "float32", "int8", "uint8")


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


def _check_path(path):
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory; give a file path like {path}/model.tflite.")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"Directory {parent} does not exist; create it before exporting.")
    return path


def _atomic_write(path, data):
    """Writes to a temp file in the same directory, then os.replace: never a partial file."""
    parent = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
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
        xs = [np.asarray(x, dtype=np.float32) if not np.issubdtype(np.asarray(x).dtype, np.integer)
              else np.asarray(x) for x in xs]
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
    with _quiet():
        return converter.convert()


def export_tflite(model, path=None, *, quantize=None, representative_data=None, target="cpu",
                  input_type=None, output_type=None, sparse_kernels=None, calibration_samples=200,
                  batch_size=None):
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

    Inputs and outputs of Functional and Sequential models keep their Keras names as the
    signature keys, in the Keras order.

    Returns:
        `(tflite_bytes, ExportReport)`.

    Raises:
        TypeError: `representative_data` is not an array, Dataset or generator.
        ValueError: a bad option value, or the converter failed (message names the model).

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
    batch = _app_io.static_batch(batch_size, target)
    if path is not None:
        path = _check_path(path)

    prepared = _prepare.prepare_for_export(model)
    inputs = _model_inputs(prepared)
    input_ranks = [len(t.shape) for t in inputs] if inputs else None
    samples = None
    if representative_data is not None:
        samples = representative_samples(representative_data, input_ranks, calibration_samples)
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
        with tempfile.TemporaryDirectory(prefix="tfcompress_export_") as saved_dir:
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

    if sparse_kernels is not None:
        try:
            from tfcompress.export import sparse as _sparse
        except ImportError:
            raise ValueError("sparse_kernels needs tfcompress.export.sparse, which this build "
                             "does not include.") from None
        tflite = _sparse.rewrite_tflite(tflite, sparse_kernels)

    report = inspect_tflite(tflite, target=target, quantize=quantize)
    if path is not None:
        _atomic_write(path, tflite)
    return tflite, report
