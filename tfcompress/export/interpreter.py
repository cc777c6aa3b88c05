"""Running TFLite models in the LiteRT interpreter: load, run on numpy data, benchmark.

Everything in tfcompress that executes a .tflite file goes through these three functions, so the
sparse kernels (registered in `load_interpreter`) are available everywhere.
"""

import re
import time

import numpy as np
from ai_edge_litert import interpreter as litert

from tfcompress.export._flatbuffer import read_bytes

MAX_THREADS = 256  # LiteRT crashes in teardown with tens of thousands of threads


def _check_int(name, value, minimum, maximum=None, allow_none=False):
    """Raises a message naming the argument, the value and the valid range."""
    if value is None and allow_none:
        return
    valid = f"an integer in [{minimum}, {maximum}]" if maximum else f"an integer >= {minimum}"
    if allow_none:
        valid = "None or " + valid
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be {valid}, got {value!r}.")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {valid}, got {value!r}.")


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _invoke_on_zeros(interp):
    """One invoke on all-zero inputs: surfaces the errors LiteRT defers to the first invoke."""
    details = interp.get_input_details()
    if any(not (np.issubdtype(d["dtype"], np.number) or d["dtype"] == np.bool_)
           for d in details):
        return  # e.g. string inputs: no neutral value to feed
    for d in details:
        interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    interp.invoke()


def load_interpreter(tflite, num_threads=1, **interpreter_kwargs):
    """Loads a TFLite model into a LiteRT interpreter, allocated and invoked once on zeros.

    LiteRT verifies the flatbuffer before building the model. The one invoke on zero inputs
    surfaces the errors the runtime defers to the first run (a kernel's Prepare rejecting the
    model, XNNPACK refusing a dynamic shape), so they come out here as `ValueError` rather than
    later from `invoke()` as `RuntimeError`.

    XNNPACK is applied by default, as in an app using the LiteRT runtime. Models holding the
    tfcompress sparse custom ops (`TFC_SPARSE_FC`, `TFC_SPARSE_CONV_1X1`) get the delegate that
    runs them with the native kernels (`tfcompress.export.sparse_native`).

    Args:
        tflite: TFLite model bytes, or a path to a `.tflite` file.
        num_threads: Threads for the CPU kernels, 1 to 256. Defaults to 1.
        **interpreter_kwargs: Extra `ai_edge_litert.interpreter.Interpreter` arguments
            (e.g. `experimental_delegates`).

    Returns:
        An allocated `ai_edge_litert.interpreter.Interpreter`.

    Raises:
        FileNotFoundError: the path does not exist.
        TypeError: `tflite` is neither bytes nor a path, or `num_threads` is not an integer.
        ValueError: `num_threads` is out of range, or the file or bytes are not a TFLite model
            LiteRT can load and run (the message starts "LiteRT cannot load" or "LiteRT cannot
            run").

    Example:
        >>> interp = load_interpreter("model.tflite", num_threads=2)  # doctest: +SKIP
        >>> interp.get_input_details()[0]["shape"]  # doctest: +SKIP
        array([1, 8, 8, 1], dtype=int32)
    """
    _check_int("num_threads", num_threads, 1, MAX_THREADS)
    data = read_bytes(tflite)
    # tfcompress sparse kernels: models with TFC_* custom ops get the delegate that runs them.
    from tfcompress.export.sparse_native import with_sparse_kernels

    try:
        interpreter_kwargs = with_sparse_kernels(data, interpreter_kwargs)
    except Exception as e:  # a corrupt flatbuffer fails while looking for custom ops
        raise ValueError(f"LiteRT cannot load this model: corrupt or truncated TFLite "
                         f"flatbuffer ({len(data)} bytes): {e}") from None
    try:
        interp = litert.Interpreter(model_content=data, num_threads=num_threads,
                                    **interpreter_kwargs)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"LiteRT cannot load this model: {_first_line(e)}") from None
    try:
        _invoke_on_zeros(interp)
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"LiteRT cannot run this model (first invoke on zero inputs failed): "
                         f"{_first_line(e)}") from None
    return interp


def _ordered(details, pattern):
    """Details sorted by the number `pattern` finds in each name (the Keras order), when all match.

    export_tflite names inputs `input_<i>` and the converter names outputs `...:<i>` after the
    position in the Keras output structure; the interpreter's own order may differ.
    """
    found = [re.search(pattern, d["name"]) for d in details]
    if len(details) > 1 and all(found):
        return [d for _, d in sorted(zip([int(m.group(1)) for m in found], details),
                                     key=lambda pair: pair[0])]
    return list(details)


def _quantize(x, detail):
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.integer) and detail["quantization"][0]:
        scale, zero = detail["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return np.asarray(x).astype(dtype)


def _dequantize(y, detail):
    if np.issubdtype(detail["dtype"], np.integer) and detail["quantization"][0]:
        scale, zero = detail["quantization"]
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32) if np.issubdtype(y.dtype, np.floating) else y


def run_tflite(tflite_or_interpreter, x, batch_size=None, num_threads=1):
    """Runs a TFLite model on numpy inputs; int8/uint8 inputs and outputs are (de)quantized.

    Inputs with a dynamic batch dimension are run `batch_size` samples at a time; a model with a
    static batch (e.g. exported for the Edge TPU with batch 1) runs one batch of that size at a time.

    Args:
        tflite_or_interpreter: TFLite bytes, a path, or an interpreter from `load_interpreter`.
        x: Float input array of shape `(n, ...)`, or a list of arrays for a multi-input model
            in the Keras model's input order.
        batch_size: Samples per invoke for dynamic-batch models. Defaults to all of `x` up to 256.
        num_threads: Threads when `tflite_or_interpreter` is not already an interpreter.
            Defaults to 1.

    Returns:
        Float32 numpy outputs of shape `(n, ...)`: one array, or a list for multi-output models
        in the Keras model's output order.

    Example:
        >>> probs = run_tflite(tflite_bytes, x_test)  # doctest: +SKIP
        >>> probs.shape  # doctest: +SKIP
        (360, 10)
    """
    _check_int("batch_size", batch_size, 1, allow_none=True)
    _check_int("num_threads", num_threads, 1, MAX_THREADS)
    if x is None:
        raise TypeError("x must be an input array (n, ...) or a list of them, got None.")
    if isinstance(tflite_or_interpreter, litert.Interpreter):
        interp = tflite_or_interpreter
    else:
        interp = load_interpreter(tflite_or_interpreter, num_threads=num_threads)
    in_details = _ordered(interp.get_input_details(), r"input_(\d+)")
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(xs) != len(in_details):
        raise ValueError(f"The model has {len(in_details)} inputs, got {len(xs)} arrays.")
    xs = [np.asarray(a) for a in xs]
    for i, a in enumerate(xs):
        if a.dtype.kind not in "biuf":
            raise TypeError(f"Input {i} must be a real numeric array, got dtype {a.dtype}"
                            f"{' (complex: pass the real part)' if a.dtype.kind == 'c' else ''}.")
        if a.ndim == 0 or len(a) == 0:
            raise ValueError(f"Input {i} has no samples (shape {a.shape}); give at least one "
                             "sample of shape (n, ...).")
    if len({len(a) for a in xs}) > 1:
        raise ValueError(f"Inputs hold different numbers of samples: {[len(a) for a in xs]}.")
    n = len(xs[0])
    for a, d in zip(xs, in_details):
        if a.ndim != len(d["shape"]) or tuple(a.shape[1:]) != tuple(d["shape"][1:]):
            raise ValueError(
                f"Input '{d['name']}' expects shape (n, {', '.join(map(str, d['shape'][1:]))}), "
                f"got {a.shape}."
            )
    dynamic = all(d["shape_signature"][0] == -1 for d in in_details if len(d["shape_signature"]))
    if dynamic:
        step = int(batch_size or min(max(n, 1), 256))
    else:
        step = int(in_details[0]["shape"][0])
    results = None
    for start in range(0, n, step):
        chunk = [a[start : start + step] for a in xs]
        real = len(chunk[0])
        if dynamic:
            try:
                for c, d in zip(chunk, in_details):
                    if tuple(d["shape"]) != tuple(c.shape):
                        interp.resize_tensor_input(d["index"], list(c.shape))
                interp.allocate_tensors()
            except (ValueError, RuntimeError) as e:
                raise ValueError(f"LiteRT cannot run this model on a batch of {len(chunk[0])}: "
                                 f"{_first_line(e)}") from None
        elif real < step:
            chunk = [np.concatenate([c, np.repeat(c[-1:], step - real, axis=0)]) for c in chunk]
        in_details = _ordered(interp.get_input_details(), r"input_(\d+)")
        for c, d in zip(chunk, in_details):
            interp.set_tensor(d["index"], _quantize(c, d))
        try:
            interp.invoke()
        except RuntimeError as e:
            raise ValueError(f"LiteRT failed running this model: {_first_line(e)}") from None
        outs = [_dequantize(interp.get_tensor(d["index"]), d)[:real]
                for d in _ordered(interp.get_output_details(), r":(\d+)$")]
        if results is None:
            results = [[] for _ in outs]
        for r, o in zip(results, outs):
            r.append(o)
    if results is None:
        raise ValueError("run_tflite got an empty input (0 samples).")
    outputs = [np.concatenate(r, axis=0) for r in results]
    return outputs[0] if len(outputs) == 1 else outputs


def benchmark_tflite(tflite, runs=50, warmup=5, num_threads=1, batch_size=1, seed=0):
    """Measures LiteRT latency of one invoke on random inputs (wall clock, milliseconds).

    Args:
        tflite: TFLite bytes, a path, or an interpreter from `load_interpreter`.
        runs: Timed invokes. Defaults to 50.
        warmup: Untimed invokes first. Defaults to 5.
        num_threads: CPU threads, 1 to 256. Defaults to 1.
        batch_size: Batch for dynamic-batch models. Defaults to 1.
        seed: Seed of the random input. Defaults to 0.

    Returns:
        dict with `median_ms`, `p90_ms`, `mean_ms`, `min_ms`, `runs`, `num_threads`, `batch_size`.

    Example:
        >>> stats = benchmark_tflite(tflite_bytes, runs=20)  # doctest: +SKIP
        >>> sorted(stats)[:3]  # doctest: +SKIP
        ['batch_size', 'mean_ms', 'median_ms']
    """
    _check_int("runs", runs, 1)
    _check_int("warmup", warmup, 0)
    _check_int("num_threads", num_threads, 1, MAX_THREADS)
    _check_int("batch_size", batch_size, 1)
    _check_int("seed", seed, 0)
    if isinstance(tflite, litert.Interpreter):
        interp = tflite
    else:
        interp = load_interpreter(tflite, num_threads=num_threads)
    rng = np.random.default_rng(seed)
    details = interp.get_input_details()
    resized = False
    for d in details:
        shape = list(d["shape"])
        if len(d["shape_signature"]) and d["shape_signature"][0] == -1 and shape[0] != batch_size:
            shape[0] = batch_size
            interp.resize_tensor_input(d["index"], shape)
            resized = True
    if resized:
        try:
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ValueError(f"LiteRT cannot run this model with batch_size={batch_size}: "
                             f"{_first_line(e)}") from None
    for d in interp.get_input_details():
        dtype = d["dtype"]
        if np.issubdtype(dtype, np.integer) and d["quantization"][0] != 0:
            info = np.iinfo(dtype)  # a quantized input: any value is a valid input
            value = rng.integers(info.min, info.max, size=d["shape"], endpoint=True).astype(dtype)
        elif np.issubdtype(dtype, np.integer):
            value = np.zeros(d["shape"], dtype)  # indices (Embedding, Gather): 0 is always in range
        elif dtype == np.bool_:
            value = rng.random(d["shape"]) > 0.5
        else:
            value = rng.random(d["shape"]).astype(dtype)
        interp.set_tensor(d["index"], value)
    times = np.empty(runs)
    try:
        for _ in range(warmup):
            interp.invoke()
        for i in range(runs):
            t0 = time.perf_counter()
            interp.invoke()
            times[i] = (time.perf_counter() - t0) * 1000.0
    except RuntimeError as e:
        raise ValueError(f"LiteRT failed running this model: {_first_line(e)}") from None
    return {
        "median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
        "mean_ms": float(times.mean()), "min_ms": float(times.min()), "runs": runs,
        "num_threads": num_threads, "batch_size": batch_size,
    }
