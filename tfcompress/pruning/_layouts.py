"""Which weights of which Keras layers are prunable, and their canonical (P, I, O) view."""

import keras
import numpy as np

L = keras.layers
CONV = (L.Conv1D, L.Conv2D, L.Conv3D)
CONV_T = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
PRUNABLE_TYPES = (L.Dense, L.EinsumDense, L.Embedding, L.MultiHeadAttention) + CONV + CONV_T + DEPTHWISE + SEPARABLE


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
    """List of `(weight_name, variable, spec)` of a layer; empty if it has nothing to prune."""
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
