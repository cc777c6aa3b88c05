"""Shared by the benchmarks: per-epoch wall and CPU time, for Keras 3 and tf_keras models alike."""

import time


class EpochTimer:
    """Per-epoch wall time (`times`) and process CPU time (`cpu`), in seconds.

    `base` is the framework's Callback class (keras.callbacks.Callback or tf_keras's); the
    callback to pass to `fit` is `timer.callback`.

    Example:
        >>> import keras
        >>> timer = EpochTimer(keras.callbacks.Callback)
        >>> timer.callback.on_epoch_begin(0); timer.callback.on_epoch_end(0)
        >>> len(timer.times), len(timer.cpu)
        (1, 1)
    """

    def __init__(self, base):
        outer = self

        class _Timer(base):
            def on_epoch_begin(self, epoch, logs=None):
                outer._t = time.perf_counter()
                outer._c = time.process_time()

            def on_epoch_end(self, epoch, logs=None):
                outer.times.append(time.perf_counter() - outer._t)
                outer.cpu.append(time.process_time() - outer._c)

        self.times = []
        self.cpu = []
        self.callback = _Timer()
