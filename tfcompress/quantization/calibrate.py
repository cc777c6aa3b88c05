"""calibrate(): post-training activation ranges (PTQ, or the starting ranges of QAT)."""

import numpy as np

from tfcompress.quantization import _fake_quant
from tfcompress.quantization._qat_model import is_qat_model

METHODS = ("minmax", "percentile", "mse")


def _batches(data, batch_size, n_inputs=1):
    if isinstance(data, (list, tuple)) and data and not hasattr(data[0], "shape"):
        data = data[0]
    if n_inputs > 1 and isinstance(data, (list, tuple)) and len(data) == n_inputs \
            and all(hasattr(a, "shape") for a in data):  # one array per input of a multi-input model
        for i in range(0, len(data[0]), batch_size):
            yield [a[i:i + batch_size] for a in data]
        return
    if isinstance(data, np.ndarray) or hasattr(data, "shape"):
        for i in range(0, len(data), batch_size):
            yield data[i:i + batch_size]
        return
    for element in data:  # a tf.data.Dataset or generator of inputs or (x, y)
        if isinstance(element, (tuple, list)):
            element = element[0]
        yield element


def _mse_range(values, lo, hi, bits):
    """Clipping range minimising the fake-quant mean squared error (grid search on shrink factors)."""
    best, best_err = (lo, hi), np.inf
    for factor in np.linspace(0.2, 1.0, 33):
        cand_lo, cand_hi = lo * factor, hi * factor
        if cand_hi - cand_lo <= 0:
            continue
        err = np.mean((_fake_quant.numpy_fake_quant(values, cand_lo, cand_hi, bits) - values) ** 2)
        if err < best_err:
            best, best_err = (cand_lo, cand_hi), err
    return best


def calibrate(model, data, method="minmax", percentile=99.99, num_samples=512, batch_size=64, scheme=None):
    """Sets the activation ranges of a quantized model from data (post-training quantization).

    The model runs in float on `data` (activation fake-quant bypassed) and every quantization point
    takes its range from what it saw. Use it for PTQ (then `export_tflite(quantize="int8")` needs no
    representative data) or to start QAT from good ranges instead of the first batch's.

    Args:
        model: A model from `quantize()`, or a float model (then `quantize(model, scheme)` is applied
            first and the new model is returned).
        data: Inputs: a numpy array `(n, ...)` (a list of arrays, one per input, for a multi-input
            model), `(x, y)` tuple, `tf.data.Dataset` or generator.
        method: "minmax" (observed extremes), "percentile" (clip to the `percentile`-th
            percentile at both ends) or "mse" (range minimising the fake-quant mean squared error).
            Defaults to "minmax".
        percentile: Upper percentile for method="percentile" (the lower one is 100 - it).
            Defaults to 99.99.
        num_samples: Most input samples used. Defaults to 512.
        batch_size: Samples per forward pass. Defaults to 64.
        scheme: `Int8Scheme` used when `model` is a float model. Defaults to None (`Int8Scheme()`).

    Returns:
        The calibrated quantized model (the same object when `model` was already quantized).

    Example:
        >>> from tfcompress.quantization import calibrate, quantize
        >>> ptq = calibrate(quantize(model), x_train[:256], method="percentile")  # doctest: +SKIP
        >>> tflite, report = export_tflite(ptq, quantize="int8")  # doctest: +SKIP

    References:
        Jacob et al. 2018 (min/max ranges); Wu et al. 2020, "Integer Quantization for Deep Learning
        Inference: Principles and Empirical Evaluation" (percentile and MSE calibration).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if not 50.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (50, 100], got {percentile!r}.")
    for name, value in (("num_samples", num_samples), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"calibrate(): {name} must be a positive integer (a few hundred samples "
                             f"calibrate well), got {value!r}.")
    if not is_qat_model(model):
        from tfcompress.quantization.quantize import quantize

        model = quantize(model, scheme)
    keep_values = method != "minmax"
    stats = {}  # id(tracker) -> [tracker, min, max, [sampled values]]
    rng = np.random.default_rng(0)

    def hook(tracker, x):
        if tracker.fixed_range is not None:
            return
        v = np.asarray(x, dtype=np.float32).ravel()
        entry = stats.setdefault(id(tracker), [tracker, np.inf, -np.inf, []])
        entry[1] = min(entry[1], float(v.min()))
        entry[2] = max(entry[2], float(v.max()))
        if keep_values:
            entry[3].append(v if v.size <= 20000 else rng.choice(v, 20000, replace=False))

    seen = 0
    with _fake_quant.point_inputs(hook):
        n_inputs = len(getattr(model, "inputs", None) or [None])
        for batch in _batches(data, batch_size, n_inputs):
            batch = [b[: num_samples - seen] for b in batch] if isinstance(batch, list) else batch[: num_samples - seen]
            model(batch, training=False)
            seen += len(batch[0] if isinstance(batch, list) else batch)
            if seen >= num_samples:
                break
    if not seen:
        raise ValueError("calibrate(): data is empty; give a few hundred typical inputs.")
    for tracker, lo, hi, values in stats.values():
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        if keep_values:
            v = np.concatenate(values)
            if method == "percentile":
                lo, hi = min(float(np.percentile(v, 100 - percentile)), 0.0), max(float(np.percentile(v, percentile)), 0.0)
            else:
                bits = getattr(scheme, "activation_bits", 8)
                lo, hi = _mse_range(v, lo, hi, bits)
        tracker.min.assign(lo)
        tracker.max.assign(hi if hi > lo else lo + 1e-6)
    return model
