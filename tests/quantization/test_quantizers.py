"""Fake-quant primitives against numpy references: TF's nudged formula, symmetric per-channel
weights, the straight-through gradient, moving-average ranges and their freezing."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress.quantization import Int8Scheme, QuantizeLayer
from tfcompress.quantization._fake_quant import numpy_fake_quant, quantize_weight


def _np_symmetric(w, axis_reduce, bits=8):
    """Independent symmetric quantizer: scale = max|w| / (2^(b-1) - 1), round half away... to grid."""
    qmax = 2 ** (bits - 1) - 1
    m = np.max(np.abs(w), axis=axis_reduce, keepdims=True)
    scale = m / qmax
    return np.clip(np.round(w / scale), -qmax, qmax) * scale


def test_numpy_reference_matches_hand_computed_grid():
    # range [-1.28, 1.27] with 8 bits: scale 0.01, zero point 128: a plain 0.01 grid clipped to the range
    out = numpy_fake_quant(np.array([0.0, 0.304, -0.306, 5.0, -5.0]), -1.28, 1.27)
    np.testing.assert_allclose(out, [0.0, 0.30, -0.31, 1.27, -1.28], atol=1e-6)


def test_numpy_reference_nudges_the_range_like_tensorflow(rng):
    lo, hi = -0.37, 2.9
    scale = (hi - lo) / 255  # 0.012824
    zero_point = round(-lo / scale)  # 28.85 -> 29: the range moves so that 0.0 lies on the grid
    nudged_lo, nudged_hi = -zero_point * scale, (255 - zero_point) * scale  # -0.37188, 2.89812
    out = numpy_fake_quant(np.array([0.0, -5.0, 5.0, lo]), lo, hi)
    np.testing.assert_allclose(out, [0.0, nudged_lo, nudged_hi, nudged_lo], atol=1e-6)
    x = rng.normal(scale=2.0, size=1000).astype("float32")
    want = tf.quantization.fake_quant_with_min_max_vars(x, lo, hi).numpy()  # TensorFlow's kernel
    np.testing.assert_allclose(numpy_fake_quant(x, lo, hi), want, atol=1e-6)


@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (0.0, 6.0), (-0.37, 2.9)])
def test_activation_fake_quant_matches_numpy_reference(lo, hi, rng):
    x = rng.normal(scale=3.0, size=1000).astype("float32")
    layer = QuantizeLayer(output_range=(lo, hi))
    got = np.asarray(layer(x))
    np.testing.assert_allclose(got, numpy_fake_quant(x, lo, hi), atol=1e-5)
    assert len(np.unique(got)) <= 256


def test_conv_weights_are_symmetric_per_output_channel(rng):
    w = rng.normal(size=(3, 3, 4, 6)).astype("float32") * np.arange(1, 7, dtype="float32")
    got = np.asarray(quantize_weight(w, "last"))
    want = _np_symmetric(w, axis_reduce=(0, 1, 2))
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(w).max())
    for c in range(6):  # each channel keeps its own max and uses at most 255 levels
        assert np.isclose(np.abs(got[..., c]).max(), np.abs(w[..., c]).max(), rtol=1e-5)
        assert len(np.unique(got[..., c])) <= 255


def test_depthwise_weights_are_per_input_times_multiplier_channel(rng):
    w = rng.normal(size=(3, 3, 4, 2)).astype("float32") * rng.uniform(0.1, 5, size=(1, 1, 4, 2)).astype("float32")
    got = np.asarray(quantize_weight(w, "depthwise"))
    np.testing.assert_allclose(got, _np_symmetric(w, axis_reduce=(0, 1)), atol=1e-5 * np.abs(w).max())


def test_per_tensor_and_4bit_weights(rng):
    w = rng.normal(size=(16, 8)).astype("float32")
    np.testing.assert_allclose(np.asarray(quantize_weight(w, None)), _np_symmetric(w, None), atol=1e-6)
    w4 = np.asarray(quantize_weight(w, None, num_bits=4))
    np.testing.assert_allclose(w4, _np_symmetric(w, None, bits=4), atol=1e-6)
    assert len(np.unique(w4)) <= 15


def test_straight_through_gradient_is_one_inside_range_zero_outside():
    x = tf.constant([-3.0, -0.5, 0.0, 0.7, 2.5])
    layer = QuantizeLayer(output_range=(-1.0, 1.0))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(layer(x))
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [0, 1, 1, 1, 0])


def test_ranges_follow_moving_average_then_freeze():
    scheme = Int8Scheme(ema_decay=0.9, freeze_step=2)
    layer = QuantizeLayer(scheme)
    b1 = np.array([-1.0, 2.0], "float32")
    b2 = np.array([-3.0, 4.0], "float32")
    layer(b1, training=True)  # first batch initialises the range
    assert (float(layer.tracker.min), float(layer.tracker.max)) == (-1.0, 2.0)
    layer(b2, training=True)  # EMA: 0.9 * old + 0.1 * batch
    np.testing.assert_allclose([float(layer.tracker.min), float(layer.tracker.max)], [-1.2, 2.2], rtol=1e-6)
    layer(np.array([-50.0, 50.0], "float32"), training=True)  # step 2 >= freeze_step: frozen
    np.testing.assert_allclose([float(layer.tracker.min), float(layer.tracker.max)], [-1.2, 2.2], rtol=1e-6)
    layer(np.array([-50.0, 50.0], "float32"), training=False)  # inference never moves ranges
    assert int(layer.step) == 3


def test_scheme_validates_and_marks_low_bit_weights_experimental():
    with pytest.raises(ValueError, match="ema_decay"):
        Int8Scheme(ema_decay=1.5)
    with pytest.raises(ValueError, match="weight_bits"):
        Int8Scheme(weight_bits=1)
    with pytest.warns(UserWarning, match="not deployable"):
        scheme = Int8Scheme(weight_bits=4)
    assert not scheme.deployable and Int8Scheme().deployable
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(scheme)).weight_bits == 4


def test_4bit_scheme_trains_conv_weights_on_a_15_level_grid(rng):
    from tfcompress.quantization import quantize

    model = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    with pytest.warns(UserWarning, match="experimental"):
        scheme = Int8Scheme(weight_bits=4)
    qat = quantize(model, scheme)
    mapping, _ = qat.layers[2].quantized_weights()
    kernel = np.asarray(mapping[0][1])
    want = _np_symmetric(model.layers[0].get_weights()[0], axis_reduce=(0, 1, 2), bits=4)
    np.testing.assert_allclose(kernel, want, atol=1e-6)
    assert max(len(np.unique(kernel[..., c])) for c in range(3)) <= 15
