"""Base class of sparsity schedules."""

import keras

from tfcompress._config_object import ConfigObject


def _check_fraction(name, value, *, allow_one=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {value!r}.")
    upper_ok = value <= 1.0 if allow_one else value < 1.0
    if not (0.0 <= value and upper_ok):  # also rejects NaN
        raise ValueError(f"{name} must be in [0, {'1]' if allow_one else '1)'}, got {value!r}.")


def _check_step(name, value, *, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}.")


@keras.saving.register_keras_serializable(package="tfcompress")
class PruningSchedule(ConfigObject):
    """Base class of sparsity schedules: `schedule(step) -> sparsity` plus `should_update(step)`.

    `step` counts optimizer steps (training batches) since pruning started, from 0. A subclass
    implements `__call__` and `should_update` and a flat `get_config`.

    Example:
        >>> from tfcompress.pruning import ConstantSparsity
        >>> schedule = ConstantSparsity(0.5, frequency=10)
        >>> schedule(0), schedule.should_update(10), schedule.should_update(11)
        (0.5, True, False)
    """

    def __call__(self, step):
        raise NotImplementedError

    def should_update(self, step):
        """Whether masks are recomputed before training step `step`."""
        raise NotImplementedError
