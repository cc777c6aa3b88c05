"""MobileNet-style blocks built the way keras.applications builds them (hard-sigmoid from keras.ops
`x + 3.0` / `* (1 / 6)` operation nodes, hard-swish, squeeze-excite, depthwise, inverted residual)
-> quantize -> QAT steps -> full-int8 export with no representative data -> verify.

The full keras.applications MobileNetV3Small (96x96), MobileNetV2 and ResNet50 go through the same
path in benchmarks/qat_vs_tfmot.py: converting those graphs alone takes minutes on this machine,
beyond this suite's budget."""

import keras
import numpy as np

from tfcompress.export import export_tflite, run_tflite
from tfcompress.quantization import QuantizeLayer, QuantizeWrapper, quantize

L = keras.layers


def _hard_sigmoid(x):  # as keras.applications.mobilenet_v3 writes it
    return L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)


def _v3_block(x, expand, filters, se):
    shortcut = x
    x = L.Conv2D(expand, 1, use_bias=False)(x)
    x = L.Activation("hard_swish")(L.BatchNormalization()(x))
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = L.Activation("hard_swish")(L.BatchNormalization()(x))
    if se:
        s = L.GlobalAveragePooling2D(keepdims=True)(x)
        s = L.Conv2D(expand // 4, 1, activation="relu")(s)
        s = _hard_sigmoid(L.Conv2D(expand, 1)(s))
        x = L.Multiply()([x, s])
    x = L.BatchNormalization()(L.Conv2D(filters, 1, use_bias=False)(x))
    return L.Add()([shortcut, x]) if shortcut.shape[-1] == filters else x


def mini_mobilenet_v3():
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = L.Activation("hard_swish")(L.BatchNormalization()(x))
    x = _v3_block(x, 16, 8, se=True)
    x = _v3_block(x, 24, 12, se=False)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(10)(L.Dropout(0.2)(x)))


def test_mobilenet_v3_blocks_lower_to_full_int8_and_match(rng):
    model = mini_mobilenet_v3()
    for layer in model.layers:  # non-trivial BN statistics so folding and parity mean something
        if isinstance(layer, L.BatchNormalization):
            shapes = [w.shape for w in layer.get_weights()]
            layer.set_weights([rng.uniform(0.5, 1.5, shapes[0]), rng.normal(0, 0.2, shapes[1]),
                               rng.normal(0, 0.2, shapes[2]), rng.uniform(0.5, 1.5, shapes[3])])
    qat = quantize(model)
    folded = [layer for layer in qat.layers if isinstance(layer, QuantizeWrapper) and layer.batch_norm is not None]
    assert len(folded) == sum(isinstance(layer, L.BatchNormalization) for layer in model.layers)
    assert not any(isinstance(layer, L.BatchNormalization) for layer in qat.layers)
    # `x + 3.0` and `* (1 / 6)` are keras.ops nodes, not layers: each gets its own quantization point
    assert sum(isinstance(layer, QuantizeLayer) for layer in qat.layers) == 1 + 2

    x = rng.uniform(0, 1, (64, 16, 16, 3)).astype("float32")
    qat.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = qat.fit(x, rng.integers(0, 10, 64), batch_size=16, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()

    tflite, report = export_tflite(qat, quantize="int8")
    assert report.is_full_integer, report.float_ops
    assert {"HARD_SWISH", "DEPTHWISE_CONV_2D", "CONV_2D", "MUL", "ADD", "MEAN"} <= set(report.op_histogram)
    expected = qat.predict(x, verbose=0)
    got = run_tflite(tflite, x)
    head = qat.layers[-1]
    step = (float(head.output_tracker.max) - float(head.output_tracker.min)) / 255
    assert float(expected.max() - expected.min()) > 20 * step  # outputs are not a constant
    assert np.abs(got - expected).max() <= 4 * step
    assert np.abs(got - expected).mean() <= 0.5 * step
    assert np.mean(got.argmax(-1) == expected.argmax(-1)) >= 0.9
