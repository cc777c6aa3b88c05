"""Edge cases of the float32 1-15 row FC kernel on aarch64 (`neon_tbl_f32`, tfc_kernels_aarch64.c).

That kernel re-lays the weights in Prepare into groups of 8 output channels, each with its own
list of 16-float windows of x chosen by dynamic programming (empty columns skipped, a window may
start at any float and is moved left at the end of x), and runs up to 16 unrolled steps per window
entered by a computed jump. The cases here aim at its corners, each checked against numpy
(float64) exactly as make_cases.py does (``y = act(x @ W.T + b)``, tolerance
``1e-5 * max(|x| @ |W|.T) + 1e-6``):

* K and N not multiples of 4 / 8 / 16 (the last group partial, x copied with zero padding),
  K < 16, N < 8, K = 1;
* output channels without any weight, whole empty groups, an all-zero matrix, one non-zero;
* a fully dense 16-column window in all 8 lanes (16 steps, the longest jump), a dense matrix;
* non-zeros only in the last columns (the window start clamped to K - 16), long runs of empty
  columns (windows skipped), lanes with very uneven counts;
* 1, 2, 3 and 7 rows (the 2-row and 1-row kernels), every activation, with and without bias.

Usage::

    python tflite_export/test/make_cases_fc_f32.py /tmp/fc_f32_cases.bin
    qemu-aarch64 -cpu cortex-a53 /tmp/tfc_test_gcc /tmp/fc_f32_cases.bin

Example:
    >>> import numpy as np
    >>> cases = build_cases(np.random.default_rng(0))
    >>> all("/rows" in name for name, _ in cases)
    True
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import numpy as np

_HERE = pathlib.Path(__file__).resolve().parent


def _load_make_cases():
    spec = importlib.util.spec_from_file_location("_tfc_make_cases", _HERE / "make_cases.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_mc = _load_make_cases()


def weight_case(name, rng, w, rows, activation="NONE", with_bias=True):
    """An FC case (layout 1: x [rows, K]) for the given float32 weights [N, K] and its numpy reference.

    Args:
        name: case name (contains ``/rows<r>/``).
        rng: numpy Generator for x and the bias.
        w: float32 weights [N, K]; its zeros are the sparsity pattern.
        rows: input rows.
        activation: one of make_cases.ACT. Defaults to "NONE".
        with_bias: add a bias vector. Defaults to True.

    Returns:
        The driver record (bytes).

    Example:
        >>> rec = weight_case("x/rows1/K3/N2", np.random.default_rng(0), np.eye(2, 3, dtype=np.float32), 1)
        >>> rec[:4]
        b'TFCC'
    """
    n, k = w.shape
    x = rng.standard_normal((rows, k)).astype(np.float32)
    b = (rng.standard_normal(n) * 0.5).astype(np.float32) if with_bias else None
    x2 = x.astype(np.float64)
    y = x2 @ w.astype(np.float64).T + (0.0 if b is None else b.astype(np.float64))
    lo, hi = _mc.ACT[activation]
    y = np.clip(y, lo, hi)
    mag = float((np.abs(x2) @ np.abs(w.astype(np.float64)).T).max()) if x2.size else 0.0
    blob = _mc._pack.pack_sparse_weights(w, block=1, sort_rows=True)
    return _mc.record(name, 1, x, [rows, k], blob, _mc._pack.pack_options(activation, 1), [rows, n],
                      y.astype(np.float32), 1e-5 * mag + 1e-6, bias=b)


def _nonzero(rng, shape):
    """Random weights, never zero."""
    v = rng.standard_normal(shape).astype(np.float32)
    v[v == 0] = 1.0
    return v


def patterns(rng):
    """(label, weights [N, K]) of the edge patterns."""
    out = []
    for k, n in ((37, 13), (129, 9), (16, 8), (5, 3), (1, 1), (300, 21)):
        w = _nonzero(rng, (n, k)) * (rng.random((n, k)) >= 0.9)
        out.append((f"random90/K{k}/N{n}", w))
    w = _nonzero(rng, (20, 70)) * (rng.random((20, 70)) >= 0.6)
    w[[1, 5, 8, 9, 10, 11, 12, 13, 14, 15, 19]] = 0  # empty channels, an empty group (8-15)
    out.append(("emptyrows/K70/N20", w))
    out.append(("allzero/K45/N11", np.zeros((11, 45), np.float32)))
    w = np.zeros((10, 90), np.float32)
    w[7, 61] = 1.75
    out.append(("onenonzero/K90/N10", w))
    w = _nonzero(rng, (16, 64)) * (rng.random((16, 64)) >= 0.9)
    w[:8, 20:36] = _nonzero(rng, (8, 16))  # one fully dense 16-column window in all 8 lanes
    out.append(("densewindow/K64/N16", w))
    out.append(("dense/K33/N9", _nonzero(rng, (9, 33))))
    w = np.zeros((12, 53), np.float32)
    w[:, 47:] = _nonzero(rng, (12, 6)) * (rng.random((12, 6)) >= 0.3)  # only the last columns
    w[3, 0] = -2.0
    out.append(("tail/K53/N12", w))
    w = np.zeros((8, 1000), np.float32)
    for c in (0, 17, 400, 401, 415, 416, 999):  # long empty runs between columns
        w[c % 8, c] = 1.0 + c / 1000.0
    w[:, 500] = 3.0
    out.append(("gaps/K1000/N8", w))
    w = _nonzero(rng, (8, 96)) * (rng.random((8, 96)) >= 0.97)
    w[2] = _nonzero(rng, 96)  # one dense lane next to nearly empty ones
    out.append(("uneven/K96/N8", w))
    return out


def build_cases(rng):
    """All records: every pattern at 1 row, most at 2, 3 and 7 rows too, activations rotating."""
    acts = list(_mc.ACT)
    cases = []
    for i, (label, w) in enumerate(patterns(rng)):
        for j, rows in enumerate((1, 2, 3, 7) if i % 2 == 0 else (1, 3)):
            act = acts[(i + j) % len(acts)]
            name = f"float32/fcb1/{label}/fc/rows{rows}/{act}"
            cases.append((name, weight_case(name, rng, w, rows, act, with_bias=(i + j) % 3 != 2)))
    return cases


def write_cases(path, seed=0):
    """Writes all records to `path`; returns the case names in order."""
    cases = build_cases(np.random.default_rng(seed))
    pathlib.Path(path).write_bytes(b"".join(c for _, c in cases))
    return [name for name, _ in cases]


if __name__ == "__main__":
    names = write_cases(sys.argv[1] if len(sys.argv) > 1 else "fc_f32_cases.bin")
    print(f"{len(names)} cases written")
