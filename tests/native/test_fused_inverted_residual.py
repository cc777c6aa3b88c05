"""TFC_SPARSE_INVERTED_RESIDUAL (tflite_export/tfc_fused*.c): one node per int8 MobileNetV2 block,
in the real LiteRT interpreter, against two independent references:

* the dense int8 file of the same weights run by LiteRT (XNNPACK): expand 1x1 + ReLU6, [PAD],
  depthwise 3x3 + ReLU6, project 1x1, [ADD] as separate nodes. The fused op computes the same
  integers (same float multipliers, round half to even, XNNPACK's integer ADD), so outputs must
  be EQUAL;
* a numpy model of TFLite's int8 semantics layer by layer, in float64, read from the dense
  file's own weights and quantization (no code of the packer): within 1 step (float64 vs the
  runtime's float32 multipliers and XNNPACK's 21-bit ADD multipliers may round a tie the other
  way), and at least 99 % of the values equal.

Every dispatch level (TFCOMPRESS_ISA_CAP 0 portable, 1 AVX-512F, 2 AVX-512 VNNI), 1 and 2
threads, and several splits of the output rows.
"""

import ctypes
import struct

import keras
import numpy as np
import pytest

from tfcompress.export import export_tflite, load_interpreter
from tfcompress.export.sparse import rewrite_tflite, sparse_kernel_guard, sparse_kernel_report
from tfcompress.export.sparse_fused import FUSED_OP
from tfcompress.export.sparse_native import custom_ops_in, library_path

CAPS = ("0", "1", "2")


def _has(*flags):
    with open("/proc/cpuinfo") as f:
        info = f.read().split()
    return all(flag in info for flag in flags)


def _kernel_names():
    lib = ctypes.CDLL(library_path())
    lib.TfcFusedLastKernelNames.restype = ctypes.c_char_p
    return lib.TfcFusedLastKernelNames().decode()


def _block(hw, cin, cexp, cout, stride, expand, residual, keras_pad, seed, stem=0, stem_pad=False):
    """Dense int8 bytes of one pruned inverted-residual block (1x1s 80 % zero in 1x4 blocks).

    stem: image channels of a dense 3x3 stride-2 conv + ReLU6 before the block (MobileNetV2's
    first conv, `hw` is then the image size): SAME, or with stem_pad an explicit PAD of 1 on every
    side + VALID (the converter emits a PAD op)."""
    model, rng = block_model(hw, cin, cexp, cout, stride, expand, residual, keras_pad, seed, stem, stem_pad)
    calib = (rng.standard_normal((32,) + hw + (stem or cin,)) + 0.5).astype("float32")
    dense, _ = export_tflite(model, quantize="int8", representative_data=calib)
    return dense


def block_model(hw, cin, cexp, cout, stride, expand, residual, keras_pad, seed, stem=0, stem_pad=False):
    """(Keras model, its rng) of `_block`: random biases, 1x1 kernels 80 % zero in 1x4 blocks."""
    rng = np.random.default_rng(seed)
    inp = keras.Input(hw + (stem or cin,))
    x = inp
    if stem and stem_pad:
        x = keras.layers.ZeroPadding2D(1)(x)
        x = keras.layers.Conv2D(cin, 3, strides=2, padding="valid", activation=keras.activations.relu6)(x)
    elif stem:
        x = keras.layers.Conv2D(cin, 3, strides=2, padding="same", activation=keras.activations.relu6)(x)
    if expand:
        x = keras.layers.Conv2D(cexp, 1, activation=keras.activations.relu6)(x)
    if stride == 2 and keras_pad:  # as keras.applications.MobileNetV2: PAD + VALID depthwise
        x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)))(x)
        x = keras.layers.DepthwiseConv2D(3, strides=2, padding="valid", activation=keras.activations.relu6)(x)
    else:
        x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", activation=keras.activations.relu6)(x)
    x = keras.layers.Conv2D(cout, 1)(x)
    if residual:
        x = keras.layers.Add()([inp, x])
    model = keras.Model(inp, x)
    for layer in model.layers:
        if type(layer) is keras.layers.Conv2D and layer.kernel.shape[0] == 3:  # the stem: dense
            layer.bias.assign(rng.standard_normal(layer.bias.shape).astype("float32") * 0.2)
        elif type(layer) is keras.layers.Conv2D:
            k = layer.kernel.numpy()[0, 0]
            mask = np.repeat(rng.random((-(-k.shape[0] // 4), k.shape[1])) < 0.8, 4, axis=0)[: k.shape[0]]
            layer.kernel.assign(np.where(mask, 0.0, k)[None, None].astype("float32"))
            layer.bias.assign(rng.standard_normal(layer.bias.shape).astype("float32") * 0.2)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            layer.bias.assign(rng.standard_normal(layer.bias.shape).astype("float32") * 0.2)
    return model, rng


# (H, W), Cin, Ce, Co, stride, expand, residual, Keras-style PAD (stride 2)
CASES = {
    "s1_residual_strips": ((13, 16), 16, 64, 16, 1, True, True, False),   # 4 strips of 4 rows
    "s2_pad_even": ((12, 12), 24, 72, 32, 2, True, False, True),          # PAD(0,1) + VALID
    "s2_same_odd": ((9, 7), 12, 40, 20, 2, True, False, False),           # odd sizes and channels
    "no_expand": ((10, 10), 32, 32, 16, 1, False, False, False),          # MobileNetV2's first block
    "wide_residual": ((5, 70), 8, 48, 8, 1, True, True, False),           # one row per strip
    "ce96_tail32": ((7, 9), 16, 96, 16, 1, True, True, False),            # 64 + 32 channels (VNNI depthwise)
    "ce38_odd": ((6, 7), 12, 38, 12, 1, True, True, False),               # 32 + 6 channels (not whole dwords)
    # the first conv (3x3 stride 2 over 3 channels) fused as the expand: odd image, 56-wide map
    "stem_odd": ((17, 23), 32, 32, 16, 1, False, False, False, 3),
    "stem_wide": ((20, 112), 16, 16, 24, 2, False, False, False, 3),
    "stem_1ch": ((9, 8), 8, 8, 8, 1, False, False, False, 1),
    "stem_pad_valid": ((16, 15), 32, 32, 16, 1, False, False, False, 3, True),  # PAD + VALID conv
}


@pytest.fixture(scope="module")
def files():
    out = {}
    for i, (name, case) in enumerate(CASES.items()):
        dense = _block(*case[:8], seed=100 + i, stem=case[8] if len(case) > 8 else 0,
                       stem_pad=len(case) > 9 and case[9])
        fused = rewrite_tflite(dense, "custom")
        out[name] = (dense, fused)
    return out


def _run(tflite, xq, threads=1):
    interp = load_interpreter(tflite, num_threads=threads)
    interp.set_tensor(interp.get_input_details()[0]["index"], xq)
    out = interp.get_output_details()[0]
    # the arena may reuse the last interpreter's memory: fill the output so that a row the op
    # does not write cannot pass with the previous run's values
    interp.set_tensor(out["index"], np.full(out["shape"], 77, out["dtype"]))
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"]).astype(np.int64)


def _input(dense, rng):
    d = load_interpreter(dense).get_input_details()[0]
    return rng.integers(-128, 128, tuple(d["shape"])).astype(np.int8)


# ------------------------------------------------------------ numpy reference of the dense file

def _numpy_reference(dense, xq):
    """The dense int8 file's ops (CONV_2D, PAD, DEPTHWISE_CONV_2D, ADD) evaluated in float64."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(dense), 0)
    sg = model.subgraphs[0]
    B = schema.BuiltinOperator
    vals = {int(sg.inputs[0]): xq.astype(np.int64)}

    def q(i):
        t = sg.tensors[i].quantization
        return np.asarray(t.scale, np.float64), np.asarray(t.zeroPoint, np.int64)

    def const(i, dtype):
        t = sg.tensors[i]
        return np.asarray(model.buffers[t.buffer].data, np.uint8).view(dtype).reshape(t.shape).astype(np.int64)

    def requant(acc, mult, zo, act, so):
        y = np.round(acc * mult) + zo
        lo, hi = {0: (-np.inf, np.inf), 1: (0, np.inf), 3: (0, 6.0)}[act]
        qlo = max(-128, zo + (np.round(lo / so) if np.isfinite(lo) else -1e9))
        qhi = min(127, zo + (np.round(hi / so) if np.isfinite(hi) else 1e9))
        return np.clip(y, qlo, qhi).astype(np.int64)

    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = max(code.builtinCode, code.deprecatedBuiltinCode)
        ins, out = [int(i) for i in op.inputs], int(op.outputs[0])
        (so,), (zo,) = q(out)
        if kind in (B.CONV_2D, B.DEPTHWISE_CONV_2D):
            x = vals[ins[0]]
            (sx,), (zx,) = q(ins[0])
            w = const(ins[1], np.int8)
            ws, _ = q(ins[1])
            b = const(ins[2], np.int32)
            act = op.builtinOptions.fusedActivationFunction
            if kind == B.CONV_2D and w.shape[1] == 1:
                acc = np.einsum("bhwk,nk->bhwn", x - zx, w[:, 0, 0, :]) + b
            else:  # 3x3: depthwise, or the first conv (weights [O, 3, 3, C])
                st = op.builtinOptions.strideH
                _, H, W, C = x.shape
                if op.builtinOptions.padding == schema.Padding.SAME:
                    Ho, Wo = -(-H // st), -(-W // st)
                    pt, pl = max((Ho - 1) * st + 3 - H, 0) // 2, max((Wo - 1) * st + 3 - W, 0) // 2
                else:
                    Ho, Wo, pt, pl = (H - 3) // st + 1, (W - 3) // st + 1, 0, 0
                xp = np.zeros((1, H + 4, W + 4, C), np.int64)
                xp[:, pt:pt + H, pl:pl + W] = x - zx  # padding adds 0
                acc = np.zeros((1, Ho, Wo, w.shape[0] if kind == B.CONV_2D else C), np.int64) + b
                for kh in range(3):
                    for kw in range(3):
                        tap = xp[:, kh:kh + st * (Ho - 1) + 1:st, kw:kw + st * (Wo - 1) + 1:st]
                        if kind == B.CONV_2D:
                            acc += np.einsum("bhwc,nc->bhwn", tap, w[:, kh, kw, :])
                        else:
                            acc += tap * w[0, kh, kw]
            vals[out] = requant(acc, sx * ws / so, zo, act, so)
        elif kind == B.PAD:
            pads = const(ins[1], np.int32)
            vals[out] = np.pad(vals[ins[0]], pads, constant_values=zo)
        elif kind == B.ADD:
            (sa,), (za,) = q(ins[0])
            (sb,), (zb,) = q(ins[1])
            real = sa * (vals[ins[0]] - za) + sb * (vals[ins[1]] - zb)
            vals[out] = np.clip(np.round(real / so) + zo, -128, 127).astype(np.int64)
        else:
            raise AssertionError(f"unexpected op {kind} in the test block")
    return vals[int(sg.outputs[0])]


# ------------------------------------------------------------------------------------ tests

def test_blocks_are_fused_and_reported(files):
    """Each test block becomes ONE custom node (nothing else left), listed as fused in the report."""
    from ai_edge_litert import schema_py_generated as schema

    for name, (dense, fused) in files.items():
        assert custom_ops_in(fused) == [FUSED_OP], name
        m = schema.ModelT.InitFromPackedBuf(bytearray(fused), 0)
        assert len(m.subgraphs[0].operators) == 1, name
        rows = sparse_kernel_report(fused)
        assert [r["emitted"] for r in rows] == ["fused"], (name, rows)
        assert rows[0]["residual"] == CASES[name][6] and rows[0]["expand"] == CASES[name][5]
        assert rows[0]["stem"] == (len(CASES[name]) > 8), (name, rows[0])
        # the dense 1x1 and depthwise weights left the file (only packed uint8 blobs hold weights)
        held = [t for t in m.subgraphs[0].tensors
                if t.buffer < len(m.buffers) and m.buffers[t.buffer].data is not None
                and len(m.buffers[t.buffer].data) and t.type == schema.TensorType.INT8]
        assert held == [], (name, [t.name for t in held])


@pytest.mark.parametrize("name", sorted(CASES))
def test_fused_block_equals_dense_int8_and_numpy(name, files, rng, monkeypatch):
    dense, fused = files[name]
    xq = _input(dense, rng)
    want = _run(dense, xq)
    ref = _numpy_reference(dense, xq)
    assert np.abs(want - ref).max() <= 1 and np.mean(want == ref) >= 0.99  # the reference itself
    for cap in CAPS:
        monkeypatch.setenv("TFCOMPRESS_ISA_CAP", cap)
        got = _run(fused, xq)
        names = _kernel_names()
        np.testing.assert_array_equal(got, want, err_msg=f"{name} cap {cap} ({names})")
        assert np.abs(got - ref).max() <= 1 and np.mean(got == ref) >= 0.99, (name, cap)
        if cap == "0":
            assert "dw=dw_portable" in names and "portable" in names.split("project=")[1], names
        if cap in ("1", "2") and _has("avx512f", "avx512bw", "avx512vl"):
            assert "dw=dw_avx512" in names, names
        if cap == "2" and _has("avx512_vnni"):
            assert "avx512vnni" in names.split("project=")[1], names
            assert "dw=dw_avx512vnni " in names, names
        if cap == "1":
            assert "dw=dw_avx512 " in names or not _has("avx512bw"), names
        # the stem: straight from the image on AVX-512 VNNI (16 or 32 channels), else im2col + 1x1
        vnni_stem = len(CASES[name]) > 8 and CASES[name][1] in (16, 32) and cap == "2" and _has("avx512_vnni")
        assert ("expand=stem_avx512vnni" in names) == vnni_stem, (name, cap, names)
    if _has("avx2"):  # x86 without AVX-512 (TFCOMPRESS_NO_AVX512=1): AVX2 / AVX-VNNI 1x1s and depthwise
        monkeypatch.setenv("TFCOMPRESS_NO_AVX512", "1")
        for cap in ("1", "2"):
            monkeypatch.setenv("TFCOMPRESS_ISA_CAP", cap)
            got = _run(fused, xq)
            names = _kernel_names()
            np.testing.assert_array_equal(got, want, err_msg=f"{name} no-avx512 cap {cap} ({names})")
            assert "avx512" not in names, names
            vnni = cap == "2" and _has("avx_vnni")
            assert ("dw=dw_avxvnni " if vnni else "dw=dw_avx2 ") in names, names


@pytest.mark.parametrize("name", ["s1_residual_strips", "s2_same_odd", "wide_residual", "stem_odd", "stem_wide"])
def test_threads_and_row_splits_give_the_same_output(name, files, rng, monkeypatch):
    """Output rows split over 2 threads, or into 2, 3 and 7 ranges run in turn (each range
    recomputes its expanded halo rows), give the dense file's output exactly; also when the
    first range steals the back half of every other range's strips again and again (each
    stolen part runs with fresh expanded rows, the owners run what is left at their front)."""
    dense, fused = files[name]
    xq = _input(dense, rng)
    want = _run(dense, xq)
    for cap, threads, label in row_splits(monkeypatch):
        np.testing.assert_array_equal(_run(fused, xq, threads=threads), want, err_msg=f"{cap} {label}")


def row_splits(monkeypatch):
    """Sets the environment of each (ISA cap, split) the fused op must give the same bits for and
    yields (cap, threads, label): per cap one range on 1 thread, 2 threads, then 2 / 3 / 7 row
    ranges run in turn on 1 thread, without and with strip stealing."""
    for cap in CAPS:
        monkeypatch.setenv("TFCOMPRESS_ISA_CAP", cap)
        monkeypatch.delenv("TFCOMPRESS_TEST_RANGES", raising=False)
        monkeypatch.delenv("TFCOMPRESS_FUSED_STEAL", raising=False)
        yield cap, 1, "1 thread"
        yield cap, 2, "2 threads"
        for ranges in ("2", "3", "7"):
            monkeypatch.setenv("TFCOMPRESS_TEST_RANGES", ranges)
            for steal in ("0", "1"):
                monkeypatch.setenv("TFCOMPRESS_FUSED_STEAL", steal)
                yield cap, 1, f"{ranges} ranges steal {steal}"


def test_fusion_can_be_turned_off_and_auto_fuses_like_its_1x1s(files):
    dense, _ = files["s1_residual_strips"]
    off = rewrite_tflite(dense, "custom", fuse_blocks=False)
    assert custom_ops_in(off) == ["TFC_SPARSE_CONV_1X1"]
    assert "fused" not in [r["emitted"] for r in sparse_kernel_report(off)]
    # the cost model alone (no guard): a block is fused where it takes both 1x1s
    auto_nofuse = rewrite_tflite(dense, "auto", num_threads=None, fuse_blocks=False)
    convs = [r["emitted"] for r in sparse_kernel_report(auto_nofuse) if r["op"] == "CONV_2D 1x1"]
    auto = rewrite_tflite(dense, "auto", num_threads=None)
    fused = [r for r in sparse_kernel_report(auto) if r["emitted"] == "fused"]
    assert (len(fused) == 1) == (convs == ["custom", "custom"]), (convs, fused)
    assert custom_ops_in(rewrite_tflite(dense, "builtin")) == []


def test_guarded_auto_proposes_every_fusable_block(files):
    """With the measured guard, "auto" offers the fused block (its 1x1s are 80 % sparse) whatever
    the per-layer cost model predicts, and ships it or the dense block by measurement."""
    dense, _ = files["s2_pad_even"]
    out = rewrite_tflite(dense, "auto", num_threads=(1,))
    guard = sparse_kernel_guard(out)
    assert guard["rewritten_layers"] == 1, guard.get("result")  # the one fused block, no 1x1 node
    emitted = [r["emitted"] for r in sparse_kernel_report(out)]
    assert emitted in (["fused"], ["dense", "dense"]), emitted
    assert custom_ops_in(out) == (["TFC_SPARSE_INVERTED_RESIDUAL"] if emitted == ["fused"] else [])


def _mutated_params(tflite, fn):
    """The model with fn(blob) applied to the fused node's "TFCI" params (or fn(op) if it takes the op)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    sg = model.subgraphs[0]
    (op,) = sg.operators
    idx = 3 if len(op.inputs) == 7 else 1
    buf = model.buffers[sg.tensors[op.inputs[idx]].buffer]
    blob = bytearray(bytes(np.asarray(buf.data, np.uint8)))
    blob = fn(blob, op) or blob
    buf.data = np.frombuffer(bytes(blob), np.uint8)
    sg.tensors[op.inputs[idx]].shape = np.array([len(blob)], np.int32)
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _set(fmt, off, value):
    def fn(blob, op):
        struct.pack_into(fmt, blob, off, value)
    return fn


MALFORMED = [  # (change, message): every block
    (_set("<4s", 0, b"XXXX"), "bad magic"),
    (_set("<H", 4, 2), "unsupported version"),
    (_set("<B", 6, 16), "unknown flags"),
    (_set("<B", 7, 3), "stride must be 1 or 2"),
    (_set("<I", 8, 0), "must be in 1..65536"),
    (_set("<I", 12, 15), "input must be|residual block"),                  # W differs from the tensor
    (_set("<I", 20, 65), "byte length"),                        # Ce
    (_set("<I", 28, 40), "Ho/Wo"),                               # Ho beyond H + padding
    (_set("<I", 36, 5), "only 3x3"),
    (_set("<B", 44, 3), "paddings must be 0..2"),
    (_set("<B", 48, 1), "activations"),
    (_set("<B", 50, 1), "reserved"),
    (_set("<f", 52, float("nan")), "scales must be finite"),
    (_set("<i", 68, 200), "zero points"),
    (_set("<B", 90, 1), "reserved"),
    (lambda blob, op: blob[:-16], "byte length"),
    (lambda blob, op: struct.pack_into("<f", blob, len(blob) - 256, -1.0), "depthwise scales"),
    (lambda blob, op: struct.pack_into("<B", blob, 6, 0), "without expand"),  # flags vs node
    (lambda blob, op: setattr(op, "inputs", op.inputs[:6]), "expects 7 inputs"),
    (lambda blob, op: setattr(op, "inputs", np.array([op.inputs[0], op.inputs[1], op.inputs[2], op.inputs[3],
                                                      op.inputs[4], op.inputs[1], op.inputs[6]], np.int32)),
     "project: .*K/N|project"),
    (lambda blob, op: setattr(op, "customOptions", np.zeros(8, np.uint8)), "custom options"),
]

MALFORMED_STEM = [  # the stem fields (params flag bit 2)
    (_set("<B", 6, 4), "without expand, Cin must equal Ce"),                # stem flag without expand
    (_set("<B", 6, 7), "residual block needs stride 1, Cin == Co"),        # stem with residual
    (_set("<I", 76, 0), "stem Hi, Wi must be in"),
    (_set("<I", 80, 10), "do not fit Hi/Wi"),                               # 12 output columns need Wi >= 23
    (_set("<I", 84, 17), "stem input channels must be 1..16"),
    (_set("<I", 84, 2), "9 \\* Ci rounded up to 4"),                      # Ci vs Kp
    (_set("<B", 88, 3), "stem stride must be 1 or 2"),
    (_set("<B", 89, 3), "stem paddings must be 0..2"),
    (_set("<B", 91, 1), "reserved"),
    (_set("<I", 16, 31), "stem Cin|K/N"),                                   # Kp no longer 9 Ci rounded
]


@pytest.mark.parametrize("case,fn,message", [("s1_residual_strips",) + m for m in MALFORMED]
                         + [("stem_odd",) + m for m in MALFORMED_STEM])
def test_malformed_fused_nodes_fail_in_prepare(case, fn, message, files, monkeypatch):
    """Corrupted params / wiring of a fused node (and a stem's image size, channel count, stride,
    padding or filler byte) are rejected in Prepare with a message naming the problem, at every
    dispatch level, before any kernel runs."""
    _, fused = files[case]
    bad = _mutated_params(fused, fn)
    for cap in CAPS:
        monkeypatch.setenv("TFCOMPRESS_ISA_CAP", cap)
        with pytest.raises(ValueError, match=message):
            load_interpreter(bad)
