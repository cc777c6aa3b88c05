"""factorize(): replace the Dense and Conv2D layers of a trained model by low-rank factorized ones."""

import keras
import numpy as np
from absl import logging

from tfcompress._surgery import build_like, check_layer_names, check_model, iter_layers, rebuild
from tfcompress.factorization.factorized_conv2d import FactorizedConv2D
from tfcompress.factorization.factorized_dense import FactorizedDense


def _shape(layer, attr):
    try:
        return tuple(getattr(layer, attr).shape)
    except (AttributeError, ValueError):
        return None


def _plan(layer, rank, energy):
    """Returns a table row for one candidate layer (with the chosen rank, or a skip reason)."""
    kernel = keras.ops.convert_to_numpy(layer.kernel).astype("float64")
    bias = int(np.prod(layer.bias.shape)) if layer.use_bias else 0
    row = {"layer": layer.name, "class": type(layer).__name__}
    if isinstance(layer, keras.layers.Dense):
        matrix = kernel
        n_in, n_out = kernel.shape
        cost = lambda r: r * (n_in + n_out)  # noqa: E731
        rows = int(np.prod(_shape(layer, "input")[1:-1] or (1,))) if _shape(layer, "input") else 1
        macs_before, macs_after = rows * n_in * n_out, (lambda r: rows * cost(r))
    else:
        kh, kw, c_in, c_out = kernel.shape
        matrix = FactorizedConv2D.kernel_matrix(kernel)
        cost = lambda r: r * (kh * c_in + kw * c_out)  # noqa: E731
        in_shape, out_shape = _shape(layer, "input"), _shape(layer, "output")
        if in_shape and out_shape and None not in in_shape[1:] and None not in out_shape[1:]:
            w_in, (h_out, w_out) = in_shape[2], out_shape[1:3]
            macs_before = h_out * w_out * kh * kw * c_in * c_out
            macs_after = lambda r: h_out * w_in * kh * c_in * r + h_out * w_out * kw * r * c_out  # noqa: E731
        else:
            macs_before, macs_after = None, (lambda r: None)
    s = np.linalg.svd(matrix, compute_uv=False)
    full_rank = len(s)
    power = np.cumsum(s**2) / max(np.sum(s**2), 1e-30)
    if rank is None:
        r = int(np.searchsorted(power, energy - 1e-12) + 1)
    else:
        r = int(rank.get(layer.name, full_rank) if isinstance(rank, dict) else rank)
        if r < 1:
            raise ValueError(f"factorize: rank for layer '{layer.name}' must be >= 1, got {r}.")
    r = min(r, full_rank)
    params_before = int(matrix.size) + bias
    params_after = cost(r) + bias
    row.update(rank=r, full_rank=full_rank, energy=float(power[r - 1]),
               params_before=params_before, flops_before=None if macs_before is None else 2 * macs_before)
    if params_after >= params_before:
        row.update(status="skipped: not smaller", params_after=params_before,
                   flops_after=row["flops_before"])
    else:
        m = macs_after(r)
        row.update(status="factorized", params_after=params_after, flops_after=None if m is None else 2 * m)
    return row


def factorize(model, rank=None, energy=0.9, layers=None):
    """Replaces Dense and Conv2D layers by low-rank ones initialised from the truncated SVD.

    Each chosen layer becomes a `FactorizedDense` or `FactorizedConv2D` (spatial SVD) whose weights
    are the truncated SVD of the trained kernel, so before any fine-tuning each layer computes the
    best rank-r approximation of the original one. Layers where the factorized form would not hold
    fewer weights than the original are left as they are. The given model is not modified.

    Args:
        model: A built `keras.Model`: Sequential, Functional (nested models are descended into) or
            subclassed (re-created from its config, its layer attributes replaced).
        rank: int rank for every layer, or a dict `{layer_name: rank}`; None chooses each layer's
            rank from `energy`. Ranks above a layer's full rank are clipped. Defaults to None.
        energy: When `rank` is None, the smallest rank keeping at least this fraction of the sum of
            squared singular values, in (0, 1]. Defaults to 0.9.
        layers: Names of the layers to consider; None considers every Dense and Conv2D (groups=1).
            Defaults to None.

    Returns:
        `(new_model, table)`: the factorized copy and one dict per considered layer with keys
        `layer, class, status, rank, full_rank, energy, params_before, params_after, flops_before,
        flops_after` (flops = 2 x multiply-adds per example; None when the layer's shapes are unknown).

    Example:
        >>> import keras
        >>> from tfcompress.factorization import factorize
        >>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64), keras.layers.Dense(10)])
        >>> small, table = factorize(model, rank=8)
        >>> [(row["layer"], row["status"]) for row in table][0][1]
        'factorized'

    References:
        Denton et al. 2014, "Exploiting Linear Structure Within Convolutional Networks for Efficient
        Evaluation"; Jaderberg et al. 2014, "Speeding up Convolutional Neural Networks with Low Rank
        Expansions".
    """
    check_model(model, "factorize")
    if rank is None and not 0.0 < energy <= 1.0:
        raise ValueError(f"factorize: energy must be in (0, 1], got {energy!r}.")
    if rank is not None and not isinstance(rank, dict) and (int(rank) != rank or rank < 1):
        raise ValueError(f"factorize: rank must be a positive int, a dict or None, got {rank!r}.")
    all_layers = list(iter_layers(model))
    if layers is not None:
        check_layer_names(model, layers, "factorize")
    table, plans = [], {}
    for layer in all_layers:
        if layers is not None and layer.name not in layers:
            continue
        supported = type(layer) is keras.layers.Dense or (
            type(layer) is keras.layers.Conv2D and layer.groups == 1
            and layer.data_format == "channels_last" and layer.padding in ("valid", "same"))
        if not supported:
            if layers is not None:
                raise ValueError(
                    f"factorize: layer '{layer.name}' ({type(layer).__name__}) cannot be factorized; "
                    "only keras.layers.Dense and Conv2D (groups=1, channels_last) can. "
                    "Remove it from `layers`.")
            continue
        row = _plan(layer, rank, energy)
        logging.info("factorize: layer '%s' (%s) rank %d of %d (energy %.3f): %s, %d -> %d parameters",
                     row["layer"], row["class"], row["rank"], row["full_rank"], row["energy"],
                     row["status"], row["params_before"], row["params_after"])
        table.append(row)
        if row["status"] == "factorized":
            plans[id(layer)] = row["rank"]

    def make(layer):
        if id(layer) not in plans:
            return None
        r = plans[id(layer)]
        common = dict(activation=layer.activation, use_bias=layer.use_bias, name=layer.name,
                      dtype=layer.dtype_policy)
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        if isinstance(layer, keras.layers.Dense):
            new = FactorizedDense(layer.units, r, **common)
            weights = list(FactorizedDense.svd_factors(kernel, r))
        else:
            new = FactorizedConv2D(layer.filters, layer.kernel_size, r, strides=layer.strides,
                                   padding=layer.padding, dilation_rate=layer.dilation_rate, **common)
            weights = list(FactorizedConv2D.svd_factors(kernel, r))
        if layer.use_bias:
            weights.append(keras.ops.convert_to_numpy(layer.bias))
        build_like(new, layer).set_weights(weights)
        return new

    return rebuild(model, make), table
