"""The quantizable-weights protocol: a user's own layer declares the weights to fake-quantize with
`tfcompress_quantizable_weights()`; quantize() and the int8 export use it. References: the float
model (cosine of the int8 file's outputs), numpy's symmetric rounding of the kernels (the int8
values in the file, read with LiteRT's own flatbuffer schema)."""

import keras
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from keras import ops

from tfcompress.export import export_tflite, run_tflite
from tfcompress.quantization import QuantizeConfig, QuantizeWrapper, quantize

L = keras.layers


@keras.saving.register_keras_serializable(package="tfcompress_tests")
class UserDense(L.Layer):
    """A Dense-like layer written by a user: matmul + bias (+ ReLU, which TFLite fuses)."""

    def __init__(self, units, relu=False, per_channel=False, **kwargs):
        super().__init__(**kwargs)
        self.units, self.relu, self.per_channel = units, relu, per_channel

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform",
                                      name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, x):
        y = ops.matmul(x, self.kernel) + self.bias
        return ops.relu(y) if self.relu else y

    def tfcompress_quantizable_weights(self):
        return [(self.kernel, "last")] if self.per_channel else [self.kernel]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "relu": self.relu, "per_channel": self.per_channel}


def _cosine(a, b):
    a, b = np.ravel(a).astype("float64"), np.ravel(b).astype("float64")
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _symmetric_int8(kernel, axis=None):
    """numpy reference: symmetric narrow-range int8 of `kernel` (per tensor, or per last-axis column)."""
    m = np.abs(kernel).max() if axis is None else np.abs(kernel).max(axis=0)
    scale = np.maximum(m, 1e-8) / 127.0
    return np.clip(np.round(kernel / scale), -127, 127), scale


def _fc_weights(tflite):
    """`[(int8 weights (out, in), scales, zero points, input/output tensor types)]` of each FULLY_CONNECTED."""
    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    graph, found = model.subgraphs[0], []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.FULLY_CONNECTED:
            continue
        w = graph.tensors[op.inputs[1]]
        data = np.asarray(model.buffers[w.buffer].data, dtype=np.uint8).view(np.int8)
        assert data.size == int(np.prod(w.shape)), "the weights are a constant of the file"
        types = (w.type, graph.tensors[op.inputs[0]].type, graph.tensors[op.outputs[0]].type)
        found.append((data.reshape(w.shape), np.asarray(w.quantization.scale),
                      np.asarray(w.quantization.zeroPoint), types))
    return found


def test_custom_dense_qat_exports_int8_weights_and_agrees_with_the_float_model(digits, tmp_path):
    (x_train, y_train), (x_test, _) = digits
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Flatten(), UserDense(32, relu=True, name="hidden"),
                              UserDense(10, name="logits")])
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=12, batch_size=32, verbose=0)
    qat = quantize(model)
    wrappers = [l for l in qat.layers if isinstance(l, QuantizeWrapper)]
    assert [type(w.layer).__name__ for w in wrappers] == ["UserDense", "UserDense"]
    assert all(w.quantize_config.weights == {"kernel": None} for w in wrappers)  # declared, per tensor
    qat.compile(keras.optimizers.Adam(3e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x_train, y_train, epochs=2, batch_size=32, verbose=0)

    # the kernel the layer computes with in training is numpy's symmetric int8 grid of its kernel
    for w in wrappers:
        [(var, fake)], _ = w.quantized_weights()
        q, scale = _symmetric_int8(var.numpy())
        np.testing.assert_allclose(np.asarray(fake), q * scale, rtol=0, atol=1e-6)

    path = str(tmp_path / "qat.keras")  # saved mid-QAT, loads back with the user's layer wrapped
    qat.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x_test)), np.asarray(qat(x_test)), rtol=1e-5, atol=1e-5)

    tflite, report = export_tflite(loaded, quantize="int8")  # real converter, QAT ranges, no calibration
    fcs = _fc_weights(tflite)
    assert len(fcs) == 2
    int8 = schema.TensorType.INT8
    for (data, scales, zero_points, types), w in zip(fcs, wrappers):
        assert types == (int8, int8, int8)  # weights, input and output of both layers are int8
        assert np.all(zero_points == 0) and scales.size == 1  # symmetric, per tensor as declared
        q, scale = _symmetric_int8(w.layer.kernel.numpy())
        np.testing.assert_allclose(scales[0], scale, rtol=1e-5)
        # TFLite stores FULLY_CONNECTED weights as (out, in): the transposed numpy-rounded kernel
        assert np.mean(data.T == q) > 0.99 and np.abs(data.T - q).max() <= 1
    out = run_tflite(tflite, x_test)
    float_out = np.asarray(model(x_test))
    cosine, top1 = _cosine(out, float_out), np.mean(out.argmax(-1) == float_out.argmax(-1))
    print(f"custom UserDense QAT int8 vs float: cosine {cosine:.4f}, top-1 agreement {top1:.3f}")
    assert cosine > 0.95 and top1 > 0.9


def test_unbuilt_custom_layer_in_a_wrapper_and_per_channel_axis(rng):
    """A wrapper made before the layer is built reads the declared weights at build; a declared
    per-channel axis rounds each output column on its own grid."""
    wrapper = QuantizeWrapper(UserDense(6, per_channel=True))
    x = rng.normal(size=(4, 5)).astype("float32")
    y = np.asarray(wrapper(x, training=True))
    assert wrapper.quantize_config.weights == {"kernel": "last"}
    [(var, fake)], _ = wrapper.quantized_weights()
    q, scale = _symmetric_int8(var.numpy(), axis=0)
    np.testing.assert_allclose(np.asarray(fake), q * scale, rtol=0, atol=1e-6)
    assert y.shape == (4, 6)
    again = QuantizeWrapper.from_config(wrapper.get_config())  # the resolved config is saved
    assert again.quantize_config.weights == {"kernel": "last"}


def test_per_channel_matmul_kernel_export_error_says_per_tensor(rng):
    """The converter cannot carry a per-channel axis through a FULLY_CONNECTED weight transpose: the
    error says which declaration to change."""
    model = keras.Sequential([keras.Input((6,)), UserDense(5, relu=True, per_channel=True), UserDense(3)])
    qat = quantize(model)
    qat(rng.normal(size=(8, 6)).astype("float32"), training=True)  # ranges for every point
    with pytest.raises(ValueError, match="Quantize that weight per tensor: axis None in the layer's "
                                         "tfcompress_quantizable_weights"):
        export_tflite(qat, quantize="int8")


class _Foreign(L.Layer):
    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 2))
        self.parts = [self.add_weight(shape=(2,), name="part")]

    def call(self, x):
        return ops.matmul(x, self.kernel) + self.parts[0]

    def tfcompress_quantizable_weights(self):
        return self.answer(self)


@pytest.mark.parametrize("answer, error, message", [
    (lambda self: [keras.Variable(np.zeros((3, 2)))], ValueError, "not one of the layer's weights"),
    (lambda self: [(self.kernel, "first")], ValueError, "must be None (per tensor), 'last'"),
    (lambda self: [self.parts[0]], ValueError, "not stored as an attribute"),
    (lambda self: self.kernel, TypeError, "return a list of variables"),
])
def test_protocol_errors_name_the_layer_and_the_fix(answer, error, message):
    layer = _Foreign(name="foreign")
    layer.answer = answer
    layer.build((None, 3))
    with pytest.raises(error, match="_Foreign.tfcompress_quantizable_weights\\(\\) of layer 'foreign'") as info:
        QuantizeConfig.for_layer(layer)
    assert message in str(info.value)


def test_quantize_without_a_declaration_points_to_the_protocol():
    class Plain(L.Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], 2))

        def call(self, x):
            return ops.matmul(x, self.kernel)

    model = keras.Sequential([keras.Input((3,)), Plain(name="plain")])
    with pytest.raises(ValueError, match="tfcompress_quantizable_weights") as info:
        quantize(model)
    assert "'plain' of class Plain" in str(info.value)
