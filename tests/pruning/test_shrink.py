"""shrink(): physically smaller models whose outputs equal the masked model's."""

import keras
import numpy as np
import pytest

from pruning_models import apply_masks_now
from tfcompress.pruning import (Channels, ConstantSparsity, PruneWrapper, PruningCallback, Unstructured,
                                prune, shrink)

L = keras.layers


def _randomize_bn(model, rng):
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            shapes = [w.shape for w in layer.get_weights()]
            layer.set_weights([rng.uniform(0.5, 1.5, shapes[0]), rng.normal(0, 0.2, shapes[1]),
                               rng.normal(0, 0.2, shapes[2]), rng.uniform(0.5, 1.5, shapes[3])])


def _check_equal(pruned, small, x, original=None):
    a = np.asarray(pruned(x, training=False))
    b = np.asarray(small(x, training=False))
    assert np.abs(a - b).max() < 1e-5, np.abs(a - b).max()
    if original is not None:  # pruning did change the function
        assert np.abs(a - np.asarray(original(x, training=False))).max() > 1e-3


def test_sequential_cnn_with_flatten_after_training(digits, rng):
    (x, y), _ = digits
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(16, 3, name="c1"), L.BatchNormalization(name="bn"),
                              L.ReLU(), L.Conv2D(16, 3, activation="relu", name="c2"), L.Flatten(),
                              L.Dense(32, activation="relu", name="d1"), L.Dense(10, name="out")])
    _randomize_bn(model, rng)
    # independent reference of the first update: the 8 filters of c1 with the largest L1 norm stay
    l1 = np.abs(model.get_layer("c1").kernel.numpy()).sum(axis=(0, 1, 2))
    pruned = prune(model, schedule=ConstantSparsity(0.5, frequency=1000), pattern=Channels())
    assert "out" in pruned.unpruned_layers  # its channels are the model output
    apply_masks_now(pruned)
    small = shrink(pruned)
    np.testing.assert_allclose(small.get_layer("c1").kernel.numpy(),
                               model.get_layer("c1").kernel.numpy()[..., np.sort(np.argsort(-l1)[:8])])
    _check_equal(pruned, small, x[:64], original=model)
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x[:256], y[:256], epochs=1, batch_size=32, verbose=0, callbacks=[PruningCallback()])
    small = shrink(pruned)
    assert [small.get_layer(n).filters for n in ("c1", "c2")] == [8, 8]
    assert small.get_layer("d1").units == 16 and small.get_layer("d1").kernel.shape == (4 * 4 * 8, 16)
    assert small.get_layer("out").kernel.shape == (16, 10)
    _check_equal(pruned, small, x[:64])


def test_residual_add_groups_are_pruned_jointly(rng):
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(12, 1, name="a")(inp)
    a = L.BatchNormalization(name="bn_a")(a)
    b = L.DepthwiseConv2D(3, padding="same", name="dw")(a)
    b = L.Conv2D(12, 1, name="b")(b)
    h = L.Add(name="add")([a, b])
    c = L.Conv2D(12, 1, name="c")(h)
    h2 = L.Add(name="add2")([h, c])
    h2 = L.SeparableConv2D(10, 3, padding="same", depth_multiplier=2, name="sep")(h2)
    h2 = L.GlobalAveragePooling2D()(h2)
    out = L.Dense(5, name="out")(h2)
    model = keras.Model(inp, out)
    _randomize_bn(model, rng)
    pruned = prune(model, schedule=ConstantSparsity(0.5, frequency=1), pattern=Channels())
    groups = {l.layer.name: l.channel_group for l in pruned.layers if isinstance(l, PruneWrapper)}
    assert groups["a"] == groups["b"] == groups["c"]  # joined through both Adds
    apply_masks_now(pruned)
    small = shrink(pruned)
    for name in ("a", "b", "c"):
        assert small.get_layer(name).filters == 6
    assert small.get_layer("dw").kernel.shape[-2] == 6 and small.get_layer("sep").filters == 5
    assert small.get_layer("sep").pointwise_kernel.shape == (1, 1, 12, 5)
    _check_equal(pruned, small, rng.random((4, 8, 8, 3)).astype("float32"), original=model)


def test_mobilenet_v2_shrinks_to_the_masked_function(rng):
    model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), alpha=0.35, classes=10,
                                           classifier_activation=None)
    _randomize_bn(model, rng)
    pruned = prune(model, schedule=ConstantSparsity(0.5, frequency=1), pattern=Channels())
    apply_masks_now(pruned)
    small = shrink(pruned)
    assert small.count_params() < 0.4 * model.count_params()
    x = rng.random((2, 96, 96, 3)).astype("float32")
    _check_equal(pruned, small, x, original=model)
    # residual block: both inputs of block_2_add keep the same number of channels
    assert small.get_layer("block_1_project").filters == small.get_layer("block_2_project").filters


def test_shrink_errors():
    model = keras.Sequential([keras.Input((4,)), L.Dense(8), L.Dense(2)])
    with pytest.raises(ValueError, match="Channels"):
        shrink(prune(model, schedule=ConstantSparsity(0.5), pattern=Unstructured()))
    with pytest.raises(TypeError, match="keras.Model"):
        shrink("model")
