"""Schedules: values against the closed-form formulas, update steps, validation errors."""

import keras
import pytest

from tfcompress.pruning import ConstantSparsity, PolynomialDecay


@pytest.mark.parametrize("power", [1, 3])
def test_polynomial_decay_matches_zhu_gupta_formula(power):
    si, sf, t0, n = 0.1, 0.85, 20, 200
    s = PolynomialDecay(si, sf, begin_step=t0, end_step=t0 + n, power=power, frequency=10)
    for t in [20, 25, 60, 119, 150, 219, 220, 500]:
        progress = min(1.0, (t - t0) / n)
        expected = sf + (si - sf) * (1 - progress) ** power
        assert s(t) == pytest.approx(expected, abs=1e-12)
    assert s(0) == 0.0 and s(19) == 0.0  # nothing pruned before begin_step
    assert s(10_000) == pytest.approx(sf)


def test_polynomial_decay_update_steps():
    s = PolynomialDecay(0.0, 0.5, begin_step=10, end_step=45, frequency=10)
    updates = [t for t in range(100) if s.should_update(t)]
    assert updates == [10, 20, 30, 40, 45]  # every frequency steps, plus end_step itself


def test_constant_sparsity_values_and_updates():
    s = ConstantSparsity(0.6, begin_step=5, end_step=30, frequency=10)
    assert [s(t) for t in (0, 4, 5, 100)] == [0.0, 0.0, 0.6, 0.6]
    assert [t for t in range(60) if s.should_update(t)] == [5, 15, 25, 30]
    assert [t for t in range(25) if ConstantSparsity(0.5, frequency=7).should_update(t)] == [0, 7, 14, 21]


@pytest.mark.parametrize("kwargs, match", [
    ({"final_sparsity": 1.0}, "final_sparsity"),
    ({"final_sparsity": -0.1}, "final_sparsity"),
    ({"initial_sparsity": 0.9, "final_sparsity": 0.5}, "initial_sparsity"),
    ({"begin_step": 100, "end_step": 100}, "end_step"),
    ({"frequency": 0}, "frequency"),
    ({"power": 0}, "power"),
    ({"begin_step": -1}, "begin_step"),
])
def test_polynomial_decay_rejects_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        PolynomialDecay(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"target_sparsity": 1.5}, "target_sparsity"),
    ({"target_sparsity": "0.5"}, "target_sparsity"),
    ({"target_sparsity": 0.5, "frequency": 2.5}, "frequency"),
    ({"target_sparsity": 0.5, "begin_step": 10, "end_step": 5}, "end_step"),
])
def test_constant_sparsity_rejects_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ConstantSparsity(**kwargs)


def test_schedules_round_trip_through_keras_serialization():
    for s in (PolynomialDecay(0.1, 0.7, 3, 50, power=2, frequency=5), ConstantSparsity(0.4, 2, 20, 3)):
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
        assert restored == s and restored is not s
