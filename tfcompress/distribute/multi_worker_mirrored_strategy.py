"""MultiWorkerMirroredStrategy: TensorFlow's, with `reduce` fixed for Keras 3.15's `fit`."""

import tensorflow as tf


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
