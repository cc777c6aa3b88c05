"""Post-training calibration, sensitivity / mixed precision, and .keras save/load mid-QAT."""

import keras
import numpy as np
import pytest

from tfcompress.export import export_tflite, run_tflite, verify
from tfcompress.quantization import (Int8Scheme, QuantizeLayer, QuantizeWrapper, calibrate, keep_float_for_budget, quantize,
                                     sensitivity)

L = keras.layers


@pytest.fixture(scope="module")
def trained(digits):
    (x_train, y_train), _ = digits
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(16, 3, padding="same", use_bias=False, name="conv"), L.BatchNormalization(name="bn"),
        L.ReLU(name="relu"), L.MaxPooling2D(), L.Flatten(), L.Dense(32, activation="relu", name="hidden"),
        L.Dense(10, name="logits"),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=6, batch_size=32, verbose=0)
    return model


def test_minmax_ranges_equal_float_activation_extremes(trained, digits):
    (x_train, _), _ = digits
    x = x_train[:300]
    ptq = calibrate(trained, x, method="minmax", num_samples=300)
    assert float(ptq.get_layer("quantize_input").tracker.min) == 0.0
    assert float(ptq.get_layer("quantize_input").tracker.max) == pytest.approx(float(x.max()))
    # independent reference: the float model's conv+bn+relu activations
    relu_out = keras.Model(trained.inputs, trained.get_layer("relu").output).predict(x, verbose=0)
    conv = ptq.get_layer("quant_conv")
    assert float(conv.output_tracker.min) == 0.0
    assert float(conv.output_tracker.max) == pytest.approx(float(relu_out.max()), rel=0.02)

    pct = calibrate(trained, x, method="percentile", percentile=99.0, num_samples=300)
    want = np.percentile(relu_out, 99.0)
    assert float(pct.get_layer("quant_conv").output_tracker.max) == pytest.approx(float(want), rel=0.05)
    mse = calibrate(trained, x, method="mse", num_samples=300)
    assert 0 < float(mse.get_layer("quant_conv").output_tracker.max) <= float(conv.output_tracker.max) * 1.001
    with pytest.raises(ValueError, match="method must be one of"):
        calibrate(trained, x, method="kl")


def test_ptq_export_needs_no_representative_data_and_keeps_accuracy(trained, digits):
    (x_train, _), (x_test, y_test) = digits
    float_acc = float(np.mean(trained.predict(x_test, verbose=0).argmax(-1) == y_test))
    ptq = calibrate(quantize(trained), x_train[:256])
    tflite, report = export_tflite(ptq, quantize="int8")
    assert report.is_full_integer
    assert verify(ptq, tflite, x_test).top1_agreement >= 0.995
    assert float(np.mean(run_tflite(tflite, x_test).argmax(-1) == y_test)) >= float_acc - 0.02


def _accuracy(model, x, y):
    return float(np.mean(model.predict(x, verbose=0).argmax(-1) == y))


def test_sensitivity_ranks_layers_by_output_error(trained, digits):
    _, (x_test, _) = digits
    errors = sensitivity(trained, x_test[:200])
    assert set(errors) == {"conv", "hidden", "logits"}
    values = list(errors.values())
    assert values == sorted(values, reverse=True) and all(v > 0 for v in values)


@pytest.mark.filterwarnings("ignore:Int8Scheme")
def test_budget_keeps_the_shortest_most_sensitive_prefix_float(trained, digits):
    """Against a brute force over every prefix of the sensitivity order (a harsh 3-bit scheme makes
    the accuracy drops large enough that the budgets select different prefixes)."""
    _, (x_test, y_test) = digits
    x, y = x_test[:200], y_test[:200]
    scheme = Int8Scheme(weight_bits=3, activation_bits=3)
    order = list(sensitivity(trained, x, y, scheme))
    float_acc = _accuracy(trained, x, y)
    drops = [float_acc - _accuracy(calibrate(quantize(trained, scheme, keep_float=order[:k]), x), x, y)
             for k in range(len(order) + 1)]
    assert drops[0] > 0.02, drops  # the fully quantized 3-bit model does lose accuracy
    for budget in sorted({min(max(d, 0.0), 1.0) for d in drops})[:2]:
        expected = next(k for k in range(len(order) + 1) if drops[k] <= budget or k == len(order))
        keep, acc = keep_float_for_budget(trained, x, y, max_accuracy_drop=budget, scheme=scheme)
        assert keep == order[:expected], (budget, drops)
        assert acc == pytest.approx(float_acc - drops[expected], abs=1e-9)


def test_save_load_mid_qat_resumes_ranges_and_step(trained, digits, tmp_path):
    (x_train, y_train), (x_test, _) = digits
    qat = quantize(trained)
    qat.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x_train[:256], y_train[:256], epochs=1, batch_size=32, verbose=0)
    path = tmp_path / "qat.keras"
    qat.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects, no scope
    np.testing.assert_array_equal(loaded.predict(x_test, verbose=0), qat.predict(x_test, verbose=0))
    points = [layer for layer in loaded.layers if isinstance(layer, (QuantizeLayer, QuantizeWrapper))]
    assert len(points) == 4 and all(int(layer.step) == 8 for layer in points)
    conv = loaded.get_layer("quant_conv")
    assert conv.batch_norm is not None and conv.activation == "relu"
    assert float(conv.output_tracker.max) == float(qat.get_layer("quant_conv").output_tracker.max)
    loaded.fit(x_train[:256], y_train[:256], epochs=1, batch_size=32, verbose=0)
    assert all(int(layer.step) == 16 for layer in points)
