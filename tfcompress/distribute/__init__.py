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

from tfcompress.distribute.chief import is_chief
from tfcompress.distribute.multi_worker_mirrored_strategy import MultiWorkerMirroredStrategy

__all__ = ["MultiWorkerMirroredStrategy", "is_chief"]
