"""TFC_SPARSE_INVERTED_RESIDUAL on float32 blocks (params flag bit 3), in the real LiteRT interpreter.

References, both independent of the op: the Keras model itself (float32, TensorFlow's kernels)
and the dense float32 file of the same weights run by LiteRT (XNNPACK). Float sums in another
order round differently, so outputs are compared within a few float32 ulps of the output's
magnitude, not equal. Every dispatch level, 2 threads, row splits and strip stealing; malformed
float32 params are rejected in Prepare.
"""

import numpy as np
import pytest

from tests.native.test_fused_inverted_residual import (CAPS, _has, _kernel_names, _mutated_params, _set,
                                                       block_model, row_splits)
from tfcompress.export import export_tflite, load_interpreter
from tfcompress.export.sparse import rewrite_tflite, sparse_kernel_report
from tfcompress.export.sparse_fused import FUSED_OP
from tfcompress.export.sparse_native import custom_ops_in

# (H, W), Cin, Ce, Co, stride, expand, residual, Keras-style PAD (stride 2)[, stem channels[, stem PAD]]
CASES = {
    "s1_residual": ((13, 16), 16, 64, 16, 1, True, True, False),
    "s2_pad": ((12, 12), 24, 72, 32, 2, True, False, True),       # PAD(0,1) + VALID
    "s2_same_odd": ((9, 7), 12, 40, 20, 2, True, False, False),   # 40: 2 groups of 16 + 8 lanes
    "no_expand": ((10, 10), 32, 32, 16, 1, False, False, False),
    "wide_residual": ((5, 70), 8, 48, 8, 1, True, True, False),
    "ce38_odd": ((6, 7), 12, 38, 12, 1, True, True, False),
    # a 3x3 stride-2 conv over the image ("stem") fused in as the expand of the block after it
    # (H, W is then the image): the float32 stem row, channels 16 / 24 (a partial last vector on
    # AVX-512) / 32, SAME or ZeroPadding2D + VALID
    "stem_odd": ((17, 23), 16, 16, 24, 1, False, False, False, 3),
    "stem_1ch_ce24_s2": ((9, 8), 24, 24, 8, 2, False, False, False, 1),
    "stem_pad_valid": ((16, 15), 32, 32, 16, 1, False, False, False, 3, True),
}


@pytest.fixture(scope="module")
def files():
    out = {}
    for i, (name, case) in enumerate(CASES.items()):
        model, _ = block_model(*case[:8], seed=500 + i, stem=case[8] if len(case) > 8 else 0,
                               stem_pad=len(case) > 9 and case[9])
        dense, _ = export_tflite(model)
        out[name] = (model, dense, rewrite_tflite(dense, "custom"))
    return out


def _run(tflite, x, threads=1):
    interp = load_interpreter(tflite, num_threads=threads)
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    out = interp.get_output_details()[0]
    interp.set_tensor(out["index"], np.full(out["shape"], 77.0, out["dtype"]))  # unwritten rows fail
    interp.invoke()
    return interp.get_tensor(out["index"])


def _close(got, want, what):
    """Within 32 float32 ulps of the output's largest magnitude (sums in another order)."""
    tol = 32 * np.finfo(np.float32).eps * max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert err <= tol, f"{what}: max |diff| {err:.3g} > {tol:.3g}"


def _x(model, seed):
    return np.random.default_rng(seed).standard_normal((1,) + tuple(model.input.shape[1:])).astype(np.float32)


def test_float32_blocks_are_fused_and_reported(files):
    from ai_edge_litert import schema_py_generated as schema

    for name, (_, dense, fused) in files.items():
        assert custom_ops_in(fused) == [FUSED_OP], name
        rows = [r for r in sparse_kernel_report(fused) if r["emitted"] == "fused"]
        stem = len(CASES[name]) > 8
        assert len(rows) == 1 and rows[0]["dtype"] == "float32" and rows[0]["stem"] == stem, (name, rows)
        assert rows[0]["residual"] == CASES[name][6] and rows[0]["expand"] == CASES[name][5]
        m = schema.ModelT.InitFromPackedBuf(bytearray(fused), 0)
        ops = m.subgraphs[0].operators
        assert len(ops) == 1, name  # the stem conv (and its PAD) inside the fused node too
        # the stem, 1x1 and depthwise weights left the file as float32 tensors (packed uint8 blobs now)
        f32_consts = [t for t in m.subgraphs[0].tensors
                      if t.type == schema.TensorType.FLOAT32 and len(t.shape) == 4 and t.buffer < len(m.buffers)
                      and m.buffers[t.buffer].data is not None and len(m.buffers[t.buffer].data)]
        assert not f32_consts, (name, [t.name for t in f32_consts])


# the x86 float32 1x1 kernels (>= 16 rows): picked by cost (unset), or forced: the CSR kernel on a
# transposed tile, or the NHWC kernel on 8-channel groups (AVX2 + FMA, also with AVX-512 hidden)
F32_KERNELS = [None, "csr", "g8"]


def _set_f32_kernel(monkeypatch, kernel):
    if kernel is None:
        monkeypatch.delenv("TFCOMPRESS_F32_KERNEL", raising=False)
    else:
        monkeypatch.setenv("TFCOMPRESS_F32_KERNEL", kernel)


@pytest.mark.parametrize("kernel", F32_KERNELS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_fused_block_matches_keras_and_the_dense_file(name, kernel, files, monkeypatch):
    _set_f32_kernel(monkeypatch, kernel)
    model, dense, fused = files[name]
    x = _x(model, 1)
    keras_out = np.asarray(model(x)).astype(np.float64)
    want = _run(dense, x)
    _close(want, keras_out, f"{name}: the dense file vs Keras (the reference itself)")
    # the depthwise vector width follows the CPU (16 floats on AVX-512, 8 on AVX2 + FMA, else 4);
    # TFCOMPRESS_NO_AVX512=1 runs the AVX2 row on an AVX-512 CPU
    widths = [("0", "dw_f32_avx512" if _has("avx512f") else "dw_f32_avx2" if _has("avx2", "fma") else "dw_f32")]
    if _has("avx512f") and _has("avx2", "fma"):
        widths.append(("1", "dw_f32_avx2"))
    for no512, dw in widths:
        monkeypatch.setenv("TFCOMPRESS_NO_AVX512", no512)
        for cap in CAPS:
            monkeypatch.setenv("TFCOMPRESS_ISA_CAP", cap)
            got = _run(fused, x)
            names = _kernel_names()
            assert f"dw={dw} " in names, names
            if len(CASES[name]) > 8:  # the stem row has the depthwise's vector width
                assert "expand=" + dw.replace("dw_", "stem_", 1) + " " in names, names
            if kernel and name == "s1_residual" and cap != "0" and dw == "dw_f32_avx2":  # 16-row strips
                assert f"expand=avx2_{kernel}_f32 project=avx2_{kernel}_f32" in names, names
            _close(got, keras_out, f"{name} cap {cap} vs Keras ({names})")
            _close(got, want, f"{name} cap {cap} vs the dense file ({names})")


@pytest.mark.parametrize("kernel", F32_KERNELS)
@pytest.mark.parametrize("name", ["s1_residual", "s2_same_odd", "wide_residual", "no_expand", "stem_odd"])
def test_float32_threads_and_row_splits_give_the_same_output(name, kernel, files, monkeypatch):
    """2 threads, 2 / 3 / 7 row ranges with and without strip stealing: the same values as one
    range (each range recomputes its halo rows with the same kernels, so the same bits)."""
    _set_f32_kernel(monkeypatch, kernel)
    model, _, fused = files[name]
    x = _x(model, 2)
    for cap, threads, label in row_splits(monkeypatch):
        got = _run(fused, x, threads)
        if label == "1 thread":  # the first split of each cap: the reference of the others
            one = got
        np.testing.assert_array_equal(got, one, err_msg=f"{cap} {label}")


MALFORMED_F32 = [  # (case, change, message)
    ("s1_residual", _set("<B", 6, 3), "scales must be finite"),             # float blob read as int8
    ("s1_residual", _set("<f", 56, 0.5), "float32 block's scales and zero points must be 0"),
    ("s1_residual", _set("<i", 72, 1), "float32 block's scales and zero points must be 0"),
    ("s1_residual", _set("<B", 6, 15), "stem block needs the expand flag and no residual"),
    ("stem_odd", _set("<I", 84, 4), "stem Cin must be 9 \\* Ci rounded up to 4"),  # 3 image channels said 4
    ("s1_residual", _set("<I", 20, 68), "byte length"),                     # Ce: 36 bytes per channel
    ("s1_residual", lambda blob, op: blob[:-16], "byte length"),
    ("ce38_odd", lambda blob, op: blob.__setitem__(96 + 36 * 38, 1), "padding bytes must be 0"),
]


@pytest.mark.parametrize("case,fn,message", MALFORMED_F32)
def test_malformed_float32_params_fail_in_prepare(case, fn, message, files, monkeypatch):
    """Float32 params with a wrong flag, non-zero quantization fields, a stem flag on a residual
    block, a stem's wrong image channel count, a wrong length or
    a non-zero padding byte are rejected in Prepare with a message naming the problem, at every dispatch level."""
    bad = _mutated_params(files[case][2], fn)
    for cap in CAPS:
        monkeypatch.setenv("TFCOMPRESS_ISA_CAP", cap)
        with pytest.raises(ValueError, match=message):
            load_interpreter(bad)


def test_float32_block_refuses_int8_wiring(files):
    """An int8 block's flag on a float32 node (and the reverse) fails on the tensor types."""
    int8_flags = _mutated_params(files["s1_residual"][2], lambda blob, op: _zero_q_and_flag(blob))
    with pytest.raises(ValueError, match="input and output must be int8"):
        load_interpreter(int8_flags)


def _zero_q_and_flag(blob):
    blob[6] &= 7  # drop the float32 flag, keep valid-looking int8 scales
    for off in (52, 56, 60):
        blob[off:off + 4] = np.float32(0.1).tobytes()
    # int8 layout: 9 Ce weight bytes + 4 Ce scale bytes; keep the length consistent
    ce = int.from_bytes(bytes(blob[20:24]), "little")
    w = (9 * ce + 15) // 16 * 16
    sc = (4 * ce + 15) // 16 * 16
    body = bytearray(w) + bytearray(np.full(ce, 0.01, np.float32).tobytes()) + bytearray(sc - 4 * ce)
    return bytearray(blob[:96]) + body


PHASED_CASES = {  # small maps: at 2-3 threads the phased split (expand + depthwise by channel parts, then project)
    "7x7_residual": ((7, 7), 40, 96, 40, 1, True, True, False),   # one-tile project: channel parts
    "12x10": ((12, 10), 16, 136, 24, 1, True, False, False),      # project by pixel ranges
}


@pytest.fixture(scope="module")
def phased_files():
    out = {}
    for i, (name, case) in enumerate(PHASED_CASES.items()):
        model, _ = block_model(*case, seed=600 + i)
        dense, _ = export_tflite(model)
        out[name] = (model, dense, rewrite_tflite(dense, "custom"))
    return out


@pytest.mark.parametrize("kernel", F32_KERNELS)
@pytest.mark.parametrize("name", sorted(PHASED_CASES))
def test_float32_small_maps_on_1_2_3_threads_phased_or_row_ranges(name, kernel, phased_files, monkeypatch):
    """At 2 threads a 7x7 / 12x10 float32 block runs phased (2 pool jobs per invoke: expand +
    depthwise by channel parts of the float32 CSR or 8-channel-group kernel, then the project); forced row ranges
    (TFCOMPRESS_FUSED_PHASED=0) or forced phases (=1) at 1, 2 and 3 threads give Keras' output
    within float rounding and the same values as one thread."""
    from tests.native.test_threads import _pool_jobs_of_one_invoke

    _set_f32_kernel(monkeypatch, kernel)
    model, dense, fused = phased_files[name]
    x = _x(model, 3)
    keras_out = np.asarray(model(x)).astype(np.float64)
    monkeypatch.delenv("TFCOMPRESS_FUSED_PHASED", raising=False)
    one = _run(fused, x)
    _close(one, keras_out, f"{name} 1 thread vs Keras")
    _close(one, _run(dense, x), f"{name} 1 thread vs the dense file")
    for threads in (1, 2, 3):
        for phased in (None, "0", "1"):
            if phased is None:
                monkeypatch.delenv("TFCOMPRESS_FUSED_PHASED", raising=False)
            else:
                monkeypatch.setenv("TFCOMPRESS_FUSED_PHASED", phased)
            got = _run(fused, x, threads)
            _close(got, keras_out, f"{name} {threads} threads phased={phased} vs Keras")
            np.testing.assert_array_equal(got, one, err_msg=f"{name} {threads} threads phased={phased}")
    # seen from the pool: 7x7 is phased by itself at 2 threads (< 4 rows per range), 12x10 (6 rows
    # per range) when forced; phased = two jobs per invoke, row ranges = one
    if name == "12x10":
        monkeypatch.setenv("TFCOMPRESS_FUSED_PHASED", "1")
    else:
        monkeypatch.delenv("TFCOMPRESS_FUSED_PHASED", raising=False)
    monkeypatch.setenv("TFC_POOL_TRACE", "1")
    interp = load_interpreter(fused, num_threads=2)
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    assert len(_pool_jobs_of_one_invoke(interp, x)) == 2
    monkeypatch.setenv("TFCOMPRESS_FUSED_PHASED", "0")
    interp = load_interpreter(fused, num_threads=2)
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    assert len(_pool_jobs_of_one_invoke(interp, x)) == 1


def test_guarded_auto_measures_float32_fused_blocks(files):
    """"auto" with the measured guard offers each float32 block fused (its 1x1s are 80 % sparse)
    and ships it or the dense block by measurement; the guard ranks the block by the
    multiply-adds its 1x1s' zeros save (rows x K x N x sparsity, computed here from the shapes)."""
    from tfcompress.export.sparse import sparse_kernel_guard

    model, dense, _ = files["s2_pad"]
    out = rewrite_tflite(dense, "auto", num_threads=(1,))
    guard = sparse_kernel_guard(out)
    assert guard["rewritten_layers"] == 1, guard.get("result")
    rows = sparse_kernel_report(out)
    emitted = [r["emitted"] for r in rows]
    assert emitted in (["fused"], ["dense", "dense"]), emitted
    if emitted == ["fused"]:
        (h, w), (ho, wo) = CASES["s2_pad"][0], (6, 6)
        k_exp, k_proj = [layer.kernel.numpy() for layer in model.layers
                         if type(layer).__name__ == "Conv2D"]  # [1, 1, K, N]: zeros counted here
        want = (h * w * np.sum(k_exp == 0) + ho * wo * np.sum(k_proj == 0)) / 1e6
        assert abs(rows[0]["macs_saved_m"] - want) <= 1e-3, (rows[0]["macs_saved_m"], want)
