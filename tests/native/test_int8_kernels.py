"""int8 tfcompress sparse kernels (TFC_SPARSE_FC, TFC_SPARSE_CONV_1X1) in the real LiteRT
interpreter, against two independent references:

* a numpy model of TFLite's int8 semantics (acc = bias + sum w (x - zp_x), per-channel
  requantization, zero point, fused activation clamp), computed in float64 from the
  quantization parameters stored in the dense int8 file;
* TFLite's own dense int8 kernels (XNNPACK) on the same int8 weights.

Both within one quantization step. Every dispatch path is forced in turn (``PATHS``) with
``TFCOMPRESS_ISA_CAP`` (0 portable C, 1 AVX-512F / AVX2, 2 AVX-512 VNNI / AVX-VNNI:
tflite_export/tfc_op.c) and ``TFCOMPRESS_NO_AVX512=1`` (the x86 pickers act as on a CPU
without AVX-512: cap 1 = AVX2 kernels, cap 2 = AVX-VNNI kernels), so the portable, AVX2 and
AVX-VNNI paths are tested on an AVX-512 machine too; all paths give bit-identical outputs.
"""

import struct

import keras
import numpy as np
import pytest

from tfcompress.export import export_tflite, load_interpreter
from tfcompress.export.sparse import rewrite_tflite, sparse_kernel_report
from tfcompress.export.sparse_native import custom_ops_in

# dispatch paths: environment, the kernel (tflite_export/tfc_kernels_*.c) each must reach by
# rows (1-3, 4-15, >= 16), and the CPU flags (/proc/cpuinfo) it needs to reach them
PATHS = {
    "portable": ({"TFCOMPRESS_ISA_CAP": "0"}, ("portable_rows_i8", "portable_tiled_i8", "portable_tiled_i8"), ()),
    "avx512f": ({"TFCOMPRESS_ISA_CAP": "1"},  # AVX-512F without VNNI: AVX2 int8 kernels from 4 rows
                ("avx512_rows_i8_win|avx2_win_i8", "avx2_win_i8", "avx2_quads_i8"), ("avx512f", "avx2")),
    "avx512vnni": ({"TFCOMPRESS_ISA_CAP": "2"}, ("avx512vnni_win", "avx512vnni_win", "avx512vnni_quads"),
                   ("avx512_vnni", "avx512bw", "avx512vl")),
    "avxvnni": ({"TFCOMPRESS_ISA_CAP": "2", "TFCOMPRESS_NO_AVX512": "1"},
                ("avxvnni_win_i8", "avxvnni_win_i8", "avxvnni_quads_i8"), ("avx_vnni", "avx2")),
    "avx2": ({"TFCOMPRESS_ISA_CAP": "1", "TFCOMPRESS_NO_AVX512": "1"},
             ("avx2_win_i8", "avx2_win_i8", "avx2_quads_i8"), ("avx2",)),
}
CAPS = tuple(PATHS)


def _set_path(monkeypatch, path):
    env = PATHS[path][0]
    for var in ("TFCOMPRESS_ISA_CAP", "TFCOMPRESS_NO_AVX512"):
        if var in env:
            monkeypatch.setenv(var, env[var])
        else:
            monkeypatch.delenv(var, raising=False)


def _check_kernel(path, rows):
    """The kernel the last Prepare picked is the one `path` must reach (when the CPU has it)."""
    _, expected, flags = PATHS[path]
    want = expected[0 if rows < 4 else 1 if rows < 16 else 2]
    if _has(*flags):
        assert any(_last_kernel().startswith(w) for w in want.split("|")), (path, rows, _last_kernel())


def _has(*flags):
    with open("/proc/cpuinfo") as f:
        info = f.read().split()
    return all(flag in info for flag in flags)


def _last_kernel():
    import ctypes

    from tfcompress.export.sparse_native import library_path

    lib = ctypes.CDLL(library_path())
    lib.TfcLastKernelName.restype = ctypes.c_char_p
    return lib.TfcLastKernelName().decode()
ACT_RANGE = {"NONE": (-np.inf, np.inf), "RELU": (0.0, np.inf), "RELU6": (0.0, 6.0),
             "RELU_N1_TO_1": (-1.0, 1.0)}


def _prune_kernel(w, sparsity, pattern, rng):
    k = w.reshape(-1, w.shape[-1])  # [K, N]
    if pattern == "block":  # pruning.Block((1, 4)): 4 consecutive input channels share zeros
        kq = -(-k.shape[0] // 4)
        mask = np.repeat(rng.random((kq, k.shape[1])) < sparsity, 4, axis=0)[: k.shape[0]]
    else:
        mask = rng.random(k.shape) < sparsity
    k = np.where(mask, 0.0, k)
    return k.reshape(w.shape).astype("float32")


def _int8_models(kind, k_in, n_out, activation, pattern, rng, spatial=(8, 8), sparsity=0.8):
    """(dense int8 bytes, sparse int8 bytes) of one FC or 1x1 conv layer, calibrated on
    inputs with a non-zero mean so the input zero point is not 0."""
    if kind == "fc":
        inp = keras.Input((k_in,))
        out = keras.layers.Dense(n_out, activation=activation)(inp)
        shape = (k_in,)
    else:
        inp = keras.Input(spatial + (k_in,))
        out = keras.layers.Conv2D(n_out, 1, activation=activation)(inp)
        shape = spatial + (k_in,)
    model = keras.Model(inp, out)
    layer = model.layers[-1]
    layer.kernel.assign(_prune_kernel(layer.kernel.numpy(), sparsity, pattern, rng))
    layer.bias.assign(rng.standard_normal(n_out).astype("float32") * 0.3)
    calib = (rng.standard_normal((48,) + shape) + 0.7).astype("float32")
    dense, _ = export_tflite(model, quantize="int8", representative_data=calib)
    sparse = rewrite_tflite(dense, "custom")
    assert custom_ops_in(sparse), sparse_kernel_report(sparse)
    return dense, sparse


def _quant_params(dense):
    """Weights, per-channel scales, bias and in/out quantization from the dense int8 file."""
    interp = load_interpreter(dense)
    w = b = None
    for d in interp.get_tensor_details():
        if d["dtype"] == np.int8 and len(d["shape"]) in (2, 4) and d["index"] not in (
                interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]):
            try:
                w = interp.get_tensor(d["index"]).reshape(d["shape"][0], -1).astype(np.int64)
            except ValueError:
                continue
            w_scale = np.asarray(d["quantization_parameters"]["scales"], np.float64)
        if d["dtype"] == np.int32 and len(d["shape"]) == 1:
            b = interp.get_tensor(d["index"]).astype(np.int64)
    sx, zx = interp.get_input_details()[0]["quantization"]
    sy, zy = interp.get_output_details()[0]["quantization"]
    return w, np.broadcast_to(w_scale, (w.shape[0],)), b, (sx, zx), (sy, zy)


def _numpy_reference(params, xq, activation):
    """TFLite int8 FULLY_CONNECTED / CONV_2D semantics in float64 (round half to even)."""
    w, ws, b, (sx, zx), (sy, zy) = params
    x = xq.reshape(-1, w.shape[1]).astype(np.int64)
    acc = (x - zx) @ w.T + b  # exact int64
    y = np.round(acc * (sx * ws / sy)) + zy
    lo, hi = ACT_RANGE[activation]
    qlo = max(-128, zy + (np.round(lo / sy) if np.isfinite(lo) else -1e9))
    qhi = min(127, zy + (np.round(hi / sy) if np.isfinite(hi) else 1e9))
    return np.clip(y, qlo, qhi).astype(np.int64).reshape(xq.shape[:-1] + (w.shape[0],))


def _invoke(tflite, x):
    """Runs the whole batch of rows x in one invoke (the input is resized to x.shape); raw output."""
    interp = load_interpreter(tflite)
    inp = interp.get_input_details()[0]
    if tuple(inp["shape"]) != x.shape:
        interp.resize_tensor_input(inp["index"], list(x.shape), strict=False)
        interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def _run(tflite, xq):
    """int8 output of one invoke on the rows xq, as int64 (for exact comparisons)."""
    return _invoke(tflite, xq).astype(np.int64)


def _quantize_input(dense, shape, rng):
    sx, zx = load_interpreter(dense).get_input_details()[0]["quantization"]
    x = rng.standard_normal(shape) * 1.3 + 0.7
    return np.clip(np.round(x / sx + zx), -128, 127).astype(np.int8)


def _check(dense, sparse, xq, activation, monkeypatch, caps=CAPS):
    params = _quant_params(dense)
    assert params[3][1] != 0, "the test wants a non-zero input zero point"
    ref = _numpy_reference(params, xq, activation)
    y_dense = _run(dense, xq)
    assert np.abs(y_dense - ref).max() <= 1  # the reference models TFLite's kernels
    assert np.ptp(ref) > 20, "outputs should span many quantization steps"
    outs = {}
    for cap in caps:
        _set_path(monkeypatch, cap)
        got = outs[cap] = _run(sparse, xq)
        _check_kernel(cap, int(np.prod(xq.shape[:-1])))
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1, (cap, np.abs(got - ref).max())
        assert np.abs(got - y_dense).max() <= 1, (cap, np.abs(got - y_dense).max())
        # the requantization follows XNNPACK's (float scale sx * sw / sy, round half to even)
        assert (got == y_dense).mean() >= 0.99, (cap, (got == y_dense).mean())
    for cap in caps[1:]:  # every path computes the same bits (same requantization)
        assert np.array_equal(outs[cap], outs[caps[0]]), (cap, np.abs(outs[cap] - outs[caps[0]]).max())
    _set_path(monkeypatch, "portable")
    monkeypatch.delenv("TFCOMPRESS_ISA_CAP")


@pytest.mark.parametrize("k_in,n_out,activation,pattern,spatials", [
    # K = 16 / 24 / 100 (K % 64 != 0), N % 16 != 0, full and partial 64-row tiles, 2..15 rows
    (16, 96, "relu6", "block", [(8, 8), (9, 7), (5, 13), (10, 13), (3, 5), (1, 2)]),
    (100, 37, None, "block", [(8, 8), (11, 12), (2, 7)]),
    (72, 24, "relu", "unstructured", [(8, 8), (13, 11)]),
    (30, 20, None, "unstructured", [(8, 8), (6, 11)]),  # K % 4 != 0: quads padded with zeros
    (320, 64, "relu6", "block", [(7, 7), (17, 9)]),       # K > 256: tile larger than 64 KiB / 4
])
def test_conv1x1_int8_matches_references(k_in, n_out, activation, pattern, spatials, rng, monkeypatch):
    dense, sparse = _int8_models("conv", k_in, n_out, activation, pattern, rng, spatial=spatials[0])
    for hw in spatials:
        xq = _quantize_input(dense, (1,) + hw + (k_in,), rng)
        _check(dense, sparse, xq, (activation or "none").upper(), monkeypatch)


@pytest.mark.parametrize("k_in,n_out,activation,pattern,batches", [
    (200, 48, "relu", "block", [1, 2, 5, 15, 16, 70]),     # batch 1, 2-15 rows, many rows
    (64, 10, None, "unstructured", [1, 3, 33]),
    (44, 130, "relu6", "block", [1, 7, 64]),
])
def test_fc_int8_matches_references(k_in, n_out, activation, pattern, batches, rng, monkeypatch):
    dense, sparse = _int8_models("fc", k_in, n_out, activation, pattern, rng)
    for batch in batches:
        xq = _quantize_input(dense, (batch, k_in), rng)
        _check(dense, sparse, xq, (activation or "none").upper(), monkeypatch)


def _with_activation(tflite, code):
    """The same model with the custom op's fused activation byte set to `code`."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    (op,) = [o for o in model.subgraphs[0].operators if model.operatorCodes[o.opcodeIndex].customCode]
    opts = bytearray(bytes(np.asarray(op.customOptions, np.uint8)))
    opts[1] = code
    op.customOptions = np.frombuffer(bytes(opts), np.uint8)
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.mark.parametrize("code,name", [(0, "NONE"), (1, "RELU"), (2, "RELU6"), (3, "RELU_N1_TO_1")])
def test_every_activation_against_numpy(code, name, rng, monkeypatch):
    """All four fused activations of the options byte, on both the many-row and the
    few-row kernels (numpy reference only: Keras has no RELU_N1_TO_1 layer)."""
    dense, sparse = _int8_models("conv", 52, 40, None, "block", rng, spatial=(9, 9))
    sparse = _with_activation(sparse, code)
    params = _quant_params(dense)
    for hw in ((9, 9), (1, 3)):
        xq = _quantize_input(dense, (1,) + hw + (52,), rng)
        ref = _numpy_reference(params, xq, name)
        for cap in CAPS:
            _set_path(monkeypatch, cap)
            got = _run(sparse, xq)
            _check_kernel(cap, hw[0] * hw[1])
            assert np.abs(got - ref).max() <= 1, (name, cap, hw)


def test_auto_decides_int8_layers_by_cost(rng):
    """"auto" on an int8 model: a 90 % block-sparse 256->256 1x1 conv (predicted faster) becomes
    the custom op, a 40 % sparse one stays dense; the report gives the predicted times; the
    result equals the dense int8 file's."""
    inp = keras.Input((14, 14, 256))
    h = keras.layers.Conv2D(256, 1, activation="relu6")(inp)
    h = keras.layers.Conv2D(256, 1)(h)
    model = keras.Model(inp, h)
    for layer, sparsity in zip(model.layers[1:], (0.9, 0.4)):
        layer.kernel.assign(_prune_kernel(layer.kernel.numpy(), sparsity, "block", rng))
    calib = rng.standard_normal((16, 14, 14, 256)).astype("float32")
    dense, _ = export_tflite(model, quantize="int8", representative_data=calib)
    auto = rewrite_tflite(dense, "auto", num_threads=None)  # the cost model alone, no timing
    report = sparse_kernel_report(auto)
    assert [r["emitted"] for r in report] == ["custom", "dense"], report
    assert all("cost model predicts" in r["reason"] for r in report), report
    assert len(auto) < len(dense) - 0.8 * 256 * 256  # the dense 256x256 int8 kernel is gone
    xq = _quantize_input(dense, (1, 14, 14, 256), rng)
    assert np.array_equal(_run(auto, xq), _run(dense, xq))


def _mutated_blob(tflite, fn):
    """The model with fn applied to the packed weights of its custom op (offsets from the
    "TFCS" v1 header, tflite_export/README.md)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    sg = model.subgraphs[0]
    (op,) = [o for o in sg.operators if model.operatorCodes[o.opcodeIndex].customCode]
    buf = model.buffers[sg.tensors[op.inputs[1]].buffer]
    blob = bytearray(bytes(np.asarray(buf.data, np.uint8)))
    n, k, nslots = struct.unpack_from("<III", blob, 8)
    s = (n + 15) // 16
    pad = lambda v: (v + 15) // 16 * 16  # noqa: E731
    col = pad(pad(32 + 4 * (s + 1)) + 64 * s)
    values = pad(col + blob[20] * nslots)
    scales = pad(values + blob[7] * nslots)
    fn(blob, {"k": k, "col": col, "scales": scales})
    buf.data = np.frombuffer(bytes(blob), np.uint8)
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.mark.parametrize("fn,message", [
    (lambda b, o: struct.pack_into("<H", b, o["col"], o["k"] // 4), "column index out of range"),
    (lambda b, o: struct.pack_into("<f", b, o["scales"], -1.0), "scales must be finite and > 0"),
    (lambda b, o: struct.pack_into("<I", b, 12, o["k"] + 4), "byte length|K"),
    (lambda b, o: struct.pack_into("<f", b, o["scales"] + 4, 3e38), "requantization scale .* channel 1 .* < 256"),
])
def test_malformed_int8_weights_fail_in_prepare(fn, message, rng, monkeypatch):
    """Corrupted 1x4-block int8 weights of a many-row 1x1 conv are rejected in Prepare at
    every dispatch level, before any re-layout or kernel reads them."""
    _, sparse = _int8_models("conv", 48, 20, None, "block", rng, spatial=(8, 8))
    bad = _mutated_blob(sparse, fn)
    for cap in CAPS:
        _set_path(monkeypatch, cap)
        with pytest.raises(ValueError, match=message):
            load_interpreter(bad)


@pytest.mark.parametrize("kind,k_in,n_out,shape", [
    ("conv", 40, 37, (1, 13, 11, 40)),   # many rows: 3 row tiles of 64
    ("fc", 200, 70, (5, 200)),           # few rows: 5 slices of 16 output channels
])
def test_any_split_of_the_work_units_gives_the_same_output(kind, k_in, n_out, shape, rng, monkeypatch):
    """The kernels compute independent work units (row tiles / output slices) that a thread
    pool may split in any ranges: 1, 2, 3 and 7 ranges give identical outputs, int8 and float32,
    at every dispatch level."""
    dense, sparse = _int8_models(kind, k_in, n_out, "relu", "block", rng, spatial=shape[1:3])
    xq = _quantize_input(dense, shape, rng)
    inp = keras.Input(shape[1:])
    layer = (keras.layers.Conv2D(n_out, 1) if kind == "conv" else keras.layers.Dense(n_out))
    fmodel = keras.Model(inp, layer(inp))
    layer.kernel.assign(_prune_kernel(layer.kernel.numpy(), 0.8, "block", rng))
    fsparse = rewrite_tflite(export_tflite(fmodel)[0], "custom")
    xf = rng.standard_normal(shape).astype("float32")
    for cap in CAPS:
        _set_path(monkeypatch, cap)
        outs = []
        for ranges in ("1", "2", "3", "7"):
            monkeypatch.setenv("TFCOMPRESS_TEST_RANGES", ranges)
            outs.append((_run(sparse, xq), _invoke(fsparse, xf)))
        for got_q, got_f in outs[1:]:
            assert np.array_equal(got_q, outs[0][0]), cap
            assert np.array_equal(got_f, outs[0][1]), cap


def _blob_of(tflite):
    """(model object, packed-weights buffer object, blob bytearray) of the single custom op."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    sg = model.subgraphs[0]
    (op,) = [o for o in sg.operators if model.operatorCodes[o.opcodeIndex].customCode]
    buf = model.buffers[sg.tensors[op.inputs[1]].buffer]
    return model, buf, bytearray(bytes(np.asarray(buf.data, np.uint8)))


def _tfcs_sections(blob):
    """Offsets of the TFCS v1 sections of a non-windowed blob (tflite_export/README.md)."""
    n, k, nslots = struct.unpack_from("<III", blob, 8)
    s = (n + 15) // 16
    pad = lambda v: (v + 15) // 16 * 16  # noqa: E731
    perm = pad(32 + 4 * (s + 1))
    col = pad(perm + 64 * s)
    values = pad(col + blob[20] * nslots)
    scales = pad(values + blob[7] * nslots)
    return n, k, nslots, s, perm, col, values, scales


def _tfcs_dense(blob):
    """Dense int8 W[N][K] of a TFCS blob with u16 block columns (independent of the C parser)."""
    n, k, nslots, s, perm_at, col_at, values_at, _ = _tfcs_sections(blob)
    assert blob[20] == 2, "test expects u16 block columns"
    bsz = blob[7]
    ptr = np.frombuffer(bytes(blob[32:32 + 4 * (s + 1)]), "<u4")
    perm = np.frombuffer(bytes(blob[perm_at:perm_at + 64 * s]), "<u4")
    col = np.frombuffer(bytes(blob[col_at:col_at + 2 * nslots]), "<u2")
    val = np.frombuffer(bytes(blob[values_at:values_at + bsz * nslots]), np.int8).reshape(nslots, bsz)
    w = np.zeros((n, k), np.int64)
    for sl in range(s):
        for i in range(ptr[sl], ptr[sl + 1]):
            r = perm[16 * sl + (i - ptr[sl]) % 16]
            if r != 0xFFFFFFFF:  # padding slots hold zeros (at column 0): add, not assign
                w[r, bsz * col[i]:bsz * col[i] + bsz] += val[i]
    return w


def test_extreme_weights_and_inputs_are_exact(rng, monkeypatch):
    """Worst case for 8-bit products (where vpmaddubsw would saturate: u8 255 x s8 -128 twice
    is -65280): every stored weight set to -128 or 127, inputs -128 or 127 (some rows all 127
    against all -128 weights), per-channel scales set so the outputs span the int8 range (so a
    wrong accumulator shows); many rows (quad kernels) and 1-15 rows (windowed kernels). Every
    path against a numpy reference built from the packed bytes, and all paths bit-identical."""
    import flatbuffers

    k_in, n_out = 200, 40
    dense, sparse = _int8_models("fc", k_in, n_out, None, "block", rng)
    _, _, b, (sx, zx), (sy, zy) = _quant_params(dense)
    model, buf, blob = _blob_of(sparse)
    n, k, nslots, _, _, _, values_at, scales_at = _tfcs_sections(blob)
    vals = np.frombuffer(bytes(blob[values_at:values_at + 4 * nslots]), np.int8).copy()
    extreme = np.where(rng.random(vals.shape) < 0.5, -128, 127).astype(np.int8)
    extreme[: vals.size // 2] = -128  # half of the channels' weights all -128
    vals = np.where(vals != 0, extreme, 0).astype(np.int8)  # padding slots stay zero
    blob[values_at:values_at + vals.size] = vals.tobytes()
    w = _tfcs_dense(blob)
    assert (np.abs(w).sum(1) > 0).all() and (w == -128).mean() > 0.05
    for batch in (70, 9, 1):
        xq = np.where(rng.random((batch, k_in)) < 0.5, -128, 127).astype(np.int8)
        xq[: (batch + 1) // 2] = 127
        acc = (xq.astype(np.int64) - zx) @ w.T + b
        assert np.abs(acc).max() > 2 ** 18  # far beyond int16: a saturated pair would show
        # scales: |acc * sx * scale / sy| up to ~110 steps on each channel
        scale = (110.0 * sy / (sx * np.abs(acc).max(0))).astype(np.float32)
        blob[scales_at:scales_at + 4 * n] = scale.astype("<f4").tobytes()
        buf.data = np.frombuffer(bytes(blob), np.uint8)
        fb = flatbuffers.Builder(1024)
        fb.Finish(model.Pack(fb), file_identifier=b"TFL3")
        tfl = bytes(fb.Output())
        m = np.float32(np.float32(sx) * scale) / np.float32(sy)  # the C multiplier, in float32
        ref = np.clip(np.round(acc * m.astype(np.float64)) + zy, -128, 127).astype(np.int64)
        assert np.ptp(ref) > 150, "outputs should span the int8 range"
        outs = {}
        for path in CAPS:
            _set_path(monkeypatch, path)
            outs[path] = _run(tfl, xq)
            _check_kernel(path, batch)
            assert np.abs(outs[path] - ref).max() <= 1, (path, batch, np.abs(outs[path] - ref).max())
            assert (outs[path] == ref).mean() >= 0.99, (path, batch)
        for path in CAPS[1:]:
            assert np.array_equal(outs[path], outs[CAPS[0]]), (path, batch)


def _pool_jobs():
    """Jobs the kernels' thread pools ran in parallel or backed off (tfc_pool_stats)."""
    import ctypes

    from tfcompress.export.sparse_native import library_path

    out = (ctypes.c_longlong * 3)()
    ctypes.CDLL(library_path()).tfc_pool_stats(out)
    return out[0] + out[2]


@pytest.mark.parametrize("kind,k_in,n_out,shape", [
    ("conv", 96, 320, (1, 28, 28, 96)),  # many rows: 13 row tiles
    ("conv", 320, 640, (1, 7, 7, 320)),  # one row tile: (tile, channel part) units
    ("fc", 2048, 768, (9, 2048)),        # 1-15 rows: output-slice units
])
def test_new_x86_paths_on_two_threads(kind, k_in, n_out, shape, rng, monkeypatch):
    """The AVX2 and AVX-VNNI kernels on an interpreter with 2 threads (layers large enough to be
    split, tfc_op.c): bit-identical to 1 thread and to the portable kernels, within one step of
    the numpy reference."""
    dense, sparse = _int8_models(kind, k_in, n_out, "relu", "block", rng, spatial=shape[1:3])
    params = _quant_params(dense)
    xq = _quantize_input(dense, shape, rng)
    ref = _numpy_reference(params, xq, "RELU")
    _set_path(monkeypatch, "portable")
    want = _run(sparse, xq)
    for path in ("avxvnni", "avx2"):
        _set_path(monkeypatch, path)
        for threads in (1, 2):
            interp = load_interpreter(sparse, num_threads=threads)
            inp = interp.get_input_details()[0]
            if tuple(inp["shape"]) != shape:
                interp.resize_tensor_input(inp["index"], list(shape), strict=False)
                interp.allocate_tensors()
            _check_kernel(path, int(np.prod(shape[:-1])))
            interp.set_tensor(inp["index"], xq)
            jobs = _pool_jobs()
            interp.invoke()
            # the work went to the pool (parallel jobs + jobs run on the caller after a stall)
            assert (_pool_jobs() > jobs) == (threads == 2), (path, threads)
            got = interp.get_tensor(interp.get_output_details()[0]["index"]).astype(np.int64)
            assert np.array_equal(got, want), (path, threads, np.abs(got - want).max())
            assert np.abs(got - ref).max() <= 1, (path, threads)


def _float_conv(k_in, n_out, pattern, rng, activation="relu6"):
    """A float32 1x1 conv, 80 % zero (unstructured: channel pairs; Block((4, 1)): quads; Block((8, 1)):
    whole 8-channel groups), and its sparse TFLite file with the custom op."""
    from tfcompress.pruning import Block

    inp = keras.Input((None, None, k_in))
    layer = keras.layers.Conv2D(n_out, 1, activation=activation)
    model = keras.Model(inp, layer(inp))
    w = layer.kernel.numpy()
    if pattern in ("block4x1", "block8x1"):
        mask = Block((int(pattern[5]), 1)).compute_mask(np.abs(w.reshape(1, k_in, n_out)), 0.8).reshape(w.shape)
    else:
        mask = rng.random(w.shape) >= 0.8
    layer.kernel.assign(w * mask)
    layer.bias.assign(rng.standard_normal(n_out).astype("float32") * 0.3)
    sparse = rewrite_tflite(export_tflite(model)[0], "custom")
    assert custom_ops_in(sparse) == ["TFC_SPARSE_CONV_1X1"], sparse_kernel_report(sparse)
    return layer, sparse


@pytest.mark.parametrize("k_in,n_out,pattern,spatials", [
    (200, 37, "unstructured", [(13, 11), (4, 5)]),  # K > 128: feature chunks; N % 16 != 0; pairs
    (24, 40, "unstructured", [(8, 8), (9, 7)]),     # K % 8 != 0 (masked loads), full 64-row tile
    (200, 37, "block4x1", [(13, 11), (3, 6)]),      # quads, partial last quad
    (52, 20, "block4x1", [(8, 9)]),
])
def test_float32_avx2_csr_matches_avx512_and_numpy(k_in, n_out, pattern, spatials, rng, monkeypatch):
    """float32, >= 16 rows, x86 without AVX-512 (TFCOMPRESS_NO_AVX512=1, cap 1): the AVX2 CSR
    kernel, against a float64 numpy reference and bit-identical to the AVX-512 CSR kernel (the
    same FMAs in the same order)."""
    monkeypatch.setenv("TFCOMPRESS_F32_KERNEL", "csr")
    layer, sparse = _float_conv(k_in, n_out, pattern, rng)
    w = layer.kernel.numpy().reshape(k_in, n_out).astype(np.float64)
    for hw in spatials:
        x = rng.standard_normal((1,) + hw + (k_in,)).astype("float32")
        ref = np.clip(x.astype(np.float64) @ w + layer.bias.numpy(), 0, 6)
        outs = {}
        for path, want in (("portable", "portable_tiled_f32"), ("avx512f", "avx512_csr_f32"),
                           ("avx2", "avx2_csr_f32")):
            _set_path(monkeypatch, path)
            outs[path] = _invoke(sparse, x)
            if _has(*PATHS[path][2]):
                assert _last_kernel() == want, (path, _last_kernel())
            assert np.abs(outs[path] - ref).max() <= 1e-5 * np.abs(ref).max(), (path, hw)
        if _has("avx512f"):
            assert np.array_equal(outs["avx2"], outs["avx512f"]), (hw, np.abs(outs["avx2"] - outs["avx512f"]).max())


@pytest.mark.parametrize("k_in,n_out,pattern,hw", [
    (96, 320, "unstructured", (28, 28)),  # 13 row tiles
    (320, 640, "block4x1", (7, 7)),       # one tile: (tile, channel part) units
])
def test_float32_avx2_csr_on_two_threads(k_in, n_out, pattern, hw, rng, monkeypatch):
    """The AVX2 CSR kernel on 2 interpreter threads: the pool runs it, bit-identical to 1 thread."""
    _float32_on_two_threads(k_in, n_out, pattern, hw, "csr", rng, monkeypatch)


def _float32_on_two_threads(k_in, n_out, pattern, hw, kernel, rng, monkeypatch):
    layer, sparse = _float_conv(k_in, n_out, pattern, rng, activation=None)
    x = rng.standard_normal((1,) + hw + (k_in,)).astype("float32")
    ref = x.astype(np.float64) @ layer.kernel.numpy().reshape(k_in, n_out) + layer.bias.numpy()
    _set_path(monkeypatch, "avx2")
    monkeypatch.setenv("TFCOMPRESS_F32_KERNEL", kernel)
    outs = []
    for threads in (1, 2):
        interp = load_interpreter(sparse, num_threads=threads)
        inp = interp.get_input_details()[0]
        interp.resize_tensor_input(inp["index"], list(x.shape), strict=False)
        interp.allocate_tensors()
        if _has("avx2", "fma"):
            assert _last_kernel() == f"avx2_{kernel}_f32", _last_kernel()
        interp.set_tensor(inp["index"], x)
        jobs = _pool_jobs()
        interp.invoke()
        assert (_pool_jobs() > jobs) == (threads == 2), threads
        outs.append(interp.get_tensor(interp.get_output_details()[0]["index"]).copy())
    assert np.array_equal(outs[0], outs[1])
    assert np.abs(outs[0] - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("k_in,n_out,pattern,spatials", [
    (24, 40, "block8x1", [(8, 8), (3, 7)]),       # 64 rows (8 x 8 rows); 21 rows: a 5-row tail
    (200, 37, "block8x1", [(13, 11), (4, 5)]),    # N % 8 != 0: masked bias load and store
    (52, 20, "block4x1", [(8, 9)]),               # half-used 8-channel groups
    (17, 9, "unstructured", [(5, 6), (2, 9)]),    # K odd, 2 groups (the second of 1 channel)
])
def test_float32_g8_kernel_matches_numpy(k_in, n_out, pattern, spatials, rng, monkeypatch):
    """float32, >= 16 rows, AVX2 + FMA: the NHWC kernel on 8-channel groups (TFCOMPRESS_F32_KERNEL=g8,
    with and without AVX-512 hidden), against a float64 numpy reference, for any sparsity pattern."""
    layer, sparse = _float_conv(k_in, n_out, pattern, rng)
    w = layer.kernel.numpy().reshape(k_in, n_out).astype(np.float64)
    monkeypatch.setenv("TFCOMPRESS_F32_KERNEL", "g8")
    for hw in spatials:
        x = rng.standard_normal((1,) + hw + (k_in,)).astype("float32")
        ref = np.clip(x.astype(np.float64) @ w + layer.bias.numpy(), 0, 6)
        for path in ("avx512f", "avx2"):
            _set_path(monkeypatch, path)
            got = _invoke(sparse, x)
            if _has("avx2", "fma"):  # with AVX-512 too: tfc_pick_x86 plans the same kernel
                assert _last_kernel() == "avx2_g8_f32", (path, _last_kernel())
            assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max(), (path, hw)


@pytest.mark.parametrize("k_in,n_out,pattern,hw", [
    (96, 320, "block8x1", (28, 28)),  # 13 row tiles
    (320, 640, "block8x1", (7, 7)),   # one tile: (tile, channel part) units
    (320, 600, "block4x1", (7, 7)),   # 600 = 37 groups of 16 + 8: the last part ends at 8-channel group 75
])
def test_float32_g8_kernel_on_two_threads(k_in, n_out, pattern, hw, rng, monkeypatch):
    """The 8-channel-group kernel on 2 interpreter threads: the pool runs it, bit-identical to 1 thread."""
    _float32_on_two_threads(k_in, n_out, pattern, hw, "g8", rng, monkeypatch)


@pytest.mark.parametrize("path", ["avx2", "avx512f"])
@pytest.mark.parametrize("k_in,n_out,pattern,want", [
    (24, 96, "block8x1", "avx2_g8_f32"),     # every 8-channel group entry is 8 real weights
    (320, 640, "block8x1", "avx2_g8_f32"),
    (320, 640, "block4x1", "csr_f32"),       # groups of 8 would hold ~1.8x the weights of the quads
])
def test_float32_kernel_picked_by_cost(k_in, n_out, pattern, want, path, rng, monkeypatch):
    """Unforced, the x86 pickers run the 8-channel-group kernel where its entries cost less than the
    CSR kernel's quads plus the transposes (tfc_f32_prefer_g8), else the CSR kernel: with AVX-512
    the 512-bit CSR kernel, but the 256-bit g8 kernel all the same."""
    if not _has("avx2", "fma"):
        pytest.skip("the AVX2 float32 kernels need AVX2 + FMA")
    monkeypatch.delenv("TFCOMPRESS_F32_KERNEL", raising=False)
    _set_path(monkeypatch, path)
    layer, sparse = _float_conv(k_in, n_out, pattern, rng)
    x = rng.standard_normal((1, 8, 8, k_in)).astype("float32")
    got = _invoke(sparse, x)
    if want == "csr_f32":  # the CPU's widest CSR kernel
        want = "avx512_csr_f32" if path == "avx512f" and _has("avx512f") else "avx2_csr_f32"
    assert _last_kernel() == want
    ref = np.clip(x.astype(np.float64) @ layer.kernel.numpy().reshape(k_in, n_out) + layer.bias.numpy(), 0, 6)
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
