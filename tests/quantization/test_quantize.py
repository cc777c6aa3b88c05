"""quantize() end to end: the QAT Keras model against its int8 TFLite file (real converter, real
LiteRT), BatchNormalization folding against a numpy/float reference, layer coverage, model kinds."""

import keras
import numpy as np
import pytest

from tfcompress.export import export_tflite, run_tflite, verify
from tfcompress.quantization import QuantizeConfig, QuantizeLayer, QuantizeWrapper, calibrate, quantize
from tfcompress.quantization._fake_quant import numpy_fake_quant

L = keras.layers


def digits_cnn():
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(16, 3, padding="same", use_bias=False), L.BatchNormalization(), L.ReLU(),
        L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPooling2D(),
        L.Flatten(), L.Dense(32, activation="relu"), L.Dense(10),
    ])


def _compile(model, lr=1e-3):
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _output_step(qat):
    """One quantization step of the QAT model's output (its last quantization point)."""
    last = qat.layers[-1]
    tracker = last.output_tracker if isinstance(last, QuantizeWrapper) else last.tracker
    return (float(tracker.max) - float(tracker.min)) / 255.0


def test_digits_cnn_int8_file_matches_qat_model_and_float_accuracy(digits):
    (x_train, y_train), (x_test, y_test) = digits
    model = _compile(digits_cnn())
    model.fit(x_train, y_train, epochs=8, batch_size=32, verbose=0)
    float_acc = model.evaluate(x_test, y_test, verbose=0)[1]
    before = [w.copy() for w in model.get_weights()]

    qat = _compile(quantize(model), lr=1e-4)
    assert [w.shape for w in model.get_weights()] == [w.shape for w in before]
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before)), "input model mutated"
    assert [type(layer).__name__ for layer in qat.layers] == [
        "InputLayer", "QuantizeLayer", "QuantizeWrapper", "QuantizeWrapper", "MaxPooling2D", "Flatten",
        "QuantizeWrapper", "QuantizeWrapper"]  # BN folded and ReLU fused into the first conv
    qat.fit(x_train, y_train, epochs=2, batch_size=32, verbose=0)

    tflite, report = export_tflite(qat, quantize="int8")  # no representative data: QAT ranges
    assert report.is_full_integer, report.float_ops
    assert set(report.op_histogram) <= {"CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SHAPE",
                                        "STRIDED_SLICE", "PACK"}
    assert report.inputs[0]["dtype"] == "int8" and report.outputs[0]["dtype"] == "int8"
    parity = verify(qat, tflite, x_test)
    assert parity.top1_agreement >= 0.995
    assert parity.max_abs_error <= 3 * _output_step(qat)
    int8_acc = float(np.mean(run_tflite(tflite, x_test).argmax(-1) == y_test))
    assert int8_acc >= float_acc - 0.01, (int8_acc, float_acc)

    tflite_u8, report_u8 = export_tflite(qat, quantize="int8", input_type="uint8", output_type="uint8")
    assert report_u8.inputs[0]["dtype"] == "uint8" and report_u8.is_full_integer
    assert verify(qat, tflite_u8, x_test).top1_agreement >= 0.995


def test_batchnorm_folding_matches_float_reference(rng):
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    x = L.BatchNormalization(epsilon=1e-3)(x)
    model = keras.Model(inputs, L.ReLU(6.0)(x))
    bn = model.layers[2]
    gamma, beta = rng.uniform(0.5, 2, 4), rng.normal(size=4)
    mean, var = rng.normal(size=4), rng.uniform(0.2, 3, 4)
    bn.set_weights([gamma, beta, mean, var])
    qat = quantize(model)
    wrapper = qat.layers[2]
    assert isinstance(wrapper, QuantizeWrapper) and wrapper.batch_norm is not None and len(qat.layers) == 3
    x = rng.uniform(-1, 1, (16, 6, 6, 3)).astype("float32")
    qat(x, training=True)  # sets activation ranges from the batch (no weight update)

    # independent reference: fold by hand, quantize in numpy, run a plain float Conv2D.
    kernel = model.layers[1].get_weights()[0]
    scale = gamma / np.sqrt(var + 1e-3)
    folded = kernel * scale
    m = np.abs(folded).max(axis=(0, 1, 2))
    folded_q = np.clip(np.round(folded / (m / 127)), -127, 127) * (m / 127)
    ref_conv = L.Conv2D(4, 3, padding="same")
    ref_conv.build((None, 6, 6, 3))
    ref_conv.set_weights([folded_q, beta - mean * scale])
    in_q = qat.layers[1].tracker
    x_q = numpy_fake_quant(x, min(float(in_q.min), 0.0), float(in_q.max))
    ref = np.clip(np.asarray(ref_conv(x_q)), 0, 6)
    out_min, out_max = float(wrapper.output_tracker.min), float(wrapper.output_tracker.max)
    ref = numpy_fake_quant(ref, min(out_min, 0.0), out_max)
    got = np.asarray(qat(x, training=False))
    step = (out_max - min(out_min, 0.0)) / 255
    assert np.abs(got - ref).max() <= step + 1e-5
    assert np.mean(np.abs(got - ref) > 1e-5) < 0.01  # off by one step only at rounding ties

    tflite, report = export_tflite(qat, quantize="int8")
    assert report.op_histogram == {"CONV_2D": 1}, report.op_histogram  # no separate BN, ReLU6 fused
    assert np.abs(run_tflite(tflite, x) - got).max() <= 1.01 * step


def _coverage_model(kind):
    if kind == "conv1d":
        i = keras.Input((16, 4))
        x = L.Conv1D(8, 3, padding="same")(i)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
        x = L.MaxPooling1D()(x)
        x = L.Conv1D(8, 3, activation="relu")(x)
        x = L.GlobalAveragePooling1D()(x)
        return keras.Model(i, L.Dense(5)(x))
    if kind == "merge_activations":
        i = keras.Input((8, 8, 3))
        a = L.Conv2D(8, 3, padding="same", activation="relu")(i)
        b = L.Conv2D(8, 1)(i)
        x = L.Add()([a, b])
        c = L.Activation("hard_swish")(L.Concatenate()([x, a]))
        s = L.GlobalAveragePooling2D(keepdims=True)(c)
        s = L.Conv2D(16, 1, activation="hard_sigmoid")(s)
        x = L.Activation("sigmoid")(L.Multiply()([c, s]))
        x = L.AveragePooling2D(2)(x)
        x = L.Conv2DTranspose(4, 3, strides=2, padding="same")(x)
        return keras.Model(i, L.Dense(5, activation="softmax")(L.Reshape((-1,))(x)))
    if kind == "separable_depthwise":
        i = keras.Input((8, 8, 3))
        x = L.SeparableConv2D(8, 3, padding="same")(i)
        x = L.ReLU(6.0)(L.BatchNormalization()(x))
        x = L.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False)(x)
        x = L.Activation("relu")(L.BatchNormalization()(x))
        x = L.Flatten()(L.ZeroPadding2D()(x))
        return keras.Model(i, L.Dense(5, activation="tanh")(x))
    if kind == "embedding":
        i = keras.Input((6,), dtype="int32")
        x = L.Conv1D(8, 3, activation="relu")(L.Embedding(20, 8)(i))
        return keras.Model(i, L.Dense(5)(L.Flatten()(x)))
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["conv1d", "merge_activations", "separable_depthwise", "embedding"])
def test_layer_coverage_lowers_to_full_integer_and_matches(kind, rng):
    model = _coverage_model(kind)
    shape = (64,) + tuple(model.inputs[0].shape[1:])
    x = rng.integers(0, 20, shape).astype("int32") if kind == "embedding" else rng.normal(size=shape).astype("float32")
    qat = _compile(quantize(model))
    qat.fit(x, rng.integers(0, 5, 64), epochs=2, batch_size=16, verbose=0)
    tflite, report = export_tflite(qat, quantize="int8")
    assert report.is_full_integer, report.float_ops
    expected = qat.predict(x, verbose=0)
    got = run_tflite(tflite, x)
    # every element within 2 output steps of the Keras simulation, on average within a quarter step
    # (TFLite's integer softmax/logistic tables and requantization round differently at ties)
    step = _output_step(qat)
    assert np.abs(got - expected).max() <= 2 * step + 1e-6
    assert np.abs(got - expected).mean() <= 0.25 * step
    if kind == "merge_activations":
        assert {"HARD_SWISH", "LOGISTIC", "SOFTMAX", "TRANSPOSE_CONV", "CONCATENATION"} <= set(report.op_histogram)


def test_float_fallback_for_layers_without_integer_kernels(rng):
    """LayerNormalization / MultiHeadAttention / Conv3D stay float (documented); the rest is int8."""
    i = keras.Input((6, 8))
    x = L.LayerNormalization()(L.Add()([i, L.MultiHeadAttention(2, 4)(i, i)]))
    f = L.Dense(8)(L.Dense(16, activation="relu")(x))
    x = L.LayerNormalization()(L.Add()([x, f]))
    model = keras.Model(i, L.Dense(5)(L.GlobalAveragePooling1D()(x)))
    qat = quantize(model)
    kinds = {type(layer).__name__ for layer in qat.layers}
    assert {"MultiHeadAttention", "LayerNormalization", "QuantizeWrapper"} <= kinds
    x = rng.normal(size=(64, 6, 8)).astype("float32")
    qat = _compile(qat)
    qat.fit(x, rng.integers(0, 5, 64), epochs=2, batch_size=16, verbose=0)
    tflite, report = export_tflite(qat, quantize="int8")
    assert report.inputs[0]["dtype"] == "int8" and not report.is_full_integer
    assert {"QUANTIZE", "DEQUANTIZE", "BATCH_MATMUL", "SOFTMAX"} <= set(report.op_histogram)
    assert report.op_histogram["FULLY_CONNECTED"] >= 3
    # float regions compute in a different order than Keras; a value that lands on a rounding tie at
    # their output quantization point moves one step and the step propagates: a few steps at most
    err = np.abs(run_tflite(tflite, x) - qat.predict(x, verbose=0))
    assert err.max() <= 5 * _output_step(qat) and err.mean() <= _output_step(qat)

    conv3d = keras.Sequential([keras.Input((4, 4, 4, 2)), L.Conv3D(4, 3, activation="relu"), L.Flatten(),
                               L.Dense(5)])
    q3 = quantize(conv3d)
    x3 = rng.normal(size=(32, 4, 4, 4, 2)).astype("float32")
    q3(x3, training=True)
    tflite3, report3 = export_tflite(q3, quantize="int8")
    assert "CONV_3D" in report3.op_histogram and "FULLY_CONNECTED" in report3.op_histogram
    assert np.abs(run_tflite(tflite3, x3) - q3.predict(x3, verbose=0)).max() <= 2 * _output_step(q3)


class ScaledDense(L.Layer):
    """A custom layer tfcompress knows nothing about."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform")

    def call(self, x):
        return keras.ops.relu(keras.ops.matmul(x, self.kernel))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_custom_layer_needs_and_honours_a_quantize_config(rng):
    i = keras.Input((10,))
    model = keras.Model(i, L.Dense(5)(ScaledDense(8, name="mine")(i)))
    with pytest.raises(ValueError, match=r"'mine' of class ScaledDense.*QuantizeConfig.*keep_float=\['mine'\]"):
        quantize(model)
    qat = quantize(model, configs={"ScaledDense": QuantizeConfig(weights={"kernel": None})})
    x = rng.normal(size=(32, 10)).astype("float32")
    qat(x, training=True)
    kernel = model.get_layer("mine").get_weights()[0]
    m = np.abs(kernel).max() / 127
    wrapper = qat.get_layer("quant_mine")
    x_q = numpy_fake_quant(x, float(qat.layers[1].tracker.min), float(qat.layers[1].tracker.max))
    ref = np.maximum(x_q @ (np.round(kernel / m) * m), 0)
    ref = numpy_fake_quant(ref, float(wrapper.output_tracker.min), float(wrapper.output_tracker.max))
    got = wrapper(qat.layers[1](x))
    step = (float(wrapper.output_tracker.max) - float(wrapper.output_tracker.min)) / 255
    assert np.abs(np.asarray(got) - ref).max() <= step + 1e-5
    tflite, report = export_tflite(qat, quantize="int8")
    assert report.is_full_integer, report.float_ops


def test_nested_functional_model_and_keep_float(rng):
    inner_in = keras.Input((8, 8, 3))
    inner = keras.Model(inner_in, L.Conv2D(8, 3, activation="relu", name="inner_conv")(inner_in), name="inner")
    i = keras.Input((8, 8, 3))
    x = L.Flatten()(inner(i))
    model = keras.Model(i, L.Dense(4, name="head")(L.Dense(16, activation="relu", name="hidden")(x)))
    qat = quantize(model, keep_float=["hidden"])
    nested = qat.get_layer("inner")
    assert isinstance(nested, keras.Model) and isinstance(nested.layers[-1], QuantizeWrapper)
    assert isinstance(qat.get_layer("hidden"), L.Dense)  # kept float: no fake quant
    np.testing.assert_array_equal(qat.get_layer("hidden").get_weights()[0], model.get_layer("hidden").get_weights()[0])
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    qat(x, training=True)
    tflite, report = export_tflite(qat, quantize="int8")
    # the float island is the kept layer and the head up to its output quantization point
    assert [op.split()[0] for op in report.float_ops] == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
    assert report.op_histogram["CONV_2D"] == 1 and report.inputs[0]["dtype"] == "int8"
    assert np.abs(run_tflite(tflite, x) - qat.predict(x, verbose=0)).max() <= 2 * _output_step(qat)
    assert isinstance(qat.layers[1], QuantizeLayer)


class SubclassedNet(keras.Model):
    """A subclassed model places the quantization layers itself (its graph is invisible to quantize)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.quant_in = QuantizeLayer()
        self.conv = QuantizeWrapper(L.Conv2D(8, 3, use_bias=False), activation="relu6",
                                    batch_norm=L.BatchNormalization())
        self.flatten = L.Flatten()
        self.head = QuantizeWrapper(L.Dense(10))

    def call(self, x, training=None):  # Keras hands `training` to the layers only if call takes it
        return self.head(self.flatten(self.conv(self.quant_in(x))))


def test_subclassed_models_use_the_layers_directly(digits):
    (x_train, y_train), (x_test, _) = digits
    with pytest.raises(ValueError, match="subclassed SubclassedNet.*QuantizeWrapper"):
        quantize(SubclassedNet())
    model = _compile(SubclassedNet())
    model.fit(x_train, y_train, epochs=2, batch_size=32, verbose=0)
    tflite, report = export_tflite(model, quantize="int8")
    assert report.is_full_integer and report.op_histogram.get("CONV_2D") == 1, report.op_histogram
    parity = verify(model, tflite, x_test)
    assert parity.top1_agreement >= 0.99
    step = (float(model.head.output_tracker.max) - float(model.head.output_tracker.min)) / 255
    assert parity.max_abs_error <= 3 * step


def test_concat_inputs_are_quantized_at_the_concat_scale(rng):
    """An input that only a Concatenate reads runs at the concat's scale in TFLite: the QAT model
    quantizes it there too (no range of its own), so values beyond the calibrated range of the
    narrow branch are not clipped in one and kept in the other. The narrow conv is calibrated on x
    and run on 3 x: its outputs leave its own range, not the concat's (the wide branch is 20x)."""
    keras.utils.set_random_seed(1)
    i = keras.Input((6, 6, 3))
    narrow = L.Conv2D(4, 3, padding="same", activation="relu", name="narrow")(i)
    wide = L.Conv2D(4, 1, name="wide")(i)
    shared = L.Conv2D(4, 1, name="shared")(i)  # also read by the Add: keeps its own point
    y = L.Concatenate(name="cat")([narrow, wide, shared])
    model = keras.Model(i, [y, L.Add(name="add")([shared, wide])])
    model.get_layer("wide").kernel.assign(20.0 * np.asarray(model.get_layer("wide").kernel))
    x = rng.uniform(-1, 1, (32, 6, 6, 3)).astype("float32")
    qat = calibrate(quantize(model), x)
    assert qat.get_layer("quant_narrow").output_tracker is None
    assert qat.get_layer("quant_shared").output_tracker is not None
    tflite, report = export_tflite(qat, quantize="int8")
    assert report.is_full_integer, report.float_ops
    big = 3.0 * x
    want = [np.asarray(v) for v in qat(big)]
    got = run_tflite(tflite, big)
    tracker = qat.get_layer("quant_cat").output_tracker
    step = (float(tracker.max) - float(tracker.min)) / 255.0
    narrow = model.get_layer("narrow")
    # the narrow branch leaves the range it was calibrated on, and stays inside the concat's
    assert np.asarray(narrow(x)).max() < np.asarray(narrow(big)).max() <= float(tracker.max)
    assert np.abs(got[0] - want[0]).max() <= 1.01 * step
