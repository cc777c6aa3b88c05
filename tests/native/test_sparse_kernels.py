"""The tfcompress sparse kernels, compiled natively, run in the real LiteRT interpreter.

Every custom op is checked against the dense model: float32 max abs error <= 1e-4 of the
output scale, int8 within one quantization step of TFLite's own int8 kernels.
"""

import keras
import numpy as np
import pytest

from tfcompress.export import export_tflite, load_interpreter, run_tflite
from tfcompress.export.sparse import rewrite_tflite, sparse_kernel_report
from tfcompress.export.sparse_native import custom_ops_in
from tfcompress.pruning import Block


def _prune(model, sparsity, pattern, rng):
    """Zeros weights in numpy: unstructured, '2:4' or 'block' (1x4 along the input dim)."""
    for layer in model.layers:
        if not getattr(layer, "kernel", None) is not None:
            continue
        w = layer.kernel.numpy()
        k = w.reshape(-1, w.shape[-1])  # [K, N]
        if pattern == "unstructured":
            k[rng.random(k.shape) < sparsity] = 0
        elif pattern == "2:4":
            groups = k.reshape(-1, 4, k.shape[1])  # [K/4, 4, N]
            order = np.argsort(np.abs(groups), axis=1)
            np.put_along_axis(groups, order[:, :2, :], 0.0, axis=1)
        elif pattern == "block":
            mask = rng.random((k.shape[0] // 4, k.shape[1])) < sparsity
            k[np.repeat(mask, 4, axis=0)] = 0
        layer.kernel.assign(k.reshape(w.shape))
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.standard_normal(layer.bias.shape).astype("float32") * 0.1)
    return model


def _mlp(k_in, hidden, activation="relu"):
    return keras.Sequential([keras.Input((k_in,)), keras.layers.Dense(hidden, activation=activation),
                             keras.layers.Dense(10)])


def _conv_net(c_in, c_out, activation="relu6"):
    inp = keras.Input((6, 5, c_in))
    h = keras.layers.Conv2D(c_out, 1, activation=activation)(inp)
    h = keras.layers.Conv2D(c_in, 1)(h)
    return keras.Model(inp, h)


def _check_float(model, tflite, x):
    ref = model.predict(x, verbose=0)
    got = run_tflite(tflite, x)
    scale = float(np.abs(ref).max())
    assert np.abs(got - ref).max() <= 1e-4 * scale, (np.abs(got - ref).max(), scale)


@pytest.mark.parametrize("pattern,sparsity,k_in,activation", [
    ("unstructured", 0.9, 70, "relu"),   # K not a multiple of 32: tail window
    ("unstructured", 0.6, 64, None),
    ("2:4", 0.5, 48, "relu6"),
    ("block", 0.8, 64, "relu"),          # 1x4 blocks: the B=4 kernel
])
def test_fc_float_matches_dense(pattern, sparsity, k_in, activation, rng):
    model = _prune(_mlp(k_in, 40, activation), sparsity, pattern, rng)
    tflite, _ = export_tflite(model, sparse_kernels="custom")
    assert custom_ops_in(tflite) == ["TFC_SPARSE_FC"]
    report = sparse_kernel_report(tflite)
    assert [r["emitted"] for r in report] == ["custom", "custom"]
    x = rng.standard_normal((80, k_in)).astype("float32")
    _check_float(model, tflite, x[:1])   # batch 1: per-row kernel
    _check_float(model, tflite, x[:3])   # below the tile size
    _check_float(model, tflite, x[:9])   # tiled kernel, partial last tile
    _check_float(model, tflite, x)       # >= 16 rows: the AVX-512 CSR kernel where available


@pytest.mark.parametrize("pattern", ["unstructured", "block"])
def test_conv1x1_float_matches_dense(pattern, rng):
    model = _prune(_conv_net(24, 40), 0.8, pattern, rng)
    tflite, _ = export_tflite(model, sparse_kernels="custom")
    assert custom_ops_in(tflite) == ["TFC_SPARSE_CONV_1X1"]
    x = rng.standard_normal((3, 6, 5, 24)).astype("float32")
    _check_float(model, tflite, x[:1])
    _check_float(model, tflite, x)


@pytest.mark.parametrize("c_in,c_out,activation", [
    (200, 37, "relu6"),  # K > 128: features in chunks of 96 (last one 8); N % 16 != 0
    (24, 40, None),      # K < 16 per chunk block, N = 16 + 16 + 8
])
def test_conv1x1_many_rows_matches_dense(c_in, c_out, activation, rng):
    # 5 images x 30 pixels = 150 rows: two full 64-row tiles and a partial one (the AVX-512
    # CSR kernel when the CPU has it, the portable tiled kernel otherwise).
    model = _prune(_conv_net(c_in, c_out, activation), 0.8, "unstructured", rng)
    tflite, _ = export_tflite(model, sparse_kernels="custom")
    assert custom_ops_in(tflite) == ["TFC_SPARSE_CONV_1X1"]
    _check_float(model, tflite, rng.standard_normal((5, 6, 5, c_in)).astype("float32"))


@pytest.mark.parametrize("c_in,c_out", [(200, 37), (24, 40)])
def test_conv1x1_output_blocks_match_dense(c_in, c_out, rng):
    # Block((4, 1)) pruning: 4 consecutive output channels share their zeros, so one input row
    # feeds 4 channels (the CSR kernel's quad layout; 37 outputs leave a partial last quad).
    model = _conv_net(c_in, c_out, "relu")
    for layer in model.layers[1:]:
        w = layer.kernel.numpy()  # [1, 1, K, N]
        mask = Block((4, 1)).compute_mask(np.abs(w.reshape(1, *w.shape[2:])), 0.8)
        layer.kernel.assign(w * mask.reshape(w.shape))
    tflite, _ = export_tflite(model, sparse_kernels="custom")
    first = sparse_kernel_report(tflite)[0]
    assert first["pattern"] == "block4x1" and first["emitted"] == "custom", first
    _check_float(model, tflite, rng.standard_normal((5, 6, 5, c_in)).astype("float32"))


def _raw_int8(tflite, xq):
    interp = load_interpreter(tflite)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    ys = []
    for row in xq:
        interp.set_tensor(inp["index"], row[None])
        interp.invoke()
        ys.append(interp.get_tensor(out["index"])[0].copy())
    return np.stack(ys), out["quantization"]


@pytest.mark.parametrize("kind,pattern", [("fc", "unstructured"), ("fc", "block"),
                                          ("conv", "unstructured")])
def test_int8_within_one_step_of_tflite(kind, pattern, rng):
    if kind == "fc":
        model = _prune(_mlp(64, 48), 0.8, pattern, rng)
        x = rng.standard_normal((6, 64)).astype("float32")
    else:
        model = _prune(_conv_net(16, 32), 0.8, pattern, rng)
        x = rng.standard_normal((6, 6, 5, 16)).astype("float32")
    calib = rng.standard_normal((64,) + x.shape[1:]).astype("float32")
    dense, _ = export_tflite(model, quantize="int8", representative_data=calib)
    sparse = rewrite_tflite(dense, "custom")
    assert custom_ops_in(sparse), sparse_kernel_report(sparse)
    scale, zero = load_interpreter(dense).get_input_details()[0]["quantization"]
    xq = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    y_dense, _ = _raw_int8(dense, xq)
    y_sparse, _ = _raw_int8(sparse, xq)
    diff = np.abs(y_dense.astype(int) - y_sparse.astype(int))
    assert diff.max() <= 1, diff.max()


def test_builtin_block_sparse_fc(rng):
    model = _prune(_mlp(64, 32), 0.75, "block", rng)
    tflite, _ = export_tflite(model, sparse_kernels="builtin")
    report = sparse_kernel_report(tflite)
    assert report[0]["emitted"] == "builtin" and "1x4" in report[0]["reason"]
    assert custom_ops_in(tflite) == []
    _check_float(model, tflite, rng.standard_normal((4, 64)).astype("float32"))


def test_auto_decides_per_layer_and_drops_dense_weights(rng):
    model = _mlp(128, 96)
    for layer, sparsity in zip(model.layers, (0.9, 0.2)):  # the 20 % sparse layer stays dense
        w = layer.kernel.numpy()
        w[rng.random(w.shape) < sparsity] = 0
        layer.kernel.assign(w)
    dense, _ = export_tflite(model)
    fast, _ = export_tflite(model, sparse_kernels="auto", num_threads=None)  # cost model, no timing
    report = sparse_kernel_report(fast)
    assert [r["emitted"] for r in report] == ["custom", "dense"]
    assert "below" in report[1]["reason"] or "<" in report[1]["reason"]
    assert report[0]["packed_bytes"] < 0.3 * report[0]["dense_bytes"]
    # the 128x96 float kernel (48 KiB) is gone from the file
    assert len(fast) < len(dense) - 0.6 * 128 * 96 * 4
    _check_float(model, fast, rng.standard_normal((2, 128)).astype("float32"))


def test_no_sparse_kernels_leaves_model_alone(rng):
    model = _prune(_mlp(32, 16), 0.9, "unstructured", rng)
    tflite, _ = export_tflite(model)
    assert custom_ops_in(tflite) == []
    assert sparse_kernel_report(tflite) == []


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="sparse_kernels must be one of"):
        rewrite_tflite(b"", "fast")


def test_auto_keeps_narrow_convs_dense(rng):
    inp = keras.Input((5, 5, 16))
    h = keras.layers.Conv2D(80, 1, activation="relu")(inp)   # K = 16: dense under "auto"
    h = keras.layers.Conv2D(96, 1)(h)                         # K = 80: custom under "auto"
    model = _prune(keras.Model(inp, h), 0.8, "unstructured", rng)
    tflite, _ = export_tflite(model, sparse_kernels="auto", num_threads=None)  # cost model, no timing
    report = sparse_kernel_report(tflite)
    assert [r["emitted"] for r in report] == ["dense", "custom"]
    assert "16 input channels" in report[0]["reason"]
    _check_float(model, tflite, rng.standard_normal((2, 5, 5, 16)).astype("float32"))
