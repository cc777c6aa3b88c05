"""The callback that drives pruning during fit."""

import time

import keras

from tfcompress.pruning._masks import find_wrappers, update_masks


@keras.saving.register_keras_serializable(package="tfcompress")
class PruningCallback(keras.callbacks.Callback):
    """Advances the pruning schedule and recomputes masks; add it to `model.fit` of a pruned model.

    The step counter lives in each `PruneWrapper` (`pruning_step`, advanced inside the compiled
    train step), so a saved/restored model resumes at the same step. Before each batch the
    callback checks the schedules on a Python copy of the step and, only when one is due
    (every `frequency` steps), computes masks eagerly in NumPy and assigns them: the compiled
    train step never changes and never recomputes masks. Training a pruned model without
    this callback raises an error at the first batch.

    Example:
        >>> import keras, numpy as np
        >>> from tfcompress.pruning import prune, ConstantSparsity, PruningCallback
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
        >>> pruned = prune(model, schedule=ConstantSparsity(0.5, frequency=1))
        >>> pruned.compile("sgd", "mse")
        >>> _ = pruned.fit(np.ones((8, 8)), np.ones((8, 4)), verbose=0, callbacks=[PruningCallback()])

    References:
        Zhu & Gupta 2017, "To prune, or not to prune" (arXiv:1710.01878).
    """

    def __init__(self):
        super().__init__()
        self.step = None
        self.update_seconds = 0.0  # wall time spent recomputing masks (for profiling)
        self.updates = 0
        self._wrappers = []

    def attach(self, model):
        """Finds the wrappers of `model` and marks them as driven (also usable outside fit)."""
        self._wrappers = find_wrappers(model)
        if not self._wrappers:
            raise ValueError(f"PruningCallback: model '{model.name}' has no PruneWrapper layer; "
                             "pass the model returned by tfcompress.pruning.prune().")
        for w in self._wrappers:
            w.callback_attached = True
        self.step = None  # read at the first batch, after e.g. BackupAndRestore restored the weights

    def on_train_begin(self, logs=None):
        self.attach(self.model)

    def on_train_batch_begin(self, batch, logs=None):
        if not self._wrappers:
            self.attach(self.model)
        if self.step is None:
            # min: a layer called twice per step (shared) advances its own counter twice
            self.step = min(int(w.pruning_step.numpy()) for w in self._wrappers)
        k = int(getattr(self.model, "steps_per_execution", 1) or 1)
        for t in range(self.step, self.step + k):
            if any(w.schedule.should_update(t) for w in self._wrappers):
                start = time.perf_counter()
                update_masks(self._wrappers, t)
                self.update_seconds += time.perf_counter() - start
                self.updates += 1
        self.step += k

    def on_train_end(self, logs=None):
        for w in self._wrappers:
            w.callback_attached = False

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
