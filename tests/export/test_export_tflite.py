"""export_tflite on Sequential, Functional (residual Add + BatchNormalization) and subclassed
models in every quantize mode, checked against the Keras outputs; options, errors, atomic write."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress.export import export_tflite, run_tflite, verify

MODES = [None, "float16", "dynamic", "int8"]
# (max |keras - tflite| on softmax outputs, min top-1 agreement with Keras) per mode.
TOLERANCE = {None: (1e-5, 1.0), "float16": (2e-2, 0.98), "dynamic": (0.1, 0.95),
             "int8": (0.1, 0.95)}


def _sequential():
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ], name="seq")


def _functional_residual_bn():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    y = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
    y = keras.layers.BatchNormalization()(y)
    x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D(2)(x))
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x), name="res_bn")


class _Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(16, 3, activation="relu")
        self.pool = keras.layers.Flatten()
        self.dense = keras.layers.Dense(10, activation="softmax")

    def call(self, x):
        return self.dense(self.pool(self.conv(x)))


@pytest.fixture(scope="module")
def trained(digits):
    """The three model kinds, each trained 12 epochs on the digits (BN statistics are real)."""
    (x_train, y_train), _ = digits
    keras.utils.set_random_seed(0)
    models = {"sequential": _sequential(), "functional": _functional_residual_bn(),
              "subclassed": _Subclassed(name="sub")}
    for model in models.values():
        model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x_train, y_train, epochs=12, batch_size=32, verbose=0)
        assert model.evaluate(x_train, y_train, verbose=0)[1] > 0.9, model.name
    return models


@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed"])
@pytest.mark.parametrize("quantize", MODES)
def test_every_mode_matches_keras(trained, digits, kind, quantize):
    (x_train, _), (x_test, _) = digits
    model = trained[kind]
    rep = x_train[:100] if quantize == "int8" else None
    tflite, report = export_tflite(model, quantize=quantize, representative_data=rep)
    result = verify(model, tflite, x_test)
    max_err, min_agree = TOLERANCE[quantize]
    assert result.max_abs_error <= max_err, result
    assert result.top1_agreement >= min_agree, result
    assert result.num_samples == len(x_test)
    weights = report.weight_dtypes
    if quantize is None:
        assert "int8" not in weights and "float16" not in weights and "float32" in weights
        assert report.inputs[0]["dtype"] == "float32"
    elif quantize == "float16":
        assert "float16" in weights and report.op_histogram.get("DEQUANTIZE", 0) >= 1
    elif quantize == "dynamic":
        # The converter quantizes weight tensors of 1024+ values to int8 (smaller stay float).
        if any(w.size >= 1024 for w in model.get_weights()):
            assert "int8" in weights and report.float_ops  # int8 weights, float activations
    else:
        assert report.is_full_integer and not report.float_ops
        assert report.inputs[0]["dtype"] == report.outputs[0]["dtype"] == "int8"
    assert report.size_bytes == len(tflite)


def test_path_is_written_and_model_not_mutated(trained, digits, tmp_path):
    model = trained["functional"]
    before = [w.copy() for w in model.get_weights()]
    names = [layer.name for layer in model.layers]
    path = tmp_path / "model.tflite"
    tflite, _ = export_tflite(model, path, quantize="int8", representative_data=digits[0][0][:50])
    assert path.read_bytes() == tflite
    assert sorted(os.listdir(tmp_path)) == ["model.tflite"]  # no temp file left behind
    assert [layer.name for layer in model.layers] == names
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_failed_export_leaves_no_file_and_keeps_an_old_one(tmp_path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda t: keras.ops.arctan(t))(keras.layers.Dense(4)(inputs))
    model = keras.Model(inputs, outputs, name="has_atan")
    fresh = tmp_path / "fresh.tflite"
    with pytest.raises(ValueError, match="has_atan.*Atan"):
        export_tflite(model, fresh)
    assert os.listdir(tmp_path) == []
    old = tmp_path / "old.tflite"
    old.write_bytes(b"previous contents")
    with pytest.raises(ValueError):
        export_tflite(model, old)
    assert old.read_bytes() == b"previous contents"
    assert os.listdir(tmp_path) == ["old.tflite"]


def test_nan_weights_are_refused_before_the_converter_runs(tmp_path):
    """A diverged training leaves NaN weights; the TFLite converter would crash the process on a QAT
    model holding them (segmentation fault). export_tflite names the weight, writes nothing and
    leaves the model as it was."""
    from tfcompress.quantization import calibrate, quantize

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.Flatten(), keras.layers.Dense(3, name="head")], name="diverged")
    x = np.random.default_rng(0).normal(size=(8, 6, 6, 2)).astype("float32")
    qat = calibrate(quantize(model), x)
    kernel = qat.get_layer("quant_head").layer.kernel
    bad = np.asarray(kernel.numpy())
    bad[0, 1], bad[2, 0] = np.nan, np.inf
    kernel.assign(bad)
    path = tmp_path / "m.tflite"  # Flatten: 4 x 4 x 4 = 64 features, head kernel 64 x 3 = 192
    for kwargs in ({"quantize": "int8"}, {}):
        with pytest.raises(ValueError, match=r"'diverged'.*'quant_head/head/kernel' holds 2 NaN or infinite value\(s\) of 192"):
            export_tflite(qat, path, **kwargs)
    assert os.listdir(tmp_path) == []
    np.testing.assert_array_equal(np.asarray(kernel.numpy()), bad)


def test_missing_directory_is_an_error_before_converting(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_tflite(trained["sequential"], tmp_path / "nope" / "m.tflite")


def _agreement(model, tflite, x):
    return np.mean(model.predict(x, verbose=0).argmax(-1) == run_tflite(tflite, x).argmax(-1))


@pytest.mark.parametrize("form", ["array", "dataset_xy_batched", "dataset_unbatched",
                                  "generator", "generator_function"])
def test_representative_data_forms(trained, digits, form):
    (x_train, y_train), (x_test, _) = digits
    x = x_train[:64]
    data = {
        "array": lambda: x,
        "dataset_xy_batched": lambda: tf.data.Dataset.from_tensor_slices(
            (x, y_train[:64])).batch(16),
        "dataset_unbatched": lambda: tf.data.Dataset.from_tensor_slices(x),
        "generator": lambda: (x[i : i + 8] for i in range(0, 64, 8)),
        "generator_function": lambda: (lambda: (sample for sample in x)),
    }[form]()
    model = trained["sequential"]
    tflite, report = export_tflite(model, quantize="int8", representative_data=data)
    assert report.is_full_integer
    assert _agreement(model, tflite, x_test) >= 0.95


@pytest.mark.parametrize("bad, name", [([np.zeros((8, 8, 1))], "list"), ("x.npy", "str"),
                                       ({"x": 1}, "dict"), (3.0, "float")])
def test_representative_data_wrong_type_names_it(trained, bad, name):
    with pytest.raises(TypeError, match=rf"numpy array.*Dataset.*generator.*{name}"):
        export_tflite(trained["sequential"], quantize="int8", representative_data=bad)


def test_representative_data_wrong_shape_and_empty(trained):
    with pytest.raises(ValueError, match="rank 4"):
        export_tflite(trained["sequential"], quantize="int8",
                      representative_data=np.zeros((2, 2), "float32"))
    with pytest.raises(ValueError, match="empty"):
        export_tflite(trained["sequential"], quantize="int8",
                      representative_data=(x for x in []))


def test_int8_without_calibration_says_what_to_do(trained):
    with pytest.raises(ValueError, match="needs representative_data"):
        export_tflite(trained["sequential"], quantize="int8")
    with pytest.raises(ValueError, match="quantization-aware"):
        export_tflite(trained["sequential"], target="edgetpu")


def test_uint8_and_float_io(trained, digits):
    (x_train, _), (x_test, _) = digits
    model = trained["sequential"]
    tflite, report = export_tflite(model, quantize="int8", representative_data=x_train[:64],
                                   input_type="uint8", output_type="uint8")
    assert report.inputs[0]["dtype"] == report.outputs[0]["dtype"] == "uint8"
    assert verify(model, tflite, x_test).top1_agreement >= 0.95
    tflite, report = export_tflite(model, quantize="int8", representative_data=x_train[:64],
                                   input_type="float32", output_type=tf.float32)
    assert report.inputs[0]["dtype"] == "float32" and "QUANTIZE" in report.op_histogram
    assert verify(model, tflite, x_test).top1_agreement >= 0.95


@pytest.mark.parametrize("kwargs, match", [
    ({"quantize": "int4"}, "quantize must be one of"),
    ({"target": "tpu"}, "target must be one of"),
    ({"quantize": "float16", "input_type": "int8"}, "need quantize='int8'"),
    ({"quantize": "int8", "input_type": "int16"}, "input_type must be"),
    ({"target": "edgetpu", "quantize": "float16"}, "edgetpu' needs quantize='int8'"),
])
def test_bad_options(trained, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export_tflite(trained["sequential"], **kwargs)


def test_targets_choose_conversion_settings(trained, digits):
    (x_train, _), (x_test, _) = digits
    model = trained["functional"]
    _, gpu = export_tflite(model, target="gpu")
    assert gpu.quantize == "float16" and "float16" in gpu.weight_dtypes
    tflite, tpu = export_tflite(model, target="edgetpu", representative_data=x_train[:64])
    assert tpu.quantize == "int8" and tpu.is_full_integer
    assert tpu.inputs[0]["shape"] == [1, 8, 8, 1] and tpu.outputs[0]["shape"] == [1, 10]
    assert tpu.compatible is True, tpu.targets["edgetpu"].summary()
    assert verify(model, tflite, x_test[:40]).top1_agreement >= 0.95  # runs 1 sample at a time


def test_rejects_non_models():
    with pytest.raises(TypeError, match="keras.Model"):
        export_tflite(lambda x: x)
