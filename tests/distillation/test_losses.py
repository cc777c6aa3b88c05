"""Distillation losses against numpy closed forms."""

import numpy as np
import pytest

from tfcompress.distillation import AttentionTransferLoss, FeatureAdapter, FeatureLoss, SoftTargetLoss


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_soft_target_is_t2_scaled_kl(rng, temperature):
    t, s = rng.normal(size=(8, 10)) * 1.5, rng.normal(size=(8, 10))  # no prob below the 1e-7 clip
    pt, ps = _softmax(t / temperature), _softmax(s / temperature)
    ref = temperature**2 * np.mean(np.sum(pt * np.log(pt / ps), axis=-1))
    got = float(SoftTargetLoss(temperature).compute_loss(t.astype("float32"), s.astype("float32")))
    assert got == pytest.approx(ref, rel=1e-4)
    # Softmax outputs give the same loss with from_logits=False.
    probs = float(SoftTargetLoss(temperature, from_logits=False).compute_loss(
        _softmax(t).astype("float32"), _softmax(s).astype("float32")))
    assert probs == pytest.approx(ref, rel=1e-3)


def test_attention_transfer_matches_numpy(rng):
    t, s = rng.normal(size=(3, 4, 4, 16)), rng.normal(size=(3, 4, 4, 5))

    def at(a):
        q = (np.abs(a) ** 2).sum(-1).reshape(len(a), -1)
        return q / np.linalg.norm(q, axis=1, keepdims=True)

    ref = np.mean((at(s) - at(t)) ** 2)
    got = float(AttentionTransferLoss("t", "s").compute_loss(t.astype("float32"), s.astype("float32")))
    assert got == pytest.approx(ref, rel=1e-4)


def test_feature_adapter_projects_only_when_needed(rng):
    s, t = rng.normal(size=(2, 4, 4, 8)).astype("float32"), rng.normal(size=(2, 4, 4, 16)).astype("float32")
    adapter = FeatureAdapter()
    out = np.asarray(adapter(s, t))
    np.testing.assert_allclose(out, s @ np.asarray(adapter.kernel), rtol=1e-5, atol=1e-5)
    same = FeatureAdapter()
    np.testing.assert_array_equal(np.asarray(same(s, s)), s)
    assert same.kernel is None


def test_loss_configs_round_trip():
    for loss in (SoftTargetLoss(3.0, from_logits=False), FeatureLoss("a", "b", loss="mae", weight=0.5),
                 AttentionTransferLoss("a", "b", p=1, weight=10.0)):
        clone = type(loss).from_config(loss.get_config())
        assert clone.get_config() == loss.get_config()
    with pytest.raises(ValueError, match="adapter"):
        FeatureLoss("a", "b", adapter="yes")
