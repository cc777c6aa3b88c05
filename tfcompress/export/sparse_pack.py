"""Packing of sparse weight matrices into the tfcompress "TFCS" v1 format.

The format is read by the native kernels in ``tflite_export/tfc_format.c``
(the layout is documented there and in ``tflite_export/README.md``).
"""

from __future__ import annotations

import struct

import numpy as np

MAGIC = b"TFCS"
VERSION = 1
VALUE_FLOAT32 = 1
VALUE_INT8 = 9
ACTIVATIONS = {"NONE": 0, "RELU": 1, "RELU6": 2, "RELU_N1_TO_1": 3}


def _pad16(buf: bytearray) -> None:
    buf.extend(b"\0" * ((-len(buf)) % 16))


def pack_sparse_weights(weights, block=1, scales=None, sort_rows=True) -> bytes:
    """Packs a 2-D weight matrix ``[N, K]`` (output channel, input feature).

    Only the non-zero ``1 x block`` blocks (``block`` consecutive input features of
    one output channel) are stored, in the sliced-ELLPACK "TFCS" layout: output
    channels sorted by block count, 16 per slice, slots lane-minor.

    Args:
        weights: ``[N, K]`` float32 array (float model) or int8 array (int8 model).
        block: 1 (plain CSR: unstructured or N:M sparsity) or 4 (1x4 blocks).
            ``K`` must be a multiple of ``block``. Defaults to 1.
        scales: For int8 weights, the per-output-channel scales ``[N]`` (symmetric,
            ``w_real = scales[n] * q``). Must be None for float32. Defaults to None.
        sort_rows: Sort output channels by block count (less padding). False keeps them in
            order, so each slice is 16 consecutive channels, which the many-row (1x1 conv)
            kernel stores with one vector store. Defaults to True.

    Returns:
        The packed bytes, to store in a constant uint8 tensor.

    Example:
        >>> w = np.zeros((8, 16), np.float32); w[0, 3] = 1.5
        >>> blob = pack_sparse_weights(w)
        >>> blob[:4]
        b'TFCS'
    """
    w = np.asarray(weights)
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D [N, K], got shape {w.shape}")
    n, k = w.shape
    if block not in (1, 4):
        raise ValueError(f"block must be 1 or 4, got {block}")
    if k % block:
        raise ValueError(f"K={k} must be a multiple of block={block}")
    if w.dtype == np.int8:
        if scales is None:
            raise ValueError("int8 weights need per-channel `scales` [N]")
        scales = np.asarray(scales, np.float32).reshape(-1)
        if scales.shape != (n,) or not np.all(np.isfinite(scales)) or np.any(scales <= 0):
            raise ValueError(f"scales must be {n} finite positive values")
        vtype = VALUE_INT8
    else:
        if scales is not None:
            raise ValueError("scales are only for int8 weights")
        w = w.astype(np.float32)
        vtype = VALUE_FLOAT32
    kb = k // block
    blocks = w.reshape(n, kb, block)
    nz = np.any(blocks != 0, axis=2)  # [N, kb]
    lengths = nz.sum(axis=1)
    order = np.argsort(lengths, kind="stable") if sort_rows else np.arange(n)
    n_slices = -(-n // 16)
    perm = np.full(n_slices * 16, 0xFFFFFFFF, np.uint32)
    perm[:n] = order
    windowed = block == 1
    if windowed:
        # Slots grouped by 32-feature window: steps[s, w] = max count over the lanes.
        n_win = -(-k // 32)
        nzp = np.zeros((n, n_win * 32), bool)
        nzp[:, :k] = nz
        counts = nzp.reshape(n, n_win, 32).sum(axis=2)  # [N, W]
        lane_counts = np.zeros((n_slices * 16, n_win), np.int64)
        lane_counts[:n] = counts[order]
        steps = lane_counts.reshape(n_slices, 16, n_win).max(axis=1)  # [S, W]
        slice_len = steps.sum(axis=1)
    else:
        lane_len = np.zeros(n_slices * 16, np.int64)
        lane_len[:n] = lengths[order]
        slice_len = lane_len.reshape(n_slices, 16).max(axis=1)
    slice_ptr = np.concatenate([[0], np.cumsum(16 * slice_len)]).astype("<u4")
    nslots = int(slice_ptr[-1])
    cols = np.zeros(nslots, np.int64)
    vals = np.zeros((nslots, block), w.dtype)
    for lane in range(n):
        r = order[lane]
        sl, l = divmod(lane, 16)
        c = np.flatnonzero(nz[r])
        if windowed:
            win = c // 32
            step_start = np.concatenate([[0], np.cumsum(steps[sl])])[win]  # first step of each window
            rank = np.arange(c.size) - np.searchsorted(c // 32, win, side="left")
            slots = slice_ptr[sl] + l + 16 * (step_start + rank)
            cols[slots] = c % 32
        else:
            slots = slice_ptr[sl] + l + 16 * np.arange(c.size)
            cols[slots] = c
        vals[slots] = blocks[r, c]
    index_bytes = 1 if windowed else (2 if kb <= 65536 else 4)
    buf = bytearray()
    buf += MAGIC
    buf += struct.pack("<HBBIIIB", VERSION, vtype, block, n, k, nslots, index_bytes)
    buf += b"\0" * (32 - len(buf))
    buf += slice_ptr.tobytes()
    _pad16(buf)
    buf += perm.astype("<u4").tobytes()
    _pad16(buf)
    if windowed:
        buf += steps.astype(np.uint8).tobytes()
        _pad16(buf)
    buf += cols.astype({1: np.uint8, 2: "<u2", 4: "<u4"}[index_bytes]).tobytes()
    _pad16(buf)
    buf += vals.reshape(-1).astype("<f4" if vtype == VALUE_FLOAT32 else np.int8).tobytes()
    _pad16(buf)
    if vtype == VALUE_INT8:
        buf += scales.astype("<f4").tobytes()
        _pad16(buf)
    return bytes(buf)


def pack_options(activation="NONE", layout=1) -> bytes:
    """Packs the 8-byte custom options of a TFC_* op.

    Args:
        activation: Fused activation name: "NONE", "RELU", "RELU6" or "RELU_N1_TO_1".
            Defaults to "NONE".
        layout: 1 = output ``[P, N]`` (FULLY_CONNECTED without keep_num_dims), 0 = output
            keeps the input's leading dims. Defaults to 1.

    Returns:
        8 bytes.

    Example:
        >>> pack_options("RELU", layout=0)
        b'\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00'
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if layout not in (0, 1):
        raise ValueError(f"layout must be 0 or 1, got {layout}")
    return bytes([1, ACTIVATIONS[activation], layout, 0, 0, 0, 0, 0])
