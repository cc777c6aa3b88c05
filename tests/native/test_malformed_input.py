"""Malformed packed weights and options reach the real kernels' Prepare in the real LiteRT
interpreter and fail with a message naming the problem (never a crash or a silent result).

Offsets below are computed from the "TFCS" v1 layout documented in tflite_export/README.md.
"""

import struct

import flatbuffers
import keras
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from tfcompress.export import export_tflite, load_interpreter, run_tflite
from tfcompress.export.sparse import rewrite_tflite


def _pad16(x):
    return (x + 15) // 16 * 16


def _layout(blob):
    """Section offsets of a packed blob, from the documented header."""
    vt, block = blob[6], blob[7]
    n, k, nslots = struct.unpack_from("<III", blob, 8)
    ib = blob[20]
    s = (n + 15) // 16
    w = (k + 31) // 32
    off = {"slice_ptr": 32}
    off["perm"] = _pad16(32 + 4 * (s + 1))
    off["steps"] = _pad16(off["perm"] + 64 * s)
    off["col"] = _pad16(off["steps"] + s * w) if ib == 1 else off["steps"]
    off["values"] = _pad16(off["col"] + ib * nslots)
    off["scales"] = _pad16(off["values"] + (4 if vt == 1 else 1) * block * nslots)
    return off


def _sparse_model(block_pattern=False, k_in=40, quantize=None):
    rng = np.random.default_rng(1)
    model = keras.Sequential([keras.Input((k_in,)), keras.layers.Dense(24, activation="relu")])
    w = model.layers[0].kernel.numpy()
    if block_pattern:
        w[np.repeat(rng.random((k_in // 4, 24)) < 0.8, 4, axis=0)] = 0
    else:
        w[rng.random(w.shape) < 0.8] = 0
    model.layers[0].kernel.assign(w)
    if quantize == "int8":
        calib = rng.standard_normal((32, k_in)).astype("float32")
        dense, _ = export_tflite(model, quantize="int8", representative_data=calib)
        return rewrite_tflite(dense, "custom")
    tflite, _ = export_tflite(model, sparse_kernels="custom")
    return tflite


def _mutate(tflite, blob_fn=None, options=None):
    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    sg = model.subgraphs[0]
    (op,) = [o for o in sg.operators if model.operatorCodes[o.opcodeIndex].customCode]
    buf = model.buffers[sg.tensors[op.inputs[1]].buffer]
    if blob_fn is not None:
        blob = bytearray(bytes(np.asarray(buf.data, np.uint8)))
        blob = blob_fn(blob)
        buf.data = np.frombuffer(bytes(blob), np.uint8)
        sg.tensors[op.inputs[1]].shape = np.array([len(blob)], np.int32)
    if options is not None:
        op.customOptions = np.frombuffer(options, np.uint8)
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.fixture(scope="module")
def windowed():
    return _sparse_model()


def _put(offset_key, fmt, value, index=0):
    def fn(blob):
        off = _layout(blob)[offset_key] if offset_key else 0
        struct.pack_into(fmt, blob, off + index * struct.calcsize(fmt), value)
        return blob
    return fn


def test_valid_model_runs(windowed):
    assert run_tflite(windowed, np.ones((2, 40), np.float32)).shape == (2, 24)


@pytest.mark.parametrize("fn,message", [
    (lambda b: b"XXXX" + b[4:], "bad magic"),
    (_put(None, "<H", 2, index=2), "unsupported version"),
    (lambda b: b[:-16], "byte length"),
    (lambda b: b + b"\0" * 16, "byte length"),
    (lambda b: b[:20], "shorter than the 32-byte header"),
    (_put(None, "<B", 7, index=7), "block must be 1 or 4"),
    (_put(None, "<B", 3, index=20), "index_bytes must be 1, 2 or 4"),
    (_put(None, "<B", 1, index=25), "reserved header bytes"),
    (lambda b: b[:_layout(b)["perm"] + 4] + b[_layout(b)["perm"]:_layout(b)["perm"] + 4]
     + b[_layout(b)["perm"] + 8:], "twice"),
    (_put("perm", "<I", 999, index=0), "perm entry out of range"),
    (_put("slice_ptr", "<I", 8, index=1), "multiples of 16"),
    (_put("steps", "<B", 33), "more than 32 steps"),
    (_put("steps", "<B", 0), "do not fill the slice|window offset out of range"),
    (_put("col", "<B", 32), "window offset out of range"),
    (_put("values", "<f", float("nan")), "non-finite"),
])
def test_malformed_packed_weights_fail_in_prepare(windowed, fn, message):
    bad = _mutate(windowed, blob_fn=fn)
    with pytest.raises(ValueError, match=message):
        load_interpreter(bad)


def test_window_offset_past_k_is_rejected():
    # K = 40: the second window holds features 32..39, so offset 8 there is out of range.
    tflite = _sparse_model(k_in=40)

    def fn(blob):
        off = _layout(blob)
        steps0 = blob[off["steps"]]  # steps of window 0 in slice 0
        blob[off["col"] + 16 * steps0] = 8  # first slot of window 1
        return blob

    with pytest.raises(ValueError, match="window offset out of range"):
        load_interpreter(_mutate(tflite, blob_fn=fn))


def test_block_column_out_of_range():
    tflite = _sparse_model(block_pattern=True)  # 1x4 blocks: absolute u16 block columns
    with pytest.raises(ValueError, match="column index out of range"):
        load_interpreter(_mutate(tflite, blob_fn=_put("col", "<H", 10)))  # K/4 = 10 blocks


def test_int8_scales_must_be_positive():
    tflite = _sparse_model(quantize="int8")
    with pytest.raises(ValueError, match="scales must be finite and > 0"):
        load_interpreter(_mutate(tflite, blob_fn=_put("scales", "<f", 0.0)))


def test_packed_k_must_match_input():
    other = _sparse_model(k_in=48)
    blob = {}

    def grab(b):
        blob["x"] = bytes(b)
        return b

    _mutate(other, blob_fn=grab)
    bad = _mutate(_sparse_model(k_in=40), blob_fn=lambda b: bytearray(blob["x"]))
    with pytest.raises(ValueError, match="input last dim 40 != packed K 48"):
        load_interpreter(bad)


@pytest.mark.parametrize("options", [
    b"\x01\x01\x01\x00\x00\x00\x00",          # 7 bytes
    b"\x02\x01\x01\x00\x00\x00\x00\x00",      # version 2
    b"\x01\x09\x01\x00\x00\x00\x00\x00",      # activation 9
    b"\x01\x01\x05\x00\x00\x00\x00\x00",      # layout 5
    b"\x01\x01\x01\x00\x00\x00\x00\x01",      # reserved byte set
    b"",
])
def test_malformed_options_fail_in_prepare(windowed, options):
    with pytest.raises(ValueError, match="custom options must be 8 bytes"):
        load_interpreter(_mutate(windowed, options=options))


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_a_feature_stored_twice_in_one_lane_is_rejected(quantize):
    # The first lane's first two steps name the same block column with non-zero weights: the
    # portable kernels would add both, the re-laid kernels keep one, so Prepare refuses it.
    tflite = _sparse_model(block_pattern=True, quantize=quantize)

    def fn(blob):
        off, esz = _layout(blob), (1 if blob[6] == 9 else 4)
        assert struct.unpack_from("<I", blob, off["slice_ptr"] + 4)[0] >= 32  # >= 2 steps
        struct.pack_into("<H", blob, off["col"] + 2 * 16, struct.unpack_from("<H", blob, off["col"])[0])
        for slot in (0, 16):
            for b in range(4):
                struct.pack_into("<b" if esz == 1 else "<f", blob, off["values"] + esz * (4 * slot + b), 1)
        return blob

    with pytest.raises(ValueError, match="non-zero value twice"):
        load_interpreter(_mutate(tflite, blob_fn=fn))
