"""Multi-worker training helpers (TensorFlow backend): a working MultiWorkerMirroredStrategy for
Keras 3.15's `fit`, and the chief test tfcompress's callbacks use to write logs once.

Keras 3.15's `fit` under `tf.distribute.MultiWorkerMirroredStrategy` with two or more workers fails
before (or at) the first step (keras-team/keras#20585, tensorflow/tensorflow#72388):

1. it reduces the first `(x, y)` batch with one `strategy.reduce` call, and the collective reduce
   of MultiWorkerMirroredStrategy takes one tensor, not a tuple ("Attempt to convert a value
   (PerReplica...) to a Tensor");
2. it reduces each scalar log (the loss) with `axis=0`, which a scalar does not have ("Invalid
   reduction dimension 0 for input with 0 dimensions").

`tfcompress.distribute.MultiWorkerMirroredStrategy` is TensorFlow's strategy with `reduce` fixed
for both: each element of a nest is reduced by itself, and a scalar across replicas only (the
mean over replicas Keras wants). Neither call touches the model's variables: (1) only gives shapes
for building, (2) only the logged loss; gradients, metrics and tfcompress's own cross-replica
statistics (QAT ranges, Taylor scores) do not go through it. With one worker, or once Keras fixes
the bug, it behaves exactly like TensorFlow's. Tested with two worker processes (tests/
test_multi_worker.py): prune, QAT and Distiller end equal to one device's training, and a killed
worker resumed with `keras.callbacks.BackupAndRestore` ends equal to an uninterrupted run.

Example:
    >>> import os, json  # doctest: +SKIP
    >>> os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": ["host1:2222", "host2:2222"]},
    ...                                       "task": {"type": "worker", "index": 0}})  # doctest: +SKIP
    >>> from tfcompress.distribute import MultiWorkerMirroredStrategy  # doctest: +SKIP
    >>> strategy = MultiWorkerMirroredStrategy()  # at program start, before other TF work  # doctest: +SKIP
    >>> with strategy.scope():  # doctest: +SKIP
    ...     model = tfcompress.pruning.prune(build_model(), schedule=schedule)
    ...     model.compile(...)
    >>> model.fit(x, y, callbacks=[tfcompress.pruning.PruningCallback(),  # doctest: +SKIP
    ...                            tfcompress.pruning.PruningLogger(log_dir="logs")])
"""

import keras
import tensorflow as tf

__all__ = ["MultiWorkerMirroredStrategy", "is_chief"]


class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`tf.distribute.MultiWorkerMirroredStrategy` whose `reduce` works with Keras 3.15's `fit`.

    Same arguments as TensorFlow's class (cluster from `TF_CONFIG`, `communication_options`).
    Only `reduce` differs: a nest (Keras reduces the first `(x, y)` batch in one call) is reduced
    element by element, and a scalar given `axis=0` (Keras' per-replica logs) is reduced across
    replicas only. Create it at program start, before other TensorFlow work, as TensorFlow's.
    See the module docstring for the Keras issue and what the reductions are used for.

    Example:
        >>> from tfcompress.distribute import MultiWorkerMirroredStrategy  # doctest: +SKIP
        >>> strategy = MultiWorkerMirroredStrategy()  # reads TF_CONFIG  # doctest: +SKIP
        >>> with strategy.scope():  # doctest: +SKIP
        ...     model = make_and_compile_model()
        >>> model.fit(dataset, epochs=3)  # doctest: +SKIP
    """

    def reduce(self, reduce_op, value, axis):
        """Reduces `value` (a tensor, a per-replica value or a nest of them) across replicas."""
        def one(v):
            local = self.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v
            scalar = axis is not None and len(getattr(local, "shape", ())) == 0
            return super(MultiWorkerMirroredStrategy, self).reduce(reduce_op, v, None if scalar else axis)

        return tf.nest.map_structure(one, value)


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
        strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
        return bool(strategy.extended.should_checkpoint)
    if backend == "jax":
        import jax

        return jax.process_index() == 0
    return True
