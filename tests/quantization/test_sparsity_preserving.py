"""Pruning-preserving QAT and post-training int8 of pruned models: the zeros survive training, BN folding,
save/load and the int8 TFLite file (weights read from the flatbuffer with LiteRT's own schema, not with
tfcompress code); plus quantize()'s argument validation."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema

from tfcompress import pruning
from tfcompress.export import export_tflite, run_tflite
from tfcompress.quantization import Int8Scheme, QuantizeWrapper, calibrate, quantize
from tfcompress.quantization._fake_quant import numpy_fake_quant

L = keras.layers
SPARSITY = 0.8
_WEIGHT_OPS = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D,
               schema.BuiltinOperator.FULLY_CONNECTED}


def _compile(model, lr):
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def int8_weights(tflite):
    """`[(op name, int8 weight array, zero points)]` of every conv / FC op, read from the flatbuffer."""
    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    graph, found = model.subgraphs[0], []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin not in _WEIGHT_OPS:
            continue
        tensor = graph.tensors[op.inputs[1]]
        assert tensor.type == schema.TensorType.INT8, (tensor.name, tensor.type)
        data = np.asarray(model.buffers[tensor.buffer].data, dtype=np.uint8).view(np.int8)
        assert data.size == int(np.prod(tensor.shape)), tensor.name  # a constant, not computed at run time
        found.append((tensor.name.decode(), data, np.asarray(tensor.quantization.zeroPoint)))
    return found


def assert_sparse_int8_file(tflite, min_zeros=SPARSITY - 0.01):
    weights = int8_weights(tflite)
    assert len(weights) == 4  # two convs, two Dense
    for name, data, zero_points in weights:
        assert np.all(zero_points == 0), (name, zero_points)  # symmetric: the integer 0 is the real 0
        assert np.mean(data == 0) >= min_zeros, (name, float(np.mean(data == 0)))


@pytest.fixture(scope="module")
def pruned(digits):
    """A digits CNN (Conv-BN-ReLU, Conv-ReLU, Dense, Dense) pruned to 80 %, still wrapped; its accuracy."""
    (x_train, y_train), (x_test, y_test) = digits
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(16, 3, padding="same", use_bias=False), L.BatchNormalization(), L.ReLU(),
        L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(),
        L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10),
    ])
    _compile(model, 1e-3).fit(x_train, y_train, epochs=5, batch_size=32, verbose=0)
    wrapped = _compile(pruning.prune(model, schedule=pruning.PolynomialDecay(0.0, SPARSITY, 0, 200)), 1e-3)
    wrapped.fit(x_train, y_train, epochs=5, batch_size=32, verbose=0, callbacks=[pruning.PruningCallback()])
    acc = float(np.mean(pruning.strip(wrapped).predict(x_test, verbose=0).argmax(-1) == y_test))
    return wrapped, acc


def test_pruned_qat_int8_file_keeps_every_zero_and_the_accuracy(pruned, digits):
    (x_train, y_train), (x_test, y_test) = digits
    wrapped, pruned_acc = pruned
    qat = _compile(quantize(wrapped), 1e-4)
    qat.fit(x_train, y_train, epochs=3, batch_size=32, verbose=0)
    tflite, report = export_tflite(qat, quantize="int8")
    assert report.is_full_integer
    assert_sparse_int8_file(tflite)
    assert set(qat.preserved_sparsity) == {"conv2d", "conv2d_1", "dense", "dense_1"}
    int8_acc = float(np.mean(run_tflite(tflite, x_test).argmax(-1) == y_test))
    assert int8_acc >= pruned_acc - 0.005, (int8_acc, pruned_acc)


def test_stripped_pruned_model_keeps_zeros_through_keras_save_load_mid_qat(pruned, digits, tmp_path):
    (x_train, y_train), (x_test, y_test) = digits
    wrapped, pruned_acc = pruned
    stripped = pruning.strip(wrapped)  # plain layers whose kernels hold the zeros
    qat = _compile(quantize(stripped), 1e-4)
    qat.fit(x_train, y_train, epochs=1, batch_size=32, verbose=0)
    qat.save(tmp_path / "qat.keras")
    loaded = _compile(keras.models.load_model(tmp_path / "qat.keras"), 1e-4)  # no custom_objects
    loaded.fit(x_train, y_train, epochs=2, batch_size=32, verbose=0)
    tflite, _ = export_tflite(loaded, quantize="int8")
    assert_sparse_int8_file(tflite)
    int8_acc = float(np.mean(run_tflite(tflite, x_test).argmax(-1) == y_test))
    assert int8_acc >= pruned_acc - 0.005, (int8_acc, pruned_acc)
    masks = {layer.layer.name: layer.masks["kernel"].numpy() for layer in loaded.layers
             if isinstance(layer, QuantizeWrapper)}
    assert len(masks) == 4
    for layer in stripped.layers:
        if layer.name in masks:  # the mask is the stripped kernel's zeros, restored from the file
            np.testing.assert_array_equal(masks[layer.name], (layer.kernel.numpy() != 0).astype("float32"))


def test_post_training_int8_of_a_pruned_model_keeps_its_zeros(pruned, digits):
    (x_train, _), _ = digits
    wrapped, _ = pruned
    tflite, report = export_tflite(wrapped, quantize="int8", representative_data=x_train[:200])
    assert report.is_full_integer
    assert_sparse_int8_file(tflite)
    calibrated = calibrate(quantize(wrapped), x_train[:256])  # PTQ through the fake-quant model
    assert_sparse_int8_file(export_tflite(calibrated, quantize="int8")[0])


@pytest.mark.parametrize("per_channel", [True, False])
def test_mask_is_applied_before_batchnorm_folding_and_fake_quant(per_channel, rng):
    inputs = keras.Input((5, 5, 6))
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    model = keras.Model(inputs, L.BatchNormalization(epsilon=1e-3)(x))
    kernel = rng.normal(size=(3, 3, 6, 8)).astype("float32")
    kernel[rng.random(kernel.shape) < 0.7] = 0.0
    model.layers[1].set_weights([kernel])
    gamma, beta = rng.uniform(0.5, 2, 8), rng.normal(size=8)
    mean, var = rng.normal(size=8), rng.uniform(0.2, 3, 8)
    model.layers[2].set_weights([gamma, beta, mean, var])
    qat = quantize(model, Int8Scheme(per_channel=per_channel))
    wrapper = qat.layers[2]
    assert wrapper.masked_weights == ["kernel"] and wrapper.batch_norm is not None
    np.testing.assert_array_equal(wrapper.masks["kernel"].numpy(), (kernel != 0).astype("float32"))
    # Training moves the variable where the mask is 0 (here: by hand); the layer must not see it.
    wrapper.layer.kernel.assign(kernel + (kernel == 0) * 0.5)
    [(_, used)], _ = wrapper.quantized_weights()
    folded = kernel * (gamma / np.sqrt(var + 1e-3)).astype("float32")
    m = np.abs(folded).reshape(-1, 8).max(axis=0) if per_channel else np.abs(folded).max()
    expected = np.stack([numpy_fake_quant(folded[..., c], -mm, mm, narrow_range=True)
                         for c, mm in enumerate(np.broadcast_to(m, (8,)))], axis=-1)
    np.testing.assert_allclose(np.asarray(used), expected, atol=1e-6)
    assert np.all(np.asarray(used)[kernel == 0] == 0.0)
    # The gradient of a pruned entry is zero: an optimizer step leaves the zeros alone.
    with tf.GradientTape() as tape:  # Keras 3 has no backend-neutral gradient API
        loss = keras.ops.sum(qat(rng.normal(size=(2, 5, 5, 6)).astype("float32"), training=True) ** 2)
    grad = tape.gradient(loss, wrapper.layer.kernel)
    assert np.all(np.asarray(grad)[kernel == 0] == 0.0) and np.any(np.asarray(grad)[kernel != 0] != 0.0)


def test_auto_detection_and_opt_out(rng, digits):
    (x_train, y_train), _ = digits

    def dense_model(zero_fraction):
        model = keras.Sequential([keras.Input((8, 8, 1)), L.Flatten(), L.Dense(16, name="hidden"), L.Dense(10)])
        w = model.layers[1].kernel.numpy()
        w.reshape(-1)[rng.permutation(w.size)[:round(zero_fraction * w.size)]] = 0.0
        model.layers[1].kernel.assign(w)
        return model

    assert quantize(dense_model(0.0)).preserved_sparsity == {}  # a dense model gets no mask
    assert quantize(dense_model(0.005)).preserved_sparsity == {}  # under AUTO_MIN_ZEROS (1 %)
    few = dense_model(0.005)
    assert set(quantize(few, preserve_sparsity=True).preserved_sparsity) == {"hidden"}
    zero_init = keras.Sequential([keras.Input((4,)), L.Dense(3, kernel_initializer="zeros")])
    assert quantize(zero_init, preserve_sparsity=True).preserved_sparsity == {}  # all zero: never masked
    # preserve_sparsity=False is the old behaviour: the zeros fill in as the weights train.
    sparse = dense_model(0.8)
    for flag, expect_kept in ((False, False), ("auto", True)):
        qat = _compile(quantize(sparse, preserve_sparsity=flag), 1e-2)
        qat.fit(x_train[:128], y_train[:128], epochs=1, batch_size=32, verbose=0)
        zeros = float(np.mean(qat.get_layer("quant_hidden").layer.kernel.numpy() == 0))
        assert (zeros >= 0.79) == expect_kept, (flag, zeros)


def test_mid_pruning_masks_are_frozen_and_float_layers_warn(digits):
    (x_train, y_train), _ = digits
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Flatten(), L.Dense(16, name="hidden"),
                              L.Dense(10, name="logits")])
    wrapped = _compile(pruning.prune(model, schedule=pruning.PolynomialDecay(0.0, 0.9, 0, 100, frequency=5)), 1e-3)
    wrapped.fit(x_train[:320], y_train[:320], epochs=1, batch_size=32, verbose=0,
                callbacks=[pruning.PruningCallback()])  # 10 of 100 steps: part of the way
    mask = wrapped.get_layer("prune_hidden").pruned[0][3].numpy()
    assert 0.0 < np.mean(mask == 0) < 0.9
    with pytest.warns(UserWarning, match=r"\['logits'\]"):  # the wrapper's name is accepted too
        qat = quantize(wrapped, keep_float=["prune_logits"])
    np.testing.assert_array_equal(qat.get_layer("quant_hidden").masks["kernel"].numpy(), mask)
    assert qat.preserved_sparsity == {"hidden": pytest.approx(float(np.mean(mask == 0)))}
    with pytest.warns(UserWarning, match=r"\['logits'\]"):
        quantize(wrapped, keep_float=["logits"])


def test_quantize_validates_its_arguments():
    model = keras.Sequential([keras.Input((4,)), L.Dense(3, name="fc"), L.Dense(2, name="out")])
    with pytest.raises(TypeError, match="expects a keras.Model.*int"):
        quantize(42)
    with pytest.raises(ValueError, match=r"keep_float= names \['typo'\].*Layers: \['fc', 'out'\]"):
        quantize(model, keep_float=["typo"])
    with pytest.raises(ValueError, match=r"layers= names \['nope'\].*Layers: \['fc', 'out'\]"):
        quantize(model, layers=["fc", "nope"])
    with pytest.raises(TypeError, match="list of layer names"):
        quantize(model, layers=[3])
    with pytest.raises(ValueError, match="preserve_sparsity"):
        quantize(model, preserve_sparsity=None)
    with pytest.raises(TypeError, match="Int8Scheme"):
        quantize(model, scheme="int8")
    with pytest.raises(TypeError, match=r"configs\['fc'\]"):
        quantize(model, configs={"fc": {"kernel": None}})
    with pytest.raises(ValueError, match="preserve_clusters"):
        quantize(model, preserve_clusters="yes")
    with pytest.raises(ValueError, match="masked_weights"):
        QuantizeWrapper(L.Dense(2), masked_weights=["bias"])
    x = np.zeros((8, 4), "float32")
    for kwargs in ({"num_samples": 0}, {"num_samples": -5}, {"batch_size": 0}):
        with pytest.raises(ValueError, match=list(kwargs)[0]):
            calibrate(quantize(model), x, **kwargs)


def test_every_weight_kind_and_nested_models_keep_their_zeros(rng):
    """Conv2D (per channel), DepthwiseConv2D, SeparableConv2D (both kernels), Conv2DTranspose and Dense
    (per tensor), one of them in a nested model still wrapped by prune(): the zeros survive variables
    that moved where the mask is 0, a training epoch and the int8 export."""
    inner_in = keras.Input((4, 4, 8))
    inner = keras.Model(inner_in, L.SeparableConv2D(8, 3, padding="same", name="sep")(inner_in), name="inner")
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = L.BatchNormalization()(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.MaxPooling2D()(x)
    x = inner(x)
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same", name="convt")(x)
    x = L.Flatten()(x)
    model = keras.Model(inputs, L.Dense(10, name="fc")(x))
    for layer in [*model.layers, *inner.layers]:
        for var in layer.trainable_weights:
            if "kernel" in var.path:
                w = var.numpy()
                w[rng.random(w.shape) < 0.7] = 0.0
                var.assign(w)
    wrapped = pruning.prune(model, schedule=pruning.ConstantSparsity(0.5), layers=["sep"])
    sep = next(layer for layer in wrapped.get_layer("inner").layers if isinstance(layer, pruning.PruneWrapper))
    for _, var, _, mask_var, _ in sep.pruned:  # a mask of its own, unlike the kernel's zeros
        mask_var.assign((rng.random(var.shape) < 0.5).astype("float32"))
    masks = {name: mask_var.numpy() for name, _, _, mask_var, _ in sep.pruned}
    qat = quantize(wrapped)
    assert set(qat.preserved_sparsity) == {"conv", "dw", "sep/depthwise_kernel", "sep/pointwise_kernel",
                                           "convt", "fc"}
    nested = qat.get_layer("inner").get_layer("quant_sep")
    for name, mask in masks.items():
        np.testing.assert_array_equal(nested.masks[name].numpy(), mask)
    for wrapper in [*qat.layers, *qat.get_layer("inner").layers]:  # as if training had moved the zeros
        for name in getattr(wrapper, "masked_weights", []):
            var = getattr(wrapper.layer, name)
            w = var.numpy()
            var.assign(w + (w == 0) * np.abs(w).max())
    qat.compile(keras.optimizers.SGD(0.1), "mse")
    x = rng.random((32, 8, 8, 3)).astype("float32")
    qat.fit(x, rng.normal(size=(32, 10)).astype("float32"), epochs=1, batch_size=16, verbose=0)
    tflite, report = export_tflite(qat, quantize="int8")
    assert report.is_full_integer
    fb = schema.ModelT.InitFromPackedBuf(tflite, 0)
    graph, zeros = fb.subgraphs[0], []
    for op in graph.operators:
        code = fb.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) in _WEIGHT_OPS | {schema.BuiltinOperator.TRANSPOSE_CONV}:
            t = graph.tensors[op.inputs[1]]
            assert t.type == schema.TensorType.INT8 and np.all(np.asarray(t.quantization.zeroPoint) == 0)
            zeros.append(float(np.mean(np.asarray(fb.buffers[t.buffer].data) == 0)))
    # each tensor has at least its mask's zeros (so the k-th smallest fraction too): ~70 %, ~50 % for sep
    expected = sorted(qat.preserved_sparsity.values())
    assert len(zeros) == 6 and all(z >= e - 1e-6 for z, e in zip(sorted(zeros), expected)), (zeros, expected)
    assert min(expected) > 0.35
