"""Constant sparsity schedule."""

import keras

from tfcompress.pruning.pruning_schedule import PruningSchedule, _check_fraction, _check_step


@keras.saving.register_keras_serializable(package="tfcompress")
class ConstantSparsity(PruningSchedule):
    """Prunes to a fixed sparsity from `begin_step`, recomputing masks every `frequency` steps.

    Args:
        target_sparsity: Fraction of weights set to zero, in [0, 1).
        begin_step: First training step at which masks are computed. Defaults to 0.
        end_step: Last step at which masks are recomputed; -1 means until training ends.
            Defaults to -1.
        frequency: Masks are recomputed every `frequency` steps after `begin_step`. Defaults to 100.

    Example:
        >>> schedule = ConstantSparsity(0.8, begin_step=100, frequency=50)
        >>> schedule(0), schedule(100), schedule(1000)
        (0.0, 0.8, 0.8)

    References:
        Han et al. 2015, "Learning both Weights and Connections for Efficient Neural Networks".
    """

    def __init__(self, target_sparsity, begin_step=0, end_step=-1, frequency=100):
        _check_fraction("target_sparsity", target_sparsity)
        _check_step("begin_step", begin_step)
        _check_step("end_step", end_step, minimum=-1)
        _check_step("frequency", frequency, minimum=1)
        if end_step != -1 and end_step < begin_step:
            raise ValueError(f"end_step ({end_step}) must be -1 or >= begin_step ({begin_step}).")
        self.target_sparsity = float(target_sparsity)
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency

    def __call__(self, step):
        return self.target_sparsity if step >= self.begin_step else 0.0

    def should_update(self, step):
        if step < self.begin_step or (self.end_step != -1 and step > self.end_step):
            return False
        return (step - self.begin_step) % self.frequency == 0 or step == self.end_step

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }
