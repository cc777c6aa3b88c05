"""prune(): every model kind and layer type, independence from the original, errors."""

import keras
import numpy as np
import pytest

from pruning_models import (MODELS, apply_masks_now, leaf_layers, magnitude_masked_reference,
                      outputs, sample_input)
from tfcompress.pruning import Channels, ConstantSparsity, PruneWrapper, Unstructured, prune, strip

L = keras.layers


def test_every_model_kind_prunes_to_the_numpy_reference(model_kind):
    model = MODELS[model_kind]()
    x = sample_input(model)
    before = [w.copy() for w in model.get_weights()]
    pruned = prune(model, schedule=ConstantSparsity(0.5, frequency=1))
    # fresh wrappers have all-ones masks: same function as the original
    for a, b in zip(outputs(pruned, x), outputs(model, x)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    apply_masks_now(pruned)
    ref = magnitude_masked_reference(model, 0.5)
    for a, b in zip(outputs(pruned, x), outputs(ref, x)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # strip gives a wrapper-free model with the same outputs
    plain = strip(pruned)
    assert not any(isinstance(l, PruneWrapper) for l in leaf_layers(plain))
    assert any(isinstance(l, PruneWrapper) for l in leaf_layers(pruned))
    for a, b in zip(outputs(plain, x), outputs(ref, x)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # the user's model was not touched
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_layer_types_wrapped_and_unprunable_listed():
    model = MODELS["functional_multi_io"]()
    pruned = prune(model, schedule=ConstantSparsity(0.5), layers=lambda l: True)
    wrapped = {l.layer.name for l in pruned.layers if isinstance(l, PruneWrapper)}
    assert wrapped == {"c1", "c2", "out_img", "emb", "mha", "c1d", "out_tok"}
    seq = prune(MODELS["sequential"](), schedule=ConstantSparsity(0.5), layers=["conv", "bn", "dw"])
    assert {l.layer.name for l in seq.layers if isinstance(l, PruneWrapper)} == {"conv", "dw"}
    assert "bn" in seq.unpruned_layers and "BatchNormalization" in seq.unpruned_layers["bn"]


def test_layer_selection_by_class_and_per_layer_targets():
    model = MODELS["sequential"]()
    by_class = prune(model, schedule=ConstantSparsity(0.5), layers=[L.Dense, L.SeparableConv2D])
    assert {l.layer.name for l in by_class.layers if isinstance(l, PruneWrapper)} == {"head", "sep"}
    targets = {"conv": ConstantSparsity(0.25, frequency=1), "head": ConstantSparsity(0.75, frequency=1)}
    per_layer = prune(model, schedule=targets)
    apply_masks_now(per_layer)
    reached = {l.layer.name: float((l.pruned[0][3].numpy() == 0).mean())
               for l in per_layer.layers if isinstance(l, PruneWrapper)}
    assert reached == pytest.approx({"conv": 0.25, "head": 0.75}, abs=0.01)
    by_callable = prune(model, schedule=lambda l: ConstantSparsity(0.5) if l.name == "convt" else None)
    assert [l.layer.name for l in by_callable.layers if isinstance(l, PruneWrapper)] == ["convt"]


def _no_get_config():
    class NoConfig(keras.Model):
        def __init__(self, units):
            super().__init__()
            self.d = L.Dense(units)

        def call(self, x):
            return self.d(x)

    m = NoConfig(3)
    m(np.zeros((1, 4), "float32"))
    return m


@pytest.mark.parametrize("make, kwargs, error, match", [
    (lambda: "not a model", {}, TypeError, "keras.Model"),
    (lambda: keras.Sequential([L.Dense(3)]), {}, ValueError, "not built"),
    (lambda: MODELS["nested"](), {"pattern": "unstructured"}, TypeError, "pattern"),
    (lambda: MODELS["nested"](), {"criterion": "random"}, ValueError, "criterion"),
    (lambda: MODELS["nested"](), {"scope": "model"}, ValueError, "scope"),
    (lambda: MODELS["nested"](), {"layers": ["nope"]}, ValueError, "nope"),
    (lambda: MODELS["nested"](), {"schedule": {"nope": ConstantSparsity(0.5)}}, ValueError, "nope"),
    (lambda: MODELS["nested"](), {"schedule": 0.5}, TypeError, "PruningSchedule"),
    (lambda: MODELS["nested"](), {"schedule": {"outer_d": ConstantSparsity(0.5)}, "scope": "global"},
     ValueError, "global"),
    (lambda: MODELS["nested"](), {"pattern": Channels()}, ValueError, "flat Sequential or Functional"),
    (lambda: MODELS["nested"](), {"layers": [L.Conv2D]}, ValueError, "nothing to prune"),
    (_no_get_config, {}, ValueError, "get_config"),
])
def test_bad_inputs_raise_clear_errors(make, kwargs, error, match):
    kwargs = {"schedule": ConstantSparsity(0.5), **kwargs}
    with pytest.raises(error, match=match):
        prune(make(), **kwargs)


def test_pruning_a_pruned_model_is_an_error():
    pruned = prune(MODELS["nested"](), schedule=ConstantSparsity(0.5))
    with pytest.raises(ValueError, match="already pruned"):
        prune(pruned, schedule=ConstantSparsity(0.5))


def test_wrapper_rejects_layers_without_prunable_weights():
    with pytest.raises(ValueError, match="no prunable weight"):
        PruneWrapper(L.BatchNormalization(), schedule=ConstantSparsity(0.5)).build((None, 4))
