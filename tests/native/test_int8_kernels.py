"""int8 tfcompress sparse kernels (TFC_SPARSE_FC, TFC_SPARSE_CONV_1X1) in the real LiteRT
interpreter, against two independent references:

* a numpy model of TFLite's int8 semantics (acc = bias + sum w (x - zp_x), per-channel
  requantization, zero point, fused activation clamp), computed in float64 from the
  quantization parameters stored in the dense int8 file;
* TFLite's own dense int8 kernels (XNNPACK) on the same int8 weights.

Both within one quantization step. Every dispatch level is forced in turn with
``TFCOMPRESS_ISA_CAP`` (0 portable C, 1 AVX-512F, 2 AVX-512 VNNI: tflite_export/tfc_op.c),
so the portable path is tested on an AVX-512 machine too.
"""

import struct

import keras
import numpy as np
import pytest

from tfcompress.export import export_tflite, load_interpreter
from tfcompress.export.sparse import rewrite_tflite, sparse_kernel_report
from tfcompress.export.sparse_native import custom_ops_in

CAPS = ("0", "1", "2")
# kernel names (tflite_export/tfc_kernels_*.c) each cap must reach on this machine, by rows
EXPECTED = {"0": ("portable_rows_i8", "portable_tiled_i8", "portable_tiled_i8"),
            "1": ("avx512_rows_i8_win|portable_rows_i8", "portable_tiled_i8", "portable_tiled_i8"),
            "2": ("avx512vnni_win", "avx512vnni_win", "avx512vnni_quads")}


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
    for cap in caps:
        monkeypatch.setenv("TFCOMPRESS_ISA_CAP", cap)
        got = _run(sparse, xq)
        rows = int(np.prod(xq.shape[:-1]))
        want = EXPECTED[cap][0 if rows < 4 else 1 if rows < 16 else 2]
        if cap == "0" or (cap == "1" and _has("avx512f")) or (cap == "2" and _has("avx512_vnni", "avx512bw")):
            assert any(_last_kernel().startswith(w) for w in want.split("|")), (cap, rows, _last_kernel())
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1, (cap, np.abs(got - ref).max())
        assert np.abs(got - y_dense).max() <= 1, (cap, np.abs(got - y_dense).max())
        # the requantization follows XNNPACK's (float scale sx * sw / sy, round half to even)
        assert (got == y_dense).mean() >= 0.99, (cap, (got == y_dense).mean())
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
            monkeypatch.setenv("TFCOMPRESS_ISA_CAP", cap)
            got = _run(sparse, xq)
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
])
def test_malformed_int8_weights_fail_in_prepare(fn, message, rng, monkeypatch):
    """Corrupted 1x4-block int8 weights of a many-row 1x1 conv are rejected in Prepare at
    every dispatch level, before any re-layout or kernel reads them."""
    _, sparse = _int8_models("conv", 48, 20, None, "block", rng, spatial=(8, 8))
    bad = _mutated_blob(sparse, fn)
    for cap in CAPS:
        monkeypatch.setenv("TFCOMPRESS_ISA_CAP", cap)
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
        monkeypatch.setenv("TFCOMPRESS_ISA_CAP", cap)
        outs = []
        for ranges in ("1", "2", "3", "7"):
            monkeypatch.setenv("TFCOMPRESS_TEST_RANGES", ranges)
            outs.append((_run(sparse, xq), _invoke(fsparse, xf)))
        for got_q, got_f in outs[1:]:
            assert np.array_equal(got_q, outs[0][0]), cap
            assert np.array_equal(got_f, outs[0][1]), cap
