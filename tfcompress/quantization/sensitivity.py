"""sensitivity() and keep_float_for_budget(): choose which layers stay float (mixed precision)."""

import numpy as np

from tfcompress.quantization.calibrate import calibrate
from tfcompress.quantization.quantize_config import QuantizeConfig


def _candidates(model):
    """Names of the layers that carry quantized weights, in model order (nested models included)."""
    import keras

    names = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            names.extend(_candidates(layer))
            continue
        cfg = QuantizeConfig.for_layer(layer)
        if cfg is not None and cfg.weights and not cfg.float_fallback:
            names.append(layer.name)
    return names


def _outputs(model, x):
    y = model.predict(x, batch_size=256, verbose=0)
    return y[0] if isinstance(y, (list, tuple)) else y


def sensitivity(model, data, labels=None, scheme=None, method="minmax"):
    """Measures each layer's error when it alone is quantized (post-training, calibrated on `data`).

    Args:
        model: The float Keras model.
        data: Input array `(n, ...)` used both to calibrate and to measure (a few hundred samples).
        labels: Integer labels of `data`; when given the error is the top-1 accuracy drop, otherwise
            the mean absolute output error relative to the float outputs' mean magnitude.
            Defaults to None.
        scheme: An `Int8Scheme`. Defaults to None (`Int8Scheme()`).
        method: Calibration method (see `calibrate`). Defaults to "minmax".

    Returns:
        `{layer name: error}` ordered from most to least sensitive.

    Example:
        >>> from tfcompress.quantization import sensitivity, quantize
        >>> errors = sensitivity(model, x_val[:256], y_val[:256])  # doctest: +SKIP
        >>> qat = quantize(model, keep_float=list(errors)[:1])  # doctest: +SKIP

    References:
        Wu et al. 2020, "Integer Quantization for Deep Learning Inference: Principles and Empirical
        Evaluation" (per-layer sensitivity analysis, Sec. 6).
    """
    from tfcompress.quantization.quantize import quantize

    x = np.asarray(data)
    reference = _outputs(model, x)
    base_acc = None if labels is None else float(np.mean(reference.argmax(-1) == np.asarray(labels)))
    scale = float(np.mean(np.abs(reference))) or 1.0
    errors = {}
    for name in _candidates(model):
        single = calibrate(quantize(model, scheme, layers=[name]), x, method=method)
        y = _outputs(single, x)
        if labels is None:
            errors[name] = float(np.mean(np.abs(y - reference)) / scale)
        else:
            errors[name] = base_acc - float(np.mean(y.argmax(-1) == np.asarray(labels)))
    return dict(sorted(errors.items(), key=lambda kv: -kv[1]))


def keep_float_for_budget(model, data, labels, max_accuracy_drop=0.01, scheme=None, method="minmax"):
    """Smallest list of most-sensitive layers to keep float so PTQ loses at most `max_accuracy_drop`.

    Layers are added in `sensitivity` order until the calibrated quantized model's top-1 accuracy on
    `(data, labels)` is within the budget of the float model's; pass the result to
    `quantize(model, keep_float=...)`.

    Args:
        model: The float Keras model.
        data: Input array `(n, ...)`.
        labels: Integer labels of `data`.
        max_accuracy_drop: Allowed top-1 accuracy loss as a fraction (0.01 = 1 point). Defaults to 0.01.
        scheme: An `Int8Scheme`. Defaults to None (`Int8Scheme()`).
        method: Calibration method. Defaults to "minmax".

    Returns:
        `(keep_float, accuracy)`: the layer names and the accuracy of the mixed model on `data`.

    Example:
        >>> names, acc = keep_float_for_budget(model, x_val, y_val, max_accuracy_drop=0.01)  # doctest: +SKIP
        >>> qat = quantize(model, keep_float=names)  # doctest: +SKIP
    """
    from tfcompress.quantization.quantize import quantize

    if not 0.0 <= max_accuracy_drop <= 1.0:
        raise ValueError(f"max_accuracy_drop must be a fraction in [0, 1], got {max_accuracy_drop!r}.")
    x, y = np.asarray(data), np.asarray(labels)
    float_acc = float(np.mean(_outputs(model, x).argmax(-1) == y))
    order = list(sensitivity(model, x, y, scheme, method))
    keep = []
    while True:
        mixed = calibrate(quantize(model, scheme, keep_float=keep), x, method=method)
        acc = float(np.mean(_outputs(mixed, x).argmax(-1) == y))
        if float_acc - acc <= max_accuracy_drop or len(keep) == len(order):
            return keep, acc
        keep.append(order[len(keep)])
