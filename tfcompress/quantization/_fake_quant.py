"""Fake-quantization primitives shared by the quantization layers (internal).

Weights: symmetric, zero point 0, narrow range ([-127, 127] for 8 bits), per tensor or per output
channel. Activations: asymmetric ranges tracked by an exponential moving average of the batch min/max,
frozen after a set step. Both round with `tf.quantization.fake_quant_*` through
`keras.quantizers.fake_quant_with_min_max_vars` (TensorFlow backend), which is the op the TFLite converter
recognises as a quantization point; its gradient is the straight-through estimator (identity inside the
range, zero outside).
"""

import contextlib

import keras
from keras import ops

_EPS = 1e-8


def fake_quant(x, min_value, max_value, num_bits=8, narrow_range=False):
    """Per-tensor fake quantization of `x` to `num_bits` over `[min_value, max_value]`."""
    return keras.quantizers.fake_quant_with_min_max_vars(
        x, min_value, max_value, num_bits=num_bits, narrow_range=narrow_range
    )


def fake_quant_per_channel_last(x, min_values, max_values, num_bits=8, narrow_range=True):
    """Per-channel fake quantization along the LAST axis of `x`.

    Calls `tf.quantization.fake_quant_with_min_max_vars_per_channel` directly: Keras' own per-channel
    helper wraps it in a `swapaxes` that is an identity transpose for the last axis, and the TFLite
    converter cannot propagate a per-channel quantized axis through a transpose.
    """
    import tensorflow as tf

    return tf.quantization.fake_quant_with_min_max_vars_per_channel(
        x, min_values, max_values, num_bits=num_bits, narrow_range=narrow_range
    )


def quantize_weight(w, axis, num_bits=8):
    """Symmetric fake quantization of a weight tensor.

    Args:
        w: The float weight tensor.
        axis: `None` (per tensor), `"last"` (per channel on the last axis, Conv1D/2D/3D kernels) or
            `"depthwise"` (per output channel of a `(kh, kw, in, multiplier)` depthwise kernel).
        num_bits: Bits of the integer grid. Defaults to 8.
    """
    # The range is a constant for the gradient (straight-through estimator): no backprop through
    # max|w|, which would cost a full extra pass over the kernel every step.
    if axis is None:
        m = ops.stop_gradient(ops.maximum(ops.max(ops.abs(w)), _EPS))
        return fake_quant(w, -m, m, num_bits=num_bits, narrow_range=True)
    if axis == "last":
        m = ops.stop_gradient(ops.maximum(ops.max(ops.abs(ops.reshape(w, (-1, w.shape[-1]))), axis=0), _EPS))
        return fake_quant_per_channel_last(w, -m, m, num_bits=num_bits)
    if axis == "depthwise":
        shape = tuple(w.shape)
        flat = ops.reshape(w, shape[:-2] + (1, shape[-2] * shape[-1]))
        m = ops.stop_gradient(ops.maximum(ops.max(ops.abs(ops.reshape(flat, (-1, flat.shape[-1]))), axis=0), _EPS))
        return ops.reshape(fake_quant_per_channel_last(flat, -m, m, num_bits=num_bits), shape)
    raise ValueError(f"Unknown weight quantization axis {axis!r}; expected None, 'last' or 'depthwise'.")


def numpy_fake_quant(x, min_value, max_value, num_bits=8, narrow_range=False):
    """Reference numpy implementation of TensorFlow's nudged fake quantization (for tests/docs)."""
    import numpy as np

    f = np.float32  # TensorFlow nudges in float32; 127.4999 and 127.5 round differently
    x = np.asarray(x, dtype=f)
    qmin = f(1 if narrow_range else 0)
    qmax = f(2**num_bits - 1)
    scale = (f(max_value) - f(min_value)) / (qmax - qmin)
    zp = np.clip(np.round(qmin - f(min_value) / scale), qmin, qmax)
    nmin, nmax = (qmin - zp) * scale, (qmax - zp) * scale
    clipped = np.clip(x, nmin, nmax)
    return (np.floor((clipped - nmin) / scale + 0.5) * scale + nmin).astype(np.float32)


def _global_min_max(bmin, bmax):
    """Batch (min, max) over all replicas of a `tf.distribute` strategy (one replica: unchanged).

    Under MirroredStrategy / MultiWorkerMirroredStrategy each replica sees its shard of the global
    batch; without this each would track its own shard's range (the range variables are not
    aggregated), so workers would end with different ranges. The global min/max is what one device
    sees on the same global batch, so ranges equal a single-device run's.
    """
    if keras.backend.backend() != "tensorflow":
        return bmin, bmax
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return bmin, bmax
    # Each replica writes its (min, max) into its own row and a SUM all-reduce (the collective the
    # gradients use) gives every replica all rows; an all_gather here clashed with the gradient
    # all-reduce under MirroredStrategy ("Collective instance ... expected type 0 ... got type 2").
    n = ctx.num_replicas_in_sync
    row = tf.one_hot(ctx.replica_id_in_sync_group, n, dtype=bmin.dtype)
    rows = ctx.all_reduce(tf.distribute.ReduceOp.SUM, row[:, None] * tf.stack([bmin, bmax])[None, :])
    return tf.reduce_min(rows[:, 0]), tf.reduce_max(rows[:, 1])


# Set by `point_inputs()`: a callable `(tracker, x) -> None` that sees each point's float input while
# the model runs eagerly with activation fake-quant bypassed.
_CALIBRATION_HOOK = None


@contextlib.contextmanager
def point_inputs(hook):
    """While active, every activation quantization point passes its input through unquantized and
    calls `hook(tracker, x)` with it (used by `calibrate()`; eager calls only)."""
    global _CALIBRATION_HOOK
    _CALIBRATION_HOOK = hook
    try:
        yield
    finally:
        _CALIBRATION_HOOK = None


class RangeTracker:
    """Creates and updates the (min, max) variables of one activation quantization point."""

    def __init__(self, layer, name, fixed_range=None):
        self.fixed_range = fixed_range
        self.min = layer.add_weight(name=f"{name}_min", shape=(), initializer="zeros", trainable=False)
        self.max = layer.add_weight(name=f"{name}_max", shape=(), initializer="zeros", trainable=False)
        if fixed_range is not None:
            self.min.assign(fixed_range[0])
            self.max.assign(fixed_range[1])

    def __call__(self, x, step, training, scheme):
        if _CALIBRATION_HOOK is not None:
            _CALIBRATION_HOOK(self, x)
            return x
        if self.fixed_range is None and training:
            xf = ops.cast(x, "float32")
            bmin = ops.minimum(ops.min(xf), 0.0)
            bmax = ops.maximum(ops.max(xf), 0.0)
            bmin, bmax = _global_min_max(bmin, bmax)
            d = scheme.ema_decay
            first = ops.logical_and(ops.equal(self.min, 0.0), ops.equal(self.max, 0.0))
            new_min = ops.where(first, bmin, d * self.min + (1.0 - d) * bmin)
            new_max = ops.where(first, bmax, d * self.max + (1.0 - d) * bmax)
            if scheme.freeze_step is not None:
                frozen = ops.greater_equal(step, scheme.freeze_step)
                new_min = ops.where(frozen, self.min, new_min)
                new_max = ops.where(frozen, self.max, new_max)
            self.min.assign(new_min)
            self.max.assign(new_max)
        lo = ops.minimum(self.min, 0.0)
        hi = ops.maximum(ops.maximum(self.max, 0.0), lo + _EPS)
        return fake_quant(x, lo, hi, num_bits=scheme.activation_bits)
