"""Gradual (polynomial) sparsity schedule of Zhu & Gupta 2017."""

import math

import keras

from tfcompress.pruning.pruning_schedule import PruningSchedule, _check_fraction, _check_step


@keras.saving.register_keras_serializable(package="tfcompress")
class PolynomialDecay(PruningSchedule):
    """Gradual pruning: sparsity rises from `initial_sparsity` to `final_sparsity` polynomially.

    For `begin_step <= t <= end_step`:
    `s(t) = s_f + (s_i - s_f) * (1 - (t - begin_step) / (end_step - begin_step)) ** power`;
    `s(t) = 0` before `begin_step` (nothing pruned yet) and `s_f` after `end_step`. Masks are
    recomputed every `frequency` steps in `[begin_step, end_step]` and at `end_step` itself, so the
    final sparsity is always reached.

    Args:
        initial_sparsity: Sparsity at `begin_step`, in [0, 1). Defaults to 0.0.
        final_sparsity: Sparsity at and after `end_step`, in [0, 1), >= `initial_sparsity`.
            Defaults to 0.8.
        begin_step: First step at which masks are computed. Defaults to 0.
        end_step: Step at which `final_sparsity` is reached; must be > `begin_step`. Defaults to 1000.
        power: Exponent of the decay (3 in the paper). Defaults to 3.
        frequency: Masks are recomputed every `frequency` steps. Defaults to 100.

    Example:
        >>> schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100, frequency=10)
        >>> round(schedule(50), 3), schedule(100), schedule.should_update(20)
        (0.7, 0.8, True)

    References:
        Zhu & Gupta 2017, "To prune, or not to prune: exploring the efficacy of pruning for model
        compression" (arXiv:1710.01878).
    """

    def __init__(self, initial_sparsity=0.0, final_sparsity=0.8, begin_step=0, end_step=1000,
                 power=3, frequency=100):
        _check_fraction("initial_sparsity", initial_sparsity)
        _check_fraction("final_sparsity", final_sparsity)
        _check_step("begin_step", begin_step)
        _check_step("end_step", end_step)
        _check_step("frequency", frequency, minimum=1)
        if final_sparsity < initial_sparsity:
            raise ValueError(f"final_sparsity ({final_sparsity}) must be >= initial_sparsity "
                             f"({initial_sparsity}).")
        if end_step <= begin_step:
            raise ValueError(f"end_step ({end_step}) must be > begin_step ({begin_step}).")
        if isinstance(power, bool) or not isinstance(power, (int, float)):
            raise TypeError(f"power must be a positive finite number (3 in the paper), got "
                            f"{power!r}.")
        if not math.isfinite(power) or power <= 0:
            raise ValueError(f"power must be a positive finite number (3 in the paper), got "
                             f"{power!r}.")
        self.initial_sparsity = float(initial_sparsity)
        self.final_sparsity = float(final_sparsity)
        self.begin_step = begin_step
        self.end_step = end_step
        self.power = power
        self.frequency = frequency

    def __call__(self, step):
        if step < self.begin_step:
            return 0.0
        progress = min(1.0, (step - self.begin_step) / (self.end_step - self.begin_step))
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (
            1.0 - progress) ** self.power

    def should_update(self, step):
        if step < self.begin_step or step > self.end_step:
            return False
        return (step - self.begin_step) % self.frequency == 0 or step == self.end_step

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }
