"""Writes the test cases of the native kernel test driver (tfc_test_driver.c).

Every case packs a weight matrix with the real packer (``tfcompress/export/sparse_pack.py``) and
stores the expected output computed here with numpy (float64 math), independently of the C code:

* float32: ``y = act(x @ W.T + b)``; tolerance ``1e-5 * max(|x| @ |W|.T) + 1e-6``.
* int8: ``acc = b + (q_x - zp_x) @ q_W.T``, ``q_y = clamp(round(acc * s_x * scale[n] / s_y) + zp_y)``
  clamped to the activation's range; tolerance 1 quantization step (the kernels round in float32).
* fused inverted-residual blocks ("TFCF" records): int8 ones equal an emulation of the dense int8
  file (`fused_reference`, exact); float32 ones (`fused_f32_case`) a float64 reference within
  a first-order bound of float32 rounding (sums of n terms: n * eps32 * sum of |terms|, per stage).

Malformed cases (corrupted packed weights, options, shapes, types) must be rejected by Prepare
with a message containing a stated substring.

Usage (see tflite_export/README.md, "ARM / aarch64")::

    python tflite_export/test/make_cases.py /tmp/tfc_cases.bin
    qemu-aarch64 -cpu cortex-a53 /tmp/tfc_test_gcc /tmp/tfc_cases.bin
    python tflite_export/test/make_cases.py --bench /tmp/tfc_bench.bin    # FC 2048 x 2048 cases

Example:
    >>> import numpy as np
    >>> cases = build_cases(np.random.default_rng(0))
    >>> len(cases) > 100
    True
"""

from __future__ import annotations

import importlib.util
import pathlib
import struct
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load_export_module(name):
    """Loads tfcompress/export/<name>.py by path (numpy only): no TensorFlow import."""
    spec = importlib.util.spec_from_file_location(f"_tfc_{name}", ROOT / "tfcompress" / "export" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_pack = _load_export_module("sparse_pack")
_fpack = _load_export_module("sparse_fused")  # the "TFCI" params packer
ACT = {"NONE": (-np.inf, np.inf), "RELU": (0.0, np.inf), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}
ALLOC_MMAP_RO, ALLOC_ARENA_RW = 1, 2
T_F32, T_I32, T_I8 = 1, 2, 9


def _blob(b: bytes) -> bytes:
    return struct.pack("<I", len(b)) + b


def record(name, op, x, x_dims, blob, options, y_dims, y_want, tol, *, bias=None, bias_type=None,
           x_q=(1.0, 0), y_q=(1.0, 0), expect_fail=False, error="", misalign=False, runs=1,
           weights_alloc=ALLOC_MMAP_RO):
    """One driver record (format in tfc_test_driver.c)."""
    x_type = T_I8 if np.asarray(x).dtype == np.int8 else T_F32
    if bias_type is None:
        bias_type = 0 if bias is None else (T_I32 if x_type == T_I8 else T_F32)
    out = b"TFCC" + _blob(name.encode())
    out += bytes([op, int(expect_fail), x_type, int(misalign), runs, weights_alloc, bias_type, 0])
    out += struct.pack("<I", len(x_dims)) + struct.pack(f"<{len(x_dims)}I", *x_dims)
    out += struct.pack("<fifi", float(x_q[0]), int(x_q[1]), float(y_q[0]), int(y_q[1]))
    out += _blob(options) + _blob(blob)
    out += _blob(b"" if bias is None else np.ascontiguousarray(bias).tobytes())
    out += _blob(np.ascontiguousarray(x).tobytes())
    out += struct.pack("<I", len(y_dims)) + struct.pack(f"<{len(y_dims)}I", *y_dims)
    out += _blob(np.ascontiguousarray(y_want).tobytes())
    out += struct.pack("<f", float(tol)) + _blob(error.encode())
    return out


def sparse_matrix(rng, n, k, pattern, sparsity, dtype):
    """A [N, K] matrix whose zeros follow `pattern`; float32 or int8 (never -128)."""
    if dtype == "int8":
        w = rng.integers(-127, 128, size=(n, k)).astype(np.int8)
        w[w == 0] = 1
    else:
        w = rng.standard_normal((n, k)).astype(np.float32)
    if pattern == "unstructured":
        keep = rng.random((n, k)) >= sparsity
    elif pattern == "2:4":  # 2 of every 4 consecutive input features (K % 4 == 0)
        mag = np.abs(w.astype(np.float64)).reshape(n, k // 4, 4) + rng.random((n, k // 4, 4)) * 1e-3
        order = np.argsort(mag, axis=2)
        keep = np.ones((n, k // 4, 4), bool)
        np.put_along_axis(keep, order[:, :, :2], False, axis=2)
        keep = keep.reshape(n, k)
    elif pattern == "1x4":  # 4 consecutive input features of one output share zeros
        keep = np.repeat(rng.random((n, k // 4)) >= sparsity, 4, axis=1)
    elif pattern == "4x1":  # 4 consecutive output channels share zeros
        keep = np.repeat(rng.random((-(-n // 4), k)) >= sparsity, 4, axis=0)[:n]
    elif pattern == "dense":
        keep = np.ones((n, k), bool)
    elif pattern == "zero":
        keep = np.zeros((n, k), bool)
    else:
        raise ValueError(pattern)
    return np.where(keep, w, 0).astype(w.dtype)


def float_case(name, rng, op, x_dims, n, pattern, sparsity, activation, layout, *, block=1,
               sort_rows=True, with_bias=True, misalign=False, runs=1):
    """A float32 case and its numpy reference."""
    k = x_dims[-1]
    w = sparse_matrix(rng, n, k, pattern, sparsity, "float32")
    x = rng.standard_normal(x_dims).astype(np.float32)
    b = (rng.standard_normal(n) * 0.5).astype(np.float32) if with_bias else None
    x2 = x.reshape(-1, k).astype(np.float64)
    y = x2 @ w.astype(np.float64).T + (0.0 if b is None else b.astype(np.float64))
    lo, hi = ACT[activation]
    y = np.clip(y, lo, hi)
    mag = float((np.abs(x2) @ np.abs(w.astype(np.float64)).T).max()) if x2.size else 0.0
    tol = 1e-5 * mag + 1e-6
    y_dims = [x2.shape[0], n] if layout == 1 else list(x_dims[:-1]) + [n]
    blob = _pack.pack_sparse_weights(w, block=block, sort_rows=sort_rows)
    return record(name, op, x, x_dims, blob, _pack.pack_options(activation, layout), y_dims,
                  y.astype(np.float32), tol, bias=b, misalign=misalign, runs=runs)


def int8_reference(xq, wq, scales, bias, x_q, y_q, activation):
    """TFLite-style int8 FC: exact int64 accumulation, float64 requantization."""
    (sx, zx), (sy, zy) = x_q, y_q
    acc = (xq.astype(np.int64) - zx) @ wq.astype(np.int64).T
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    q = np.rint(acc * (sx * scales.astype(np.float64) / sy)) + zy
    lo_f, hi_f = ACT[activation]
    lo = -128 if not np.isfinite(lo_f) else max(-128, zy + int(np.rint(lo_f / sy)))
    hi = 127 if not np.isfinite(hi_f) else min(127, zy + int(np.rint(hi_f / sy)))
    lo = min(lo, hi)
    return np.clip(q, lo, hi).astype(np.int8), acc


def int8_case(name, rng, op, x_dims, n, pattern, sparsity, activation, layout, *, block=1,
              sort_rows=True, with_bias=True, zx=-7, zy=5, misalign=False, runs=1, extreme=None):
    """An int8 case (per-channel weight scales, zero points != 0) and its numpy reference.

    extreme: None, or the weight magnitude (127 or 128) of every stored weight, with inputs all
    -128 or 127: the bounds of the int16 products of the ARMv8.0 kernels."""
    k = x_dims[-1]
    wq = sparse_matrix(rng, n, k, pattern, sparsity, "int8")
    scales = (0.5 + rng.random(n)).astype(np.float32) * 0.01
    xq = rng.integers(-128, 128, size=x_dims).astype(np.int8)
    if extreme is not None:
        sign = np.where(rng.random(wq.shape) < 0.5, -1, 1)
        mag = np.where(sign < 0, extreme, 127)  # -128 only with extreme == 128
        wq = np.where(wq != 0, sign * mag, 0).astype(np.int8)
        xq = np.where(rng.random(x_dims) < 0.7, -128, 127).astype(np.int8)
    b = rng.integers(-3000, 3000, size=n).astype(np.int32) if with_bias else None
    sx = 0.05
    # output scale: the float outputs span about +-100 steps around zy (some clamp)
    _, acc = int8_reference(xq.reshape(-1, k), wq, scales, b, (sx, zx), (1.0, 0), "NONE")
    span = float(np.abs(acc * (sx * scales.astype(np.float64))).max()) if acc.size else 1.0
    sy = max(span / 110.0, 1e-3)
    y, _ = int8_reference(xq.reshape(-1, k), wq, scales, b, (sx, zx), (sy, zy), activation)
    y_dims = [y.shape[0], n] if layout == 1 else list(x_dims[:-1]) + [n]
    blob = _pack.pack_sparse_weights(wq, block=block, scales=scales, sort_rows=sort_rows)
    return record(name, op, xq, x_dims, blob, _pack.pack_options(activation, layout), y_dims, y,
                  1.0, bias=b, x_q=(sx, zx), y_q=(sy, zy), misalign=misalign, runs=runs)


# (rows, K, N, activation, op/layout): 1, 2-3, 4-15, 16, 64+ rows; K not a multiple of 32 / 64;
# N not a multiple of 16; every activation; FC layouts 0 / 1 and CONV_1X1 (NHWC).
SHAPES = [
    ((1, 70), 37, "NONE", "fc1"),
    ((2, 64), 16, "RELU", "fc1"),
    ((3, 45), 5, "RELU6", "fc1"),
    ((5, 100), 17, "RELU_N1_TO_1", "fc1"),
    ((3, 5, 32), 33, "NONE", "fc0"),        # 15 rows, rank 3, layout 0
    ((1, 4, 4, 200), 40, "RELU", "conv"),   # 16 rows, K > 128
    ((2, 4, 8, 96), 64, "RELU6", "conv"),   # 64 rows
    ((70, 257), 37, "NONE", "fc1"),         # 70 rows, K = 8 * 32 + 1
    ((5, 6, 5, 24), 40, "RELU_N1_TO_1", "conv"),  # 150 rows: two full 64-row tiles + 22
    ((2, 9, 130), 19, "RELU", "fc1"),       # rank 3 flattened by layout 1, 18 rows
    ((5, 8, 46), 21, "RELU6", "fc1"),       # 40 rows: a 48-row tail tile (3 x 16), K % 4 == 2
    ((1, 7, 7, 40), 24, "RELU", "conv"),    # 49 rows (a 7x7 map): one tile, 15 zero rows
    ((2, 57, 36), 20, "RELU6", "fc1"),      # 114 rows: a 64-row tile + 50
]
PATTERNS = [  # (pattern, block, sort_rows, sparsity)
    ("unstructured", 1, True, 0.9),
    ("2:4", 1, True, 0.5),
    ("1x4", 4, True, 0.75),
    ("1x4", 1, False, 0.75),   # 1x4 zeros packed per feature, channels in order
    ("4x1", 1, False, 0.8),
]


def _round4(dims, pattern, block):
    if pattern in ("2:4", "1x4") or block == 4:
        dims = list(dims)
        dims[-1] = -(-dims[-1] // 4) * 4
    return tuple(dims)


def build_cases(rng):
    """All driver records: (name, bytes) pairs, valid cases first."""
    cases = []
    for dtype in ("float32", "int8"):
        make = float_case if dtype == "float32" else int8_case
        for pattern, block, sort_rows, sparsity in PATTERNS:
            for i, (dims, n, act, kind) in enumerate(SHAPES):
                dims = _round4(dims, pattern, block)
                op = 2 if kind == "conv" else 1
                layout = 1 if kind == "fc1" else 0
                rows = int(np.prod(dims[:-1]))
                name = (f"{dtype}/{pattern}/B{block}{'' if sort_rows else '/inorder'}/"
                        f"{'conv' if op == 2 else 'fc'}/rows{rows}/K{dims[-1]}/N{n}/{act}")
                extra = {} if dtype == "float32" else {"zx": (-7, 0, 12)[i % 3], "zy": (5, -3, 0)[i % 3]}
                cases.append((name, make(name, rng, op, dims, n, pattern, sparsity, act, layout,
                                         block=block, sort_rows=sort_rows, with_bias=i % 3 != 2,
                                         **extra)))
        # more edge shapes, each with a few rows counts
        for rows in (1, 4, 16):
            for label, kdim, n, pattern in (("K1", 1, 3, "dense"), ("dense", 48, 20, "dense"),
                                            ("allzero", 40, 18, "zero")):
                name = f"{dtype}/{label}/fc/rows{rows}/K{kdim}/N{n}"
                cases.append((name, make(name, rng, 1, (rows, kdim), n, pattern, 0.0, "RELU", 1)))
        for rows in (1, 4) if dtype == "float32" else ():  # u32 block columns: K / 4 > 65536
            name = f"{dtype}/u32index/fc/rows{rows}/K262148/N3"
            cases.append((name, make(name, rng, 1, (rows, 262148), 3, "1x4", 0.9997, "NONE", 1, block=4)))
        for mag in (127, 128) if dtype == "int8" else ():  # int16 product bounds (ARMv8.0 kernels)
            for rows in (3, 64):
                name = f"{dtype}/extreme{mag}/conv/rows{rows}/K64/N20"
                cases.append((name, make(name, rng, 2, (1, 1, rows, 64), 20, "unstructured", 0.3, "NONE", 0,
                                         zx=0, extreme=mag)))
        for rows in (1, 7, 64):  # weights at an odd address (copied in Prepare); Prepare twice
            name = f"{dtype}/misaligned+reprepare/fc/rows{rows}/K72/N24"
            cases.append((name, make(name, rng, 1, (rows, 72), 24, "unstructured", 0.7, "RELU6", 1,
                                     misalign=True, runs=2)))
    cases += fused_cases(rng)
    cases += malformed_cases(rng)
    return cases


def _sections(blob):
    """Byte offsets of the sections of a packed TFCS blob (layout of sparse_pack.py)."""
    n, k, nslots = struct.unpack_from("<III", blob, 8)
    block, ib = blob[7], blob[20]
    pad = lambda v: (v + 15) // 16 * 16  # noqa: E731
    s = -(-n // 16)
    off_perm = pad(32 + 4 * (s + 1))
    off_steps = pad(off_perm + 64 * s)
    off_col = pad(off_steps + s * (-(-k // 32))) if ib == 1 else off_steps
    off_val = pad(off_col + ib * nslots)
    esz = 4 if blob[6] == 1 else 1
    off_sc = pad(off_val + esz * block * nslots)
    return {"perm": off_perm, "steps": off_steps, "col": off_col, "val": off_val, "scales": off_sc,
            "n": n, "k": k, "nslots": nslots}


def repeat_first_column(blob, sec):
    """Slots 0 and 16 (lane 0, steps 0 and 1) of a B = 4 blob name the same block column with
    non-zero weights: a feature stored twice, which Prepare must refuse (the re-laid kernels
    keep one weight per feature, the portable ones would add them)."""
    b = bytearray(blob)
    assert struct.unpack_from("<I", b, 32 + 4)[0] >= 32  # slice 0 has >= 2 steps
    struct.pack_into("<H", b, sec["col"] + 2 * 16, struct.unpack_from("<H", b, sec["col"])[0])
    fmt, esz = ("<b", 1) if b[6] == 9 else ("<f", 4)
    for slot in (0, 16):
        for i in range(4):
            struct.pack_into(fmt, b, sec["val"] + esz * (4 * slot + i), 1)
    return bytes(b)


def malformed_cases(rng):
    """Corrupted inputs that Prepare must reject, with the message it must give."""
    n, k, rows = 20, 40, 2
    w = sparse_matrix(rng, n, k, "unstructured", 0.6, "float32")
    x = rng.standard_normal((rows, k)).astype(np.float32)
    good = _pack.pack_sparse_weights(w)
    opts = _pack.pack_options("NONE", 1)
    sec = _sections(good)
    wq = sparse_matrix(rng, n, k, "unstructured", 0.6, "int8")
    good_q = _pack.pack_sparse_weights(wq, scales=np.full(n, 0.01, np.float32))
    sec_q = _sections(good_q)
    w4 = sparse_matrix(rng, n, k, "1x4", 0.6, "float32")
    good4 = _pack.pack_sparse_weights(w4, block=4)
    sec4 = _sections(good4)
    xq = rng.integers(-128, 128, (rows, k)).astype(np.int8)
    big_q = _pack.pack_sparse_weights(sparse_matrix(rng, 3, 65540, "1x4", 0.999, "int8"), block=4,
                                      scales=np.full(3, 0.01, np.float32))
    y0 = np.zeros((rows, n), np.float32)

    def patch(blob, off, data):
        b = bytearray(blob)
        b[off:off + len(data)] = data
        return bytes(b)

    perm = np.frombuffer(good, "<u4", 16 * 2, sec["perm"]).copy()
    empty_lane = int(np.flatnonzero(perm == 0xFFFFFFFF)[0])  # lane 20 % 16 .. of slice 1
    slice1 = struct.unpack_from("<I", good, 32 + 4)[0]
    bad = [  # (name, blob, options, x, error substring, extra)
        ("bad magic", patch(good, 0, b"XXXX"), opts, x, "bad magic", {}),
        ("version 2", patch(good, 4, b"\x02\x00"), opts, x, "unsupported version", {}),
        ("truncated", good[:-16], opts, x, "byte length does not match", {}),
        ("one byte more", good + b"\0", opts, x, "byte length does not match", {}),
        ("reserved byte", patch(good, 25, b"\x01"), opts, x, "reserved header bytes", {}),
        ("block 3", patch(good, 7, b"\x03"), opts, x, "block must be 1 or 4", {}),
        ("perm twice", patch(good, sec["perm"] + 4, struct.pack("<I", perm[0])), opts, x,
         "perm lists an output channel twice", {}),
        ("perm out of range", patch(good, sec["perm"], struct.pack("<I", 999)), opts, x,
         "perm entry out of range", {}),
        ("window offset", patch(good, sec["col"], b"\x28"), opts, x, "window offset out of range", {}),
        ("window steps", patch(good, sec["steps"], b"\x21"), opts, x, "more than 32 steps", {}),
        ("nan weight", patch(good, sec["val"], struct.pack("<f", float("nan"))), opts, x,
         "non-finite float value", {}),
        ("inf weight", patch(good, sec["val"] + 4, struct.pack("<f", float("inf"))), opts, x,
         "non-finite float value", {}),
        ("empty lane value", patch(good, sec["val"] + 4 * (slice1 + empty_lane - 16),
                                   struct.pack("<f", 1.0)), opts, x, "empty lane holds non-zero", {}),
        ("column out of range", patch(good4, sec4["col"], struct.pack("<H", 0xFFFF)), opts, x,
         "column index out of range", {}),
        ("feature twice in a lane", repeat_first_column(good4, sec4), opts, x, "non-zero value twice", {}),
        ("options version", good, bytes([2, 0, 1, 0, 0, 0, 0, 0]), x, "custom options", {}),
        ("options activation", good, bytes([1, 4, 1, 0, 0, 0, 0, 0]), x, "custom options", {}),
        ("options length", good, opts[:7], x, "custom options", {}),
        ("K mismatch", good, opts, rng.standard_normal((rows, k + 1)).astype(np.float32),
         "input last dim", {}),
        ("int8 input, float weights", good, opts, xq, "input type and packed value_type differ", {}),
        ("int8 zero scale", patch(good_q, sec_q["scales"], struct.pack("<f", 0.0)), opts, xq,
         "per-channel scales", {}),
        ("int8 K > 65536", big_q, opts, np.zeros((1, 65540), np.int8), "int8 packed weights need K <= 65536",
         {}),
        ("bias length", good, opts, x, "bias must hold exactly", {"bias": np.zeros(n - 1, np.float32)}),
        ("bias type", good, opts, x, "bias must be float32",
         {"bias": np.zeros(n, np.int32), "bias_type": T_I32}),
        ("weights not constant", good, opts, x, "constant tensor", {"weights_alloc": ALLOC_ARENA_RW}),
        ("conv rank 2", good, bytes([1, 0, 0, 0, 0, 0, 0, 0]), x, "NHWC", {"op": 2}),
    ]
    out = []
    for name, blob, o, xx, err, extra in bad:
        op = extra.pop("op", 1)
        xq_params = ((0.05, 0), (0.1, 0)) if xx.dtype == np.int8 else ((1.0, 0), (1.0, 0))
        full = f"malformed/{name}"
        out.append((full, record(full, op, xx, xx.shape, blob, o, [rows, n], y0, 0.0,
                                 x_q=xq_params[0], y_q=xq_params[1], expect_fail=True, error=err,
                                 **extra)))
    return out


# ------------------------------------------------------------ fused inverted residual (TFCF records)

F32 = np.float32


def _act_range_f32(act, sy, zp):
    """tfc_act_range of tfc_fused.c: the quantized clamp of an activation (float32 division)."""
    lo_f, hi_f = ACT[act]
    lo, hi = -128, 127
    if np.isfinite(lo_f):
        lo = max(lo, zp + int(np.rint(F32(lo_f) / F32(sy))))
    if np.isfinite(hi_f):
        hi = min(hi, zp + int(np.rint(F32(hi_f) / F32(sy))))
    return min(lo, hi), hi


def _requant_f32(acc, mult, zp, lo, hi):
    """XNNPACK's fp32 requantization, emulated exactly in numpy float32: float32(acc) * m (one
    float32 product), rounded half to even, + zero point, clamped."""
    q = np.rint(acc.astype(np.int64).astype(F32) * mult.astype(F32)).astype(np.int64) + zp
    return np.clip(q, lo, hi)


def _stem_acc(xc, w, b, ss, pads, out_hw):
    """int64 accumulators of a 3x3 conv, stride ss, over xc [Hi, Wi, Ci] (input zero point already
    subtracted: padding taps add 0), weights [N, 3, 3, Ci], bias [N]; output [He, We, N]."""
    (spt, spl), (He, We) = pads, out_hw
    Hi, Wi, Ci = xc.shape
    xp = np.zeros((Hi + 4, Wi + 4, Ci), np.int64)
    xp[spt:spt + Hi, spl:spl + Wi] = xc
    acc = np.zeros((He, We, w.shape[0]), np.int64) + b
    for kh in range(3):
        for kw in range(3):
            tap = xp[kh:kh + ss * (He - 1) + 1:ss, kw:kw + ss * (We - 1) + 1:ss]
            acc += np.einsum("hwc,nc->hwn", tap, w[:, kh, kw, :].astype(np.int64))
    return acc


def _conv3x3(x, w, b, ss, pads, out_hw):
    """float64 3x3 conv, stride ss, of x [Hi, Wi, Ci] zero-padded by pads = (top, left), weights
    [N, 3, 3, Ci], bias [N]; output [He, We, N]."""
    (spt, spl), (He, We) = pads, out_hw
    Hi, Wi, Ci = x.shape
    xp = np.zeros((Hi + 4, Wi + 4, Ci))
    xp[spt:spt + Hi, spl:spl + Wi] = x
    y = np.zeros((He, We, w.shape[0])) + b
    for kh in range(3):
        for kw in range(3):
            y += xp[kh:kh + ss * (He - 1) + 1:ss, kw:kw + ss * (We - 1) + 1:ss] @ w[:, kh, kw, :].T
    return y


def fused_reference(x, blk):
    """The block's int8 output, layer by layer as the dense int8 file computes it on XNNPACK:
    exact integer accumulators, float32 multipliers s_in * s_w / s_out (in that order), products
    rounded half to even, XNNPACK's integer qs8 ADD.  Pure numpy, no code of the C library."""
    sx, zx = blk["x_q"]
    h = x.astype(np.int64)[0]  # [H, W, Cin]
    if blk.get("stem") is not None:  # the first conv: 3x3, stride ss over the image, as the expand
        w, sc, b, ss, pads, out_hw = blk["stem"]
        s_e, z_e = blk["q_e"]
        acc = _stem_acc(h - zx, w, b, ss, pads, out_hw)
        m = (F32(sx) * sc.astype(F32)) / F32(s_e)
        h = _requant_f32(acc, m, z_e, *_act_range_f32(blk["acts"][0], s_e, z_e))
    elif blk["expand"] is not None:
        w, sc, b = blk["expand"]
        s_e, z_e = blk["q_e"]
        acc = np.einsum("hwk,nk->hwn", h - zx, w.astype(np.int64)) + b
        m = (F32(sx) * sc.astype(F32)) / F32(s_e)
        h = _requant_f32(acc, m, z_e, *_act_range_f32(blk["acts"][0], s_e, z_e))
    s_in, z_in = blk["q_e"] if blk["expand"] is not None or blk.get("stem") is not None else blk["x_q"]
    H, W, C = h.shape
    st, (pt, pl), (Ho, Wo) = blk["stride"], blk["pad"], blk["out_hw"]
    dw, dws, db = blk["dw"]
    hp = np.zeros((H + 4, W + 4, C), np.int64)  # padding taps add 0
    hp[pt:pt + H, pl:pl + W] = h - z_in
    acc = np.zeros((Ho, Wo, C), np.int64) + db
    for kh in range(3):
        for kw in range(3):
            acc += hp[kh:kh + st * (Ho - 1) + 1:st, kw:kw + st * (Wo - 1) + 1:st] * dw[kh, kw].astype(np.int64)
    s_d, z_d = blk["q_d"]
    m = (F32(s_in) * dws.astype(F32)) / F32(s_d)
    d = _requant_f32(acc, m, z_d, *_act_range_f32(blk["acts"][1], s_d, z_d))
    w, sc, b = blk["project"]
    s_p, z_p = blk["q_p"]
    acc = np.einsum("hwk,nk->hwn", d - z_d, w.astype(np.int64)) + b
    m = (F32(s_d) * sc.astype(F32)) / F32(s_p)
    p = _requant_f32(acc, m, z_p, -128, 127)
    if not blk["residual"]:
        return p.astype(np.int8)[None]
    # XNNPACK's qs8 add (xnn_init_qs8_add_minmax_scalar_params / the scalar ukernel)
    sy, zy = blk["y_q"]
    ra, rb = F32(s_p) / F32(sy), F32(sx) / F32(sy)
    e = int(np.frexp(max(ra, rb))[1]) - 1  # floor(log2): the float32 exponent
    shift = 20 - e
    ma, mb = int(np.rint(np.ldexp(np.float64(ra), shift))), int(np.rint(np.ldexp(np.float64(rb), shift)))
    bias = (1 << (shift - 1)) - ma * z_p - mb * zx
    a = (bias + p * ma + x.astype(np.int64)[0] * mb) >> shift
    return (np.clip(a, -128 - zy, 127 - zy) + zy).astype(np.int8)[None]


def _q_weights(rng, n, k, pattern, sparsity, lo=-127):
    w = rng.integers(lo, 128, size=(n, k)).astype(np.int8)
    w[w == 0] = 1
    if pattern == "1x4":
        keep = np.repeat(rng.random((n, -(-k // 4))) >= sparsity, 4, axis=1)[:, :k]
    else:
        keep = rng.random((n, k)) >= sparsity
    return np.where(keep, w, 0).astype(np.int8)


def _scales_for(acc_real_max, target):
    """Per-channel weight scales that put the layer's real outputs at about +-target."""
    m = np.asarray(acc_real_max, np.float64)
    return np.where(m > 1e-6, target / np.maximum(m, 1e-6), 0.01).astype(np.float32)  # all-zero rows: any scale


def fused_case(name, rng, hw, cin, ce, co, stride, *, expand=True, residual=False, same=True,
               pattern="1x4", acts=("RELU6", "RELU6"), zx=-7, zy=5, runs=1, params_misalign=False,
               wmin=-127, sparsity=0.8, extreme_dw=False, stem=False, crop=(0, 0)):
    """A TFC_SPARSE_INVERTED_RESIDUAL record: random int8 block, scales chosen so that every
    stage spans most of its int8 range, and the exact output of `fused_reference`.

    extreme_dw: depthwise weights all -128 / 127 and inputs all -128 / 127 (the int16 bounds of
    the NEON depthwise: two taps' products -128 * -128 would overflow an int16 pair sum).
    stem: the expand is a dense 3x3 stride-2 SAME conv over an image of `hw` and `cin` channels
    (flag bit 2); the block runs on its ceil(hw / 2) output.
    crop: (rows, columns) fewer output rows / columns than `same` gives (the op computes the
    top-left part of the map: its kernels must stop at Ho / Wo, not at the input's end)."""
    if stem:
        return _stem_case(name, rng, hw, cin, ce, co, stride, acts=acts, zx=zx, runs=runs)
    H, W = hw
    if same:
        Ho, Wo = -(-H // stride), -(-W // stride)
        pt, pl = max((Ho - 1) * stride + 3 - H, 0) // 2, max((Wo - 1) * stride + 3 - W, 0) // 2
    else:  # Keras' ZeroPadding2D((0, 1)) + VALID (stride 2) as keras.applications.MobileNetV2
        Ho, Wo, pt, pl = (H + 1 - 3) // stride + 1, (W + 1 - 3) // stride + 1, 0, 0
    Ho, Wo = Ho - crop[0], Wo - crop[1]
    sx = 0.05
    x = rng.integers(-128, 128, size=(1, H, W, cin)).astype(np.int8)
    block = 4 if pattern == "1x4" else 1
    blk = {"x_q": (sx, zx), "stride": stride, "pad": (pt, pl), "out_hw": (Ho, Wo), "residual": residual,
           "acts": acts}
    h = x.astype(np.int64)[0] - zx
    if expand:
        we = _q_weights(rng, ce, cin, pattern, sparsity, wmin)
        be = rng.integers(-2000, 2000, ce).astype(np.int32)
        acc = np.einsum("hwk,nk->hwn", h, we.astype(np.int64)) + be
        sce = _scales_for(np.abs(acc).reshape(-1, ce).max(0) * sx, 8.0)
        q_e = (6.0 / 255.0, -128) if acts[0] == "RELU6" else (16.0 / 255.0, 3)
        blk["expand"] = (we, sce, be)
        blk["q_e"] = q_e
        s_in = q_e[0]
        # the expanded activations (the reference's own first stage), to size the next scales
        m = (F32(sx) * sce) / F32(q_e[0])
        he = _requant_f32(acc, m, q_e[1], *_act_range_f32(acts[0], q_e[0], q_e[1])) - q_e[1]
    else:
        assert cin == ce
        blk["expand"] = None
        blk["q_e"] = (sx, zx)
        s_in, he = sx, h
    dw = rng.integers(-127, 128, size=(3, 3, ce)).astype(np.int8)
    if extreme_dw:
        assert not expand  # the depthwise input is x itself
        dw = np.where(rng.random((3, 3, ce)) < 0.7, -128, 127).astype(np.int8)
        x[...] = np.where(rng.random(x.shape) < 0.7, -128, 127)
        he = x.astype(np.int64)[0] - zx
    db = rng.integers(-500, 500, ce).astype(np.int32)
    dmax = (np.abs(he).reshape(-1, ce).max(0) * np.abs(dw.astype(np.int64)).sum((0, 1)) + np.abs(db)) * s_in
    dws = _scales_for(dmax / 3.0, 8.0)  # sums of 9 signed taps rarely reach the bound
    blk["dw"] = (dw, dws, db)
    blk["q_d"] = q_d = (6.0 / 255.0, -128) if acts[1] == "RELU6" else (12.0 / 255.0, -20)
    wp = _q_weights(rng, co, ce, pattern, sparsity, wmin)
    bp = rng.integers(-2000, 2000, co).astype(np.int32)
    pmax = 127.0 * q_d[0] * np.abs(wp.astype(np.int64)).sum(1) / 4.0
    scp = _scales_for(pmax, 3.0)
    blk["project"] = (wp, scp, bp)
    blk["q_p"] = q_p = (12.0 / 255.0, 3)
    y_q = (20.0 / 255.0, zy) if residual else q_p
    blk["y_q"] = y_q
    y = fused_reference(x, blk)
    params = _fpack.pack_fused_params(
        in_hw=(H, W), c_in=cin, c_exp=ce, c_out=co, out_hw=(Ho, Wo), stride=stride, pad_tl=(pt, pl),
        has_expand=expand, has_residual=residual, acts=(acts[0] if expand else "NONE", acts[1], "NONE"),
        q_exp=blk["q_e"], q_dw=q_d, q_proj=q_p, dw_weights=dw, dw_scales=dws)
    ew = _pack.pack_sparse_weights(we, block=block, scales=sce) if expand else b""
    eb = be.tobytes() if expand else b""
    pw = _pack.pack_sparse_weights(wp, block=block, scales=scp)
    return fused_record(name, x, params, ew, eb, db.tobytes(), pw, bp.tobytes(), (sx, zx), y_q, y,
                        runs=runs, params_misalign=params_misalign)


def _stem_case(name, rng, hw, ci, ce, co, stride, *, acts, zx, runs):
    """fused_case with stem=True: image [1, Hi, Wi, ci] -> 3x3 s2 conv (dense, ce) -> depthwise
    (stride, SAME) -> project co."""
    Hi, Wi = hw
    He, We = -(-Hi // 2), -(-Wi // 2)
    spt, spl = max((He - 1) * 2 + 3 - Hi, 0) // 2, max((We - 1) * 2 + 3 - Wi, 0) // 2
    Ho, Wo = -(-He // stride), -(-We // stride)
    pt, pl = max((Ho - 1) * stride + 3 - He, 0) // 2, max((Wo - 1) * stride + 3 - We, 0) // 2
    sx = 0.05
    x = rng.integers(-128, 128, size=(1, Hi, Wi, ci)).astype(np.int8)
    ws = rng.integers(-127, 128, size=(ce, 3, 3, ci)).astype(np.int8)
    bs = rng.integers(-2000, 2000, ce).astype(np.int32)
    acc = _stem_acc(x.astype(np.int64)[0] - zx, ws, bs, 2, (spt, spl), (He, We))
    sce = _scales_for(np.abs(acc).reshape(-1, ce).max(0) * sx, 8.0)  # ReLU6 outputs over most of int8
    q_e = (6.0 / 255.0, -128)
    he = _requant_f32(acc, (F32(sx) * sce) / F32(q_e[0]), q_e[1], *_act_range_f32(acts[0], q_e[0], q_e[1])) - q_e[1]
    blk = {"x_q": (sx, zx), "stride": stride, "pad": (pt, pl), "out_hw": (Ho, Wo), "residual": False,
           "acts": acts, "expand": None, "q_e": q_e, "stem": (ws, sce, bs, 2, (spt, spl), (He, We))}
    dw = rng.integers(-127, 128, size=(3, 3, ce)).astype(np.int8)
    db = rng.integers(-500, 500, ce).astype(np.int32)
    dmax = (np.abs(he).reshape(-1, ce).max(0) * np.abs(dw.astype(np.int64)).sum((0, 1)) + np.abs(db)) * q_e[0]
    dws = _scales_for(dmax / 3.0, 8.0)
    blk["dw"] = (dw, dws, db)
    blk["q_d"] = q_d = (6.0 / 255.0, -128)
    wp = _q_weights(rng, co, ce, "1x4", 0.8)
    bp = rng.integers(-2000, 2000, co).astype(np.int32)
    scp = _scales_for(127.0 * q_d[0] * np.abs(wp.astype(np.int64)).sum(1) / 4.0, 3.0)
    blk["project"] = (wp, scp, bp)
    blk["q_p"] = q_p = (12.0 / 255.0, 3)
    blk["y_q"] = q_p
    y = fused_reference(x, blk)
    kp = -(-9 * ci // 4) * 4
    params = _fpack.pack_fused_params(
        in_hw=(He, We), c_in=kp, c_exp=ce, c_out=co, out_hw=(Ho, Wo), stride=stride, pad_tl=(pt, pl),
        has_expand=True, has_residual=False, acts=(acts[0], acts[1], "NONE"), q_exp=q_e, q_dw=q_d,
        q_proj=q_p, dw_weights=dw, dw_scales=dws,
        stem={"hw": (Hi, Wi), "channels": ci, "stride": 2, "pad_tl": (spt, spl)})
    w2d = np.zeros((ce, kp), np.int8)
    w2d[:, :9 * ci] = ws.reshape(ce, -1)
    ew = _pack.pack_sparse_weights(w2d, block=4, scales=sce)
    pw = _pack.pack_sparse_weights(wp, block=4, scales=scp)
    return fused_record(name, x, params, ew, bs.tobytes(), db.tobytes(), pw, bp.tobytes(), (sx, zx), q_p, y,
                        runs=runs)


def fused_record(name, x, params, ew, eb, db, pw, pb, x_q, y_q, y, *, runs=1, params_misalign=False,
                 expect_fail=False, error="", options=bytes([1, 0, 0, 0, 0, 0, 0, 0]), tol=0.0):
    """One "TFCF" driver record (format in tfc_test_driver.c): an int8 block (x int8, compared
    exactly: `tol` must be 0) or a float32 one (x float32, max |got - want| <= `tol`)."""
    _, H, W, cin = x.shape
    x_type = T_F32 if x.dtype == np.float32 else T_I8
    assert x_type == T_F32 or tol == 0.0
    out = b"TFCF" + _blob(name.encode())
    out += bytes([int(expect_fail), int(len(ew) > 0), runs, int(params_misalign), x_type, 0, 0, 0])
    out += struct.pack("<3I", H, W, cin) + struct.pack("<fifi", float(x_q[0]), int(x_q[1]), float(y_q[0]), int(y_q[1]))
    out += _blob(options) + _blob(np.ascontiguousarray(x).tobytes())
    for b in (ew, eb, params, db, pw, pb):
        out += _blob(b)
    out += struct.pack("<3I", *y.shape[1:]) + _blob(np.ascontiguousarray(y).tobytes())
    out += struct.pack("<f", float(tol)) + _blob(error.encode())
    return out


def fused_f32_reference(x, blk):
    """A float32 block in float64 numpy, independently of the C code: expand 1x1 + act ->
    zero-padded 3x3 depthwise (stride, pad_tl; taps past the map read 0) + act -> project 1x1
    (linear) -> [+ x].  Returns (y [1, Ho, Wo, Co] float64, err): a first-order bound of
    |float32 result - y| in any summation order: a stage's float32 sum of n terms is off by at
    most n * eps32 * (its sum of |terms|), the earlier stages' errors pass on through |weights|
    (the activations are 1-Lipschitz), the residual add rounds once more."""
    eps = float(np.finfo(np.float32).eps)
    st, (pt, pl), (Ho, Wo) = blk["stride"], blk["pad"], blk["out_hw"]

    def dwconv(h, w, b):
        H, W, C = h.shape
        hp = np.zeros((max(H + pt, st * (Ho - 1) + 3), max(W + pl, st * (Wo - 1) + 3), C))
        hp[pt:pt + H, pl:pl + W] = h
        d = np.zeros((Ho, Wo, C)) + b
        for kh in range(3):
            for kw in range(3):
                d += hp[kh:kh + st * (Ho - 1) + 1:st, kw:kw + st * (Wo - 1) + 1:st] * w[kh, kw]
        return d

    x0 = x[0].astype(np.float64)
    h, err = x0, np.zeros_like(x0)
    if blk.get("stem") is not None:  # the first conv: 3x3, stride ss over the image, as the expand
        w, b, ss, pads, out_hw = blk["stem"]
        w, b = w.astype(np.float64), b.astype(np.float64)
        err = (9 * w.shape[3] + 1) * eps * _conv3x3(np.abs(h), np.abs(w), np.abs(b), ss, pads, out_hw)
        h = np.clip(_conv3x3(h, w, b, ss, pads, out_hw), *ACT[blk["acts"][0]])
    elif blk["expand"] is not None:
        w, b = (v.astype(np.float64) for v in blk["expand"])
        err = (w.shape[1] + 1) * eps * (np.abs(h) @ np.abs(w).T + np.abs(b))
        h = np.clip(h @ w.T + b, *ACT[blk["acts"][0]])
    dw, db = (v.astype(np.float64) for v in blk["dw"])
    err = dwconv(err, np.abs(dw), 0.0) + 10 * eps * dwconv(np.abs(h), np.abs(dw), np.abs(db))
    d = np.clip(dwconv(h, dw, db), *ACT[blk["acts"][1]])
    w, b = (v.astype(np.float64) for v in blk["project"])
    err = err @ np.abs(w).T + (w.shape[1] + 1) * eps * (np.abs(d) @ np.abs(w).T + np.abs(b))
    y = d @ w.T + b
    if blk["residual"]:
        y = y + x0
        err = err + eps * np.abs(y)
    return y[None], float(err.max())


def fused_f32_case(name, rng, hw, cin, ce, co, stride, *, expand=True, residual=False, same=True,
                   pattern="unstructured", acts=("RELU6", "RELU6"), sparsity=0.7, runs=1, params_misalign=False,
                   stem=False, crop=(0, 0)):
    """A float32 TFC_SPARSE_INVERTED_RESIDUAL record (params flag bit 3: float32 x / y / biases /
    depthwise weights, float32 TFCS 1x1s, no scale section) and its float64 reference
    (`fused_f32_reference`); tolerance: its rounding-error bound + 1e-6 (float32 sums in any order,
    the expected output's own rounding to float32).
    stem: the expand is a dense 3x3 stride-2 SAME conv over an image of `hw` and `cin` channels
    (flag bit 2; the block then has no expand of its own, Cin = 9 cin rounded up to 4).
    crop: as fused_case."""
    if stem:
        Hi, Wi = hw
        H, W = -(-Hi // 2), -(-Wi // 2)
        spt, spl = max((H - 1) * 2 + 3 - Hi, 0) // 2, max((W - 1) * 2 + 3 - Wi, 0) // 2
        ws = (rng.standard_normal((ce, 3, 3, cin)) * (2.0 / np.sqrt(9 * cin))).astype(np.float32)
        bs = (rng.standard_normal(ce) * 0.5).astype(np.float32)
        hw, expand = (H, W), False
    H, W = hw
    if same:
        Ho, Wo = -(-H // stride), -(-W // stride)
        pt, pl = max((Ho - 1) * stride + 3 - H, 0) // 2, max((Wo - 1) * stride + 3 - W, 0) // 2
    else:  # Keras' ZeroPadding2D((0, 1)) + VALID (stride 2): no top / left padding
        Ho, Wo, pt, pl = (H + 1 - 3) // stride + 1, (W + 1 - 3) // stride + 1, 0, 0
    Ho, Wo = Ho - crop[0], Wo - crop[1]
    block = 4 if pattern == "1x4" else 1
    x = rng.standard_normal((1,) + ((Hi, Wi) if stem else (H, W)) + (cin,)).astype(np.float32)
    blk = {"stride": stride, "pad": (pt, pl), "out_hw": (Ho, Wo), "residual": residual, "acts": acts}
    if stem:
        blk["stem"], blk["expand"] = (ws, bs, 2, (spt, spl), (H, W)), None
    elif expand:  # weights sized so the expanded values span a few units (ReLU6 clamps some)
        we = sparse_matrix(rng, ce, cin, pattern, sparsity, "float32") * F32(3.0 / np.sqrt(cin * (1 - sparsity)))
        be = (rng.standard_normal(ce) * 0.5).astype(np.float32)
        blk["expand"] = (we, be)
    else:
        assert cin == ce
        blk["expand"] = None
    dw = (rng.standard_normal((3, 3, ce)) * 0.5).astype(np.float32)
    db = (rng.standard_normal(ce) * 0.5).astype(np.float32)
    wp = sparse_matrix(rng, co, ce, pattern, sparsity, "float32") * F32(1.0 / np.sqrt(ce * (1 - sparsity)))
    bp = (rng.standard_normal(co) * 0.5).astype(np.float32)
    blk["dw"], blk["project"] = (dw, db), (wp, bp)
    y, err = fused_f32_reference(x, blk)
    kp = -(-9 * cin // 4) * 4
    params = _fpack.pack_fused_params(
        in_hw=(H, W), c_in=kp if stem else cin, c_exp=ce, c_out=co, out_hw=(Ho, Wo), stride=stride,
        pad_tl=(pt, pl), has_expand=expand or stem, has_residual=residual,
        acts=(acts[0] if expand or stem else "NONE", acts[1], "NONE"), q_exp=(0, 0), q_dw=(0, 0), q_proj=(0, 0),
        dw_weights=dw, dw_scales=None, dtype="float32",
        stem={"hw": (Hi, Wi), "channels": cin, "stride": 2, "pad_tl": (spt, spl)} if stem else None)
    if stem:  # the conv's weights as a dense 1x1 over the 9 cin taps, zero columns to Kp
        we, be = np.zeros((ce, kp), np.float32), bs
        we[:, :9 * cin] = ws.reshape(ce, -1)
    ew = _pack.pack_sparse_weights(we, block=block) if expand or stem else b""
    eb = be.tobytes() if expand or stem else b""
    pw = _pack.pack_sparse_weights(wp, block=block)
    return fused_record(name, x, params, ew, eb, db.tobytes(), pw, bp.tobytes(), (0.0, 0), (0.0, 0),
                        y.astype(np.float32), runs=runs, params_misalign=params_misalign, tol=err + 1e-6)


def fused_strips(hw, stride, same=True, crop=(0, 0)):
    """(expand rows, project rows) tfc_fused.c sets its two 1x1 plans up for: strips of SH output
    rows, the smallest SH with SH * Wo a multiple of 16 and <= 128, else SH * Wo <= 64 where a
    row fits (the kernel picks depend on these row counts)."""
    H, W = hw
    Ho, Wo = (-(-H // stride), -(-W // stride)) if same else ((H - 2) // stride + 1, (W - 2) // stride + 1)
    Ho, Wo = Ho - crop[0], Wo - crop[1]
    sh = next((k for k in range(1, 128 // Wo + 1) if k * Wo % 16 == 0), 1 if Wo >= 64 else 64 // Wo)
    sh = min(sh, Ho)
    return stride * sh * W, sh * Wo


# (label, (H, W), Cin, Ce, Co, stride, options): strides 1 / 2, residual, no expand, odd sizes and
# channel counts, 1x4 blocks and unstructured, strips of 1 to 4+ rows, 1x1s below 16 rows (tbl kernels)
FUSED = [
    ("s1_residual_strips", (13, 16), 16, 64, 16, 1, dict(residual=True)),
    ("s2_keras_pad_even", (12, 12), 24, 72, 32, 2, dict(same=False)),
    ("s2_same_odd", (9, 7), 12, 40, 20, 2, {}),
    ("no_expand", (10, 10), 32, 32, 16, 1, dict(expand=False)),
    ("wide_residual", (5, 70), 8, 48, 8, 1, dict(residual=True)),
    ("odd_channels_unstructured", (7, 9), 13, 37, 13, 1, dict(residual=True, pattern="unstructured")),
    ("s2_larger_map", (20, 21), 16, 96, 24, 2, dict(acts=("RELU", "RELU"))),
    ("tiny_map_tbl", (3, 3), 8, 24, 8, 1, dict(residual=True, acts=("NONE", "RELU6"))),
    ("map_7x7", (7, 7), 16, 48, 16, 1, dict(residual=True)),  # 49-row strips (MobileNetV2's last blocks)
    ("s2_tiny_tbl", (4, 5), 16, 48, 12, 2, {}),
    ("weights_min_int8", (6, 11), 16, 32, 16, 1, dict(residual=True, wmin=-128, sparsity=0.5)),
    ("no_expand_dwmin128", (5, 6), 32, 32, 16, 1, dict(expand=False, extreme_dw=True, zx=0)),
    ("no_expand_residual_reprepare", (8, 8), 24, 24, 24, 1,
     dict(expand=False, residual=True, runs=2, params_misalign=True)),
    # the first conv (3x3 stride 2 over an image of 3 / 1 channels) fused as the expand
    ("stem_odd", (19, 23), 3, 32, 16, 1, dict(stem=True, runs=2)),
    ("stem_s2_1ch", (9, 8), 1, 16, 8, 2, dict(stem=True)),
    # ReLU with a non-zero output zero point: the clamping variants of the sdot 1x1 and of the
    # stride-1 depthwise asm loop (ReLU6 outputs with zero point -128 take the ones without)
    ("s1_relu_clamp", (6, 13), 16, 48, 16, 1, dict(residual=True, acts=("RELU", "RELU"))),
    # outputs that stop short of the input (Wo < W - 2): the stride-1 sdot depthwise loop ran to
    # the row's end and wrote past its strip (session 17's aarch64 fuzz finding); with a clamp too
    ("s1_cropped_output", (6, 40), 16, 32, 16, 1, dict(crop=(2, 31))),
    ("s1_cropped_clamp", (5, 30), 16, 48, 8, 1, dict(crop=(1, 20), acts=("RELU", "RELU"))),
    ("s2_cropped_output", (9, 20), 16, 48, 8, 2, dict(crop=(1, 4))),
]


# float32 blocks (params flag bit 3), same fields as FUSED: float32 1x1 plans (CSR >= 16 rows,
# tbl / block4 below), the vector-extension depthwise (16 lanes; Ce = 40 / 38 leave a partial group)
FUSED_F32 = [
    ("s1_residual_strips", (13, 16), 16, 64, 16, 1, dict(residual=True)),          # 13 strips of 16 rows
    ("s2_keras_pad", (20, 22), 24, 72, 32, 2, dict(same=False)),                   # PAD (0, 1) + VALID, 2 strips
    ("s2_same_odd_ce40", (9, 7), 12, 40, 20, 2, {}),                               # 2 groups of 16 + 8 lanes
    ("no_expand", (10, 10), 32, 32, 16, 1, dict(expand=False, acts=("NONE", "RELU"))),
    ("odd_ce38_residual", (11, 9), 12, 38, 12, 1, dict(residual=True)),            # 2 x 16 + 6 lanes, strips 7 + 4
    ("wide_70", (5, 70), 8, 48, 8, 1, dict(residual=True, acts=("RELU", "RELU_N1_TO_1"))),  # 70-row strips
    ("tiny_tbl", (3, 3), 8, 24, 8, 1, dict(residual=True, acts=("RELU6", "NONE"))),  # 9-row 1x1s
    ("tiny_block4", (3, 5), 8, 24, 8, 1, dict(residual=True, pattern="1x4", acts=("NONE", "RELU6"))),
    ("no_expand_residual_reprepare", (8, 8), 24, 24, 24, 1,
     dict(expand=False, residual=True, runs=2, params_misalign=True)),
    # 2 x 7 map: the project plan is set up for one 14-row strip (1-15 rows: the f32j kernel on
    # aarch64), and at 2+ threads the block runs phased, its project on pixel ranges of 7 rows:
    # the odd row count session 10's aarch64 fuzzing crashed on (the 1-row table was missing)
    ("no_expand_phased_odd_rows", (2, 7), 32, 32, 16, 1, dict(expand=False, acts=("NONE", "RELU6"))),
    # the first conv (3x3 stride 2 over an image of 3 / 1 / 5 channels) fused as the expand: the
    # float32 stem row (Ce = 20 / 40: partial last vectors at every width)
    ("stem_odd", (19, 23), 3, 32, 16, 1, dict(stem=True, runs=2)),
    ("stem_s2_1ch_ce20", (9, 8), 1, 20, 8, 2, dict(stem=True, acts=("RELU", "RELU6"))),
    ("stem_5ch_ce40", (14, 11), 5, 40, 16, 1, dict(stem=True, pattern="1x4")),
    ("s1_cropped_output", (6, 40), 16, 32, 16, 1, dict(crop=(2, 31))),
    ("s2_cropped_output", (9, 20), 16, 48, 8, 2, dict(crop=(1, 4))),
]


def fused_cases(rng):
    """The fused-op records (valid ones, then malformed params that Prepare must reject)."""
    out = []
    for label, hw, cin, ce, co, st, opt in FUSED:
        bhw = (-(-hw[0] // 2), -(-hw[1] // 2)) if opt.get("stem") else hw  # the block's input map
        re_, rp = fused_strips(bhw, st, opt.get("same", True), opt.get("crop", (0, 0)))
        name = f"fused/{label}/rowsE{re_ if opt.get('expand', True) else 0}/rowsP{rp}"
        out.append((name, fused_case(name, rng, hw, cin, ce, co, st, **opt)))
    for label, hw, cin, ce, co, st, opt in FUSED_F32:
        bhw = (-(-hw[0] // 2), -(-hw[1] // 2)) if opt.get("stem") else hw  # the block's input map
        re_, rp = fused_strips(bhw, st, opt.get("same", True), opt.get("crop", (0, 0)))
        name = (f"fused/float32/{label}/B{4 if opt.get('pattern') == '1x4' else 1}/"
                f"rowsE{re_ if opt.get('expand', True) else 0}/rowsP{rp}")
        out.append((name, fused_f32_case(name, rng, hw, cin, ce, co, st, **opt)))
    # malformed params: the shared C validation on aarch64 (the full list of malformed fused
    # nodes runs on x86 through LiteRT, tests/native/test_fused_inverted_residual.py)
    for label, off, data, err in (("bad magic", 0, b"XXXX", "bad magic"),
                                  ("stride 3", 7, b"\x03", "stride must be 1 or 2"),
                                  ("paddings", 44, b"\x03", "paddings must be 0..2"),
                                  ("reserved", 90, b"\x01", "reserved bytes")):
        nm = f"malformed/fused {label}"
        rec = bytearray(fused_case(nm, rng, (6, 6), 8, 16, 8, 1, residual=True))
        i = rec.index(b"TFCI")
        rec[i + off:i + off + len(data)] = data
        rec[8 + len(nm.encode())] = 1  # expect_fail: the byte after the name
        assert rec.endswith(_blob(b""))
        out.append((nm, bytes(rec[:-4]) + _blob(err.encode())))
    # float32 params (flag bit 3) with a non-zero quantization field, or the stem flag on a residual block
    for label, off, data, err in (("f32 scale field", 56, struct.pack("<f", 0.5),
                                   "float32 block's scales and zero points must be 0"),
                                  ("f32 zero point", 68, struct.pack("<i", -1),
                                   "float32 block's scales and zero points must be 0"),
                                  ("f32 stem flag", 6, b"\x0f", "stem block needs the expand flag and no residual")):
        nm = f"malformed/fused {label}"
        rec = bytearray(fused_f32_case(nm, rng, (6, 6), 8, 16, 8, 1, residual=True))
        i = rec.index(b"TFCI")
        rec[i + off:i + off + len(data)] = data
        rec[8 + len(nm.encode())] = 1  # expect_fail
        assert rec.endswith(_blob(b""))
        out.append((nm, bytes(rec[:-4]) + _blob(err.encode())))
    return out


def bench_cases(rng):
    """FC 2048 x 2048, 90 % unstructured (float32, int8) and 1x4 blocks, batch 1 and 64 rows:
    the shapes of the instruction counts in tflite_export/README.md ("ARM / aarch64")."""
    out = []
    for dtype, make in (("float32", float_case), ("int8", int8_case)):
        for pattern, block in (("unstructured", 1), ("1x4", 4)):
            for rows in (1, 64):
                name = f"bench/{dtype}/{pattern}/fc/rows{rows}/K2048/N2048"
                out.append((name, make(name, rng, 1, (rows, 2048), 2048, pattern, 0.9, "NONE", 1, block=block)))
    return out


def mobilenet_v2_1x1_shapes():
    """(rows, K, N) of the 34 1x1 convolutions of MobileNetV2 1.0 at 224 x 224 (batch 1)."""
    out = [(112 * 112, 32, 16)]  # block 0: projection only
    c, res = 16, 112
    for t, c_out, n, stride in ((6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                                (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(n):
            out.append((res * res, c, t * c))  # expansion at the input resolution
            if i == 0:
                res //= stride
            out.append((res * res, t * c, c_out))  # projection after the depthwise conv
            c = c_out
    out.append((7 * 7, 320, 1280))
    return out


def mobilenet_cases(rng, sparsity=0.8, pattern="unstructured"):
    """The 1x1 convolutions of MobileNetV2 224 with 80 % zeros (unstructured, or "1x4": blocks of
    4 consecutive input channels packed with B = 4, int8 only), float32 and int8 (per-layer
    instruction counts of tflite_export/README.md, "ARM / aarch64")."""
    out = []
    if pattern == "1x4":
        for i, (rows, k, n) in enumerate(mobilenet_v2_1x1_shapes()):
            side = int(round(rows ** 0.5))
            name = f"mbv2/int8_1x4/conv{i:02d}/rows{rows}/K{k}/N{n}"
            act = "RELU6" if i % 2 == 1 or i == 33 else "NONE"
            out.append((name, int8_case(name, rng, 2, (1, side, side, k), n, "1x4", sparsity, act, 0, block=4)))
        return out
    for dtype, make in (("float32", float_case), ("int8", int8_case)):
        for i, (rows, k, n) in enumerate(mobilenet_v2_1x1_shapes()):
            side = int(round(rows ** 0.5))
            name = f"mbv2/{dtype}/conv{i:02d}/rows{rows}/K{k}/N{n}"
            act = "RELU6" if i % 2 == 1 or i == 33 else "NONE"  # expansions and the last conv: RELU6
            out.append((name, make(name, rng, 2, (1, side, side, k), n, "unstructured", sparsity, act, 0)))
    return out


def write_cases(path, seed=0, bench=False, mobilenet=False, pattern="unstructured"):
    """Writes all records to `path`; returns the case names in order."""
    rng = np.random.default_rng(seed)
    cases = (mobilenet_cases(rng, pattern=pattern) if mobilenet else bench_cases(rng) if bench
             else build_cases(rng))
    pathlib.Path(path).write_bytes(b"".join(c for _, c in cases))
    return [name for name, _ in cases]


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    names = write_cases(args[0] if args else "tfc_cases.bin", bench="--bench" in sys.argv,
                        mobilenet="--mobilenet" in sys.argv or "--mobilenet-1x4" in sys.argv,
                        pattern="1x4" if "--mobilenet-1x4" in sys.argv else "unstructured")
    print(f"{len(names)} cases written")
