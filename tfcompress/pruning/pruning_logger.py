"""Per-layer sparsity logging for fit."""

import os

import keras
import numpy as np

from tfcompress.pruning._masks import sparsity_report


@keras.saving.register_keras_serializable(package="tfcompress")
class PruningLogger(keras.callbacks.Callback):
    """Logs the reached sparsity of each pruned layer at the end of every epoch.

    Adds `sparsity` (mean over pruned layers) to the epoch logs, so Keras's progress bar and
    History show it, prints one line per epoch with the per-layer values, and, with `log_dir`,
    writes per-layer scalars `sparsity/<layer>` for TensorBoard.

    In multi-worker training (e.g. `tfcompress.distribute.MultiWorkerMirroredStrategy`) every
    worker adds `sparsity` to its logs (the masks are the same on all workers), but only the chief
    (`tfcompress.distribute.is_chief`) prints the line and writes the TensorBoard file, so a
    shared `log_dir` holds one log, not one per worker.

    Args:
        log_dir: TensorBoard log directory (a `pruning` subfolder is used), or None for no
            TensorBoard output. Defaults to None.
        verbose: Print the per-layer line each epoch. Defaults to True.

    Example:
        >>> from tfcompress.pruning import PruningLogger
        >>> logger = PruningLogger(log_dir=None, verbose=False)

    References:
        Zhu & Gupta 2017, "To prune, or not to prune" (arXiv:1710.01878).
    """

    def __init__(self, log_dir=None, verbose=True):
        super().__init__()
        self.log_dir = log_dir
        self.verbose = verbose
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        report = sparsity_report(self.model)
        if not report:
            return
        mean = float(np.mean(list(report.values())))
        if logs is not None:
            logs["sparsity"] = mean
        if not self._chief():
            return
        if self.verbose:
            parts = ", ".join(f"{k} {v:.3f}" for k, v in report.items())
            print(f"Epoch {epoch + 1} pruning: mean sparsity {mean:.3f} ({parts})")
        if self.log_dir:
            import tensorflow as tf  # TensorBoard summaries have no keras.ops equivalent

            if self._writer is None:
                self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "pruning"))
            from tensorflow.core.framework import summary_pb2

            # what tf.summary.scalar writes, without needing the tensorboard package installed
            meta = summary_pb2.SummaryMetadata(
                plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
                data_class=summary_pb2.DATA_CLASS_SCALAR)
            with self._writer.as_default():
                for name, value in [*report.items(), ("mean", mean)]:
                    tf.summary.write(f"sparsity/{name}", tf.constant(value, tf.float32), step=epoch,
                                     metadata=meta)
            self._writer.flush()

    def _chief(self):
        from tfcompress.distribute.chief import is_chief

        return is_chief(self.model)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def get_config(self):
        return {"log_dir": self.log_dir, "verbose": self.verbose}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
