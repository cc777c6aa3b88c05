"""Which weights of which Keras layers are prunable, and their canonical (P, I, O) view."""

import keras
import numpy as np

L = keras.layers
CONV = (L.Conv1D, L.Conv2D, L.Conv3D)
CONV_T = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
RNN = (L.LSTM, L.GRU, L.SimpleRNN)
PRUNABLE_TYPES = ((L.Dense, L.EinsumDense, L.Embedding, L.MultiHeadAttention, L.Bidirectional) + CONV + CONV_T
                  + DEPTHWISE + SEPARABLE + RNN)
PROTOCOL = "tfcompress_prunable_weights"


def is_prunable_type(layer):
    """True for the built-in prunable classes and for layers with the prunable-weights protocol."""
    return isinstance(layer, PRUNABLE_TYPES) or callable(getattr(layer, PROTOCOL, None))


def _unique(pairs):
    seen, out = {}, []
    for name, var, spec in pairs:
        n = seen.get(name, 0)
        seen[name] = n + 1
        out.append((name if n == 0 else f"{name}_{n}", var, spec))
    return out


def _rnn_weights(layer, prefix=""):
    cell = layer.cell
    return [(f"{prefix}kernel", cell.kernel, _spec(2, "matrix")),
            (f"{prefix}recurrent_kernel", cell.recurrent_kernel, _spec(2, "matrix"))]


def _spec(ndim, kind, n_in=1):
    """(perm, p_axes, i_axes): transpose by perm, then the first p axes are P, next i are I."""
    perm = list(range(ndim))
    if kind == "conv":
        return perm, ndim - 2, 1
    if kind == "conv_t":  # (..., out, in)
        perm[-1], perm[-2] = perm[-2], perm[-1]
        return perm, ndim - 2, 1
    if kind == "depthwise":  # (..., in, multiplier): I = spatial taps, O = channels
        return perm, 0, ndim - 2
    return perm, 0, n_in  # "matrix": first n_in axes are inputs, the rest outputs


def prunable_weights(layer):
    """List of `(weight_name, variable, spec)` of a layer; empty if it has nothing to prune.

    A custom layer declares its prunable weights with a method `tfcompress_prunable_weights(self)`
    returning a list of its variables (like tfmot's `PrunableLayer.get_prunable_weights`); the last
    axis of each is its output axis (as for a Dense kernel).
    """
    if callable(getattr(layer, PROTOCOL, None)):
        declared = list(getattr(layer, PROTOCOL)() or [])
        own = {id(v) for v in layer.weights}
        for var in declared:
            if id(var) not in own:
                raise ValueError(
                    f"{type(layer).__name__}.{PROTOCOL}() of layer '{layer.name}' returned "
                    f"{getattr(var, 'path', var)!r}, which is not one of the layer's weights; return "
                    "variables the layer created (e.g. [self.kernel]), after build().")
        return _unique([(var.name, var, _spec(len(var.shape), "matrix", max(len(var.shape) - 1, 0)))
                        for var in declared])
    if isinstance(layer, RNN):
        return _rnn_weights(layer)
    if isinstance(layer, L.Bidirectional) and isinstance(layer.forward_layer, RNN) and isinstance(
            layer.backward_layer, RNN):
        return _rnn_weights(layer.forward_layer, "forward_") + _rnn_weights(layer.backward_layer, "backward_")
    if isinstance(layer, L.MultiHeadAttention):
        out = []
        for part in ("query", "key", "value", "output"):
            dense = getattr(layer, f"{part}_dense")
            k = dense.kernel
            n_in = 1 if part != "output" else len(k.shape) - 1
            out.append((f"{part}_kernel", k, _spec(len(k.shape), "matrix", n_in)))
        return out
    if isinstance(layer, SEPARABLE):
        return [("depthwise_kernel", layer.depthwise_kernel, _spec(len(layer.depthwise_kernel.shape), "depthwise")),
                ("pointwise_kernel", layer.pointwise_kernel, _spec(len(layer.pointwise_kernel.shape), "conv"))]
    if isinstance(layer, DEPTHWISE):
        return [("kernel", layer.kernel, _spec(len(layer.kernel.shape), "depthwise"))]
    if isinstance(layer, CONV_T):
        return [("kernel", layer.kernel, _spec(len(layer.kernel.shape), "conv_t"))]
    if isinstance(layer, CONV):
        return [("kernel", layer.kernel, _spec(len(layer.kernel.shape), "conv"))]
    if isinstance(layer, L.Embedding):
        return [("embeddings", layer.embeddings, _spec(2, "matrix"))]
    if isinstance(layer, L.Dense):
        return [("kernel", layer.kernel, _spec(2, "matrix"))]
    if isinstance(layer, L.EinsumDense):
        k = layer.kernel
        return [("kernel", k, _spec(len(k.shape), "matrix"))]
    return []


def to3d(w, spec):
    perm, p, i = spec
    t = np.transpose(w, perm)
    s = t.shape
    return t.reshape(int(np.prod(s[:p])), int(np.prod(s[p:p + i])), int(np.prod(s[p + i:])))


def from3d(m3, shape, spec):
    perm, _, _ = spec
    tshape = [shape[a] for a in perm]
    return np.transpose(m3.reshape(tshape), np.argsort(perm))
