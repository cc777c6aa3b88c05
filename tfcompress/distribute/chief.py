"""is_chief(): whether this process writes shared outputs in distributed training."""

import keras


def is_chief(model=None):
    """Whether this process should write shared outputs (logs, summaries) in distributed training.

    False only on a non-chief worker of a multi-worker run: with `tf.distribute`, the strategy of
    `model` (or the current one) decides (`strategy.extended.should_checkpoint`: under
    MultiWorkerMirroredStrategy the task `chief`, or worker 0 when there is none); with the JAX
    backend, processes other than `jax.process_index() == 0`. One process (any strategy, or
    MirroredStrategy over local devices) is always the chief.

    Args:
        model: A Keras model being trained, whose `distribute_strategy` is used when it has one.
            Defaults to None (the current `tf.distribute` strategy).

    Returns:
        bool.

    Example:
        >>> from tfcompress.distribute import is_chief
        >>> is_chief()  # a single process
        True
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
        return bool(strategy.extended.should_checkpoint)
    if backend == "jax":
        import jax

        return jax.process_index() == 0
    return True
