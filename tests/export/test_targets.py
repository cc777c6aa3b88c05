"""Target reports: MobileNetV2 (96x96) to full int8 passes the Edge TPU and GPU checks as a user
expects; float/dynamic models and unsupported ops are named; per-tensor sparsity is exact."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress.export import export_tflite, inspect_tflite
from tfcompress.export.targets import EDGETPU_SUPPORTED_OPS, parse_gpu_analysis


@pytest.fixture(scope="module")
def mobilenet_int8():
    """One full-int8 Edge TPU export of MobileNetV2 96x96 per session (the slow conversion)."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), classes=10)
    calibration = np.random.default_rng(0).uniform(-1, 1, (8, 96, 96, 3)).astype("float32")
    tflite, report = export_tflite(model, quantize="int8", representative_data=calibration,
                                   target="edgetpu")
    return model, tflite, report


def _count_layers(model, cls):
    return sum(type(layer) is cls for layer in model.layers)


def test_mobilenet_int8_is_edgetpu_ready(mobilenet_int8):
    model, _, report = mobilenet_int8
    tpu = report.targets["edgetpu"]
    assert report.target == "edgetpu" and report.compatible is True
    assert tpu.compatible is True and tpu.offending_ops == [], tpu.summary()
    assert report.is_full_integer and report.float_ops == []
    assert report.inputs[0] == {"name": report.inputs[0]["name"], "dtype": "int8",
                                "shape": [1, 96, 96, 3]}
    assert report.outputs[0]["dtype"] == "int8" and report.outputs[0]["shape"] == [1, 10]
    # The op histogram matches the Keras architecture (BN and ReLU6 fold into the convs).
    assert report.op_histogram["DEPTHWISE_CONV_2D"] == _count_layers(
        model, keras.layers.DepthwiseConv2D)
    assert report.op_histogram["CONV_2D"] == _count_layers(model, keras.layers.Conv2D)
    assert report.op_histogram["ADD"] == _count_layers(model, keras.layers.Add)
    assert set(report.op_histogram) <= EDGETPU_SUPPORTED_OPS
    assert len(tpu.delegated_ops) == sum(report.op_histogram.values())


def test_mobilenet_int8_gpu_and_cpu_reports(mobilenet_int8):
    _, _, report = mobilenet_int8
    gpu, cpu = report.targets["gpu"], report.targets["cpu"]
    assert gpu.compatible is True and gpu.offending_ops == [], gpu.summary()
    assert cpu.compatible is True
    # XNNPACK takes every convolution of the int8 MobileNetV2.
    off = " ".join(cpu.offending_ops)
    assert "CONV_2D" not in off and "DEPTHWISE_CONV_2D" not in off, cpu.summary()
    assert len(cpu.delegated_ops) >= report.op_histogram["CONV_2D"]


def _float_cnn():
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3),
                             keras.layers.Flatten(), keras.layers.Dense(10)])


@pytest.mark.parametrize("quantize", [None, "dynamic"])
def test_edgetpu_names_float_ops_and_dynamic_shapes(quantize):
    _, report = export_tflite(_float_cnn(), quantize=quantize)
    tpu = report.targets["edgetpu"]
    assert tpu.compatible is False
    text = "\n".join(tpu.offending_ops)
    assert "CONV_2D (op #" in text and "float32 tensors" in text and "dynamic shape" in text
    assert "SHAPE (op #" in text and "not in the Edge TPU op list" in text  # Flatten, batch -1
    assert any("dynamic shape" in n for n in tpu.notes)
    assert any("is float32" in n for n in tpu.notes)


def test_unsupported_ops_are_named_for_every_target():
    inputs = keras.Input((16,))
    dense = keras.layers.Dense(8)(inputs)
    outputs = [
        keras.layers.Lambda(lambda t: tf.math.segment_sum(
            tf.transpose(t), tf.constant([0, 0, 1, 1, 2, 2, 3, 3])))(dense),
        keras.layers.Lambda(lambda t: keras.ops.top_k(t, 3)[0])(dense),
    ]
    _, report = export_tflite(keras.Model(inputs, outputs))
    assert {"SEGMENT_SUM", "TOPK_V2", "FULLY_CONNECTED"} <= set(report.op_histogram)
    for target in ("gpu", "edgetpu"):
        rep = report.targets[target]
        assert rep.compatible is False
        names = " ".join(rep.offending_ops)
        assert "SEGMENT_SUM (op #" in names and "TOPK_V2 (op #" in names, rep.summary()
    cpu = report.targets["cpu"]
    assert cpu.compatible is True  # LiteRT runs it, partly off XNNPACK
    assert any(o.startswith("SEGMENT_SUM") for o in cpu.offending_ops)
    assert any(o.startswith("TOPK_V2") for o in cpu.offending_ops)
    assert any(o.startswith("FULLY_CONNECTED") for o in cpu.delegated_ops)


def test_parse_gpu_analysis_reads_flagged_ops():
    text = (
        "Subgraph#0 main(T#0) -> [T#3]\n"
        "  Op#0 FULLY_CONNECTED(T#0, T#1, T#-1) -> [T#2]\n"
        "  Op#1 SEGMENT_SUM(T#2, T#4) -> [T#3]\n"
        "GPU COMPATIBILITY WARNING: Not supported op SEGMENT_SUM\n"
        "\nGPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at "
        "nodes 1 with TFLite runtime version 2.21.0\n"
    )
    ops, flagged, notes, looks_ok = parse_gpu_analysis(text)
    assert [op["name"] for op in ops] == ["FULLY_CONNECTED", "SEGMENT_SUM"]
    assert flagged == {"SEGMENT_SUM (op #1)": "Not supported op SEGMENT_SUM"}
    assert len(notes) == 1 and "nodes 1" in notes[0] and not looks_ok


def test_sparsity_per_tensor_matches_numpy(tmp_path):
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64), keras.layers.Dense(10)])
    kernel, bias = model.layers[0].get_weights()
    mask = np.random.default_rng(1).random(kernel.shape) < 0.7
    kernel[mask] = 0.0
    bias = np.linspace(0.1, 1.0, 64).astype("float32")  # nonzero: an all-zero bias is dropped
    model.layers[0].set_weights([kernel, bias])
    path = tmp_path / "sparse.tflite"
    export_tflite(model, path)
    report = inspect_tflite(path)
    expected = np.mean(kernel == 0)
    # The 32x64 kernel is stored (transposed) as one constant tensor of 2048 values.
    matches = [v for v in report.sparsity.values() if abs(v - expected) < 1e-12]
    assert matches, (expected, report.sparsity)
    # weight_sparsity covers constant tensors of 16+ values: both kernels and the 64-bias.
    kernel2 = model.layers[1].get_weights()[0]
    zeros = np.sum(kernel == 0) + np.sum(bias == 0) + np.sum(kernel2 == 0)
    total = kernel.size + bias.size + kernel2.size
    assert report.weight_sparsity == pytest.approx(zeros / total, abs=1e-9)
    assert report.custom_ops == []
    assert "Weight sparsity" in report.to_markdown()


def test_custom_ops_are_listed_and_named_off_accelerators():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((256,)), keras.layers.Dense(256), keras.layers.Dense(10)])
    kernel, bias = model.layers[0].get_weights()
    kernel[np.random.default_rng(0).random(kernel.shape) < 0.9] = 0.0  # 90 % sparse: packed
    model.layers[0].set_weights([kernel, bias])
    _, report = export_tflite(model, sparse_kernels="auto", num_threads=None)  # cost model, no timing
    assert report.custom_ops == ["TFC_SPARSE_FC"]
    for target in ("gpu", "edgetpu"):
        assert report.targets[target].compatible is False
        assert any(o.startswith("TFC_SPARSE_FC (op #") for o in report.targets[target].offending_ops)
    assert not any(o.startswith("TFC_SPARSE_FC") for o in report.targets["cpu"].delegated_ops)
    assert "**Custom ops:** TFC_SPARSE_FC" in report.to_markdown()
