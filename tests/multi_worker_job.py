"""One worker of a two-process `tf.distribute.MultiWorkerMirroredStrategy` cluster (run by
test_multi_worker.py, never imported by pytest).

Usage: TF_CONFIG=... python multi_worker_job.py OUT_DIR BACKUP_DIR TECHNIQUES [PAUSE]
       python multi_worker_job.py --mirrored OUT_DIR TECHNIQUES

TECHNIQUES is a comma-separated list out of prune, prune_taylor, qat, distill; they are trained one after the
other, each by `fit` with `keras.callbacks.BackupAndRestore` (one backup folder per worker and
technique: Keras 3's callback is not multi-worker aware, so two workers must not share one file).
The workers use tfcompress.distribute.MultiWorkerMirroredStrategy (Keras 3.15's `fit` fails under
TensorFlow's own, keras-team/keras#20585); "prune" also runs a PruningLogger writing into
OUT_DIR/logs_prune, shared by both workers. A technique whose result file already exists in OUT_DIR is skipped, so a restarted cluster goes
on where it stopped. PAUSE = "technique:epoch:batch": before that batch the worker writes
OUT_DIR/paused and sleeps, so that the test can SIGKILL it at a known point of training.
With --mirrored the techniques run under MirroredStrategy over two logical CPUs of one process.
"""

import json
import os
import sys
import time

STARTED = time.time()

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
os.environ["KERAS_BACKEND"] = "tensorflow"

import tensorflow as tf  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

EPOCHS = 3
BATCH = 32  # global batch: 16 per worker
SAMPLES = 192  # 6 steps per epoch


class Pause(keras.callbacks.Callback):
    """Announces a point of training, then waits there to be killed."""

    def __init__(self, epoch, batch, marker):
        super().__init__()
        self.at, self.epoch, self.marker = (epoch, batch), None, marker

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            with open(self.marker + ".tmp", "w") as f:
                f.write(f"{self.epoch}:{batch}")
            os.replace(self.marker + ".tmp", self.marker)
            time.sleep(600)


class Record(keras.callbacks.Callback):
    """Notes the epochs this process trained (a resumed run starts after the restored epoch)."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def data():
    from tfcompress.datasets import load_digits

    (x, y), _ = load_digits()
    return x[:SAMPLES], y[:SAMPLES]


def cnn(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(10)])


def build_prune(criterion="magnitude"):
    from tfcompress.pruning import PolynomialDecay, PruningCallback, prune

    # 18 steps in all; masks change every 2 steps up to step 14 (inside the epoch that is killed)
    model = prune(cnn(0), schedule=PolynomialDecay(0.0, 0.75, 0, 14, frequency=2), criterion=criterion)
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, [PruningCallback()]


def result_prune(model):
    from tfcompress.pruning import PruneWrapper

    out = {}
    for i, w in enumerate(model.layers):  # keys by position: layer names depend on creation order
        if isinstance(w, PruneWrapper):
            out[f"{i}/mask"] = w.pruned[0][3].numpy()
            out[f"{i}/kernel"] = w.layer.kernel.numpy()
            out[f"{i}/step"] = np.asarray(w.pruning_step.numpy())
    return out


def build_qat():
    from tfcompress.quantization import quantize

    model = quantize(cnn(1))
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, []


def result_qat(model):
    out = {}
    for i, layer in enumerate(model.layers):
        for v in layer.weights:
            out[f"{i}/{v.name}"] = np.asarray(v.numpy())
    return out


def build_distill():
    from tfcompress.distillation import Distiller

    keras.utils.set_random_seed(2)
    teacher = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    model = Distiller(teacher, cnn(3), alpha=0.5)
    model.compile(keras.optimizers.Adam(0.01))
    return model, []


def result_distill(model):
    return {f"{i}/{v.name}": np.asarray(v.numpy()) for i, v in enumerate(model.student.weights)}


TECHNIQUES = {"prune": (build_prune, result_prune), "qat": (build_qat, result_qat),
              "distill": (build_distill, result_distill),
              "prune_taylor": (lambda: build_prune("taylor"), result_prune)}


def train(name, x, y, callbacks=()):
    """Builds and trains technique `name` in the current strategy scope; returns its result arrays."""
    build, result = TECHNIQUES[name]
    with tf.distribute.get_strategy().scope():
        model, own = build()
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=own + list(callbacks))
    return result(model)


def main(out_dir, backup_dir, techniques, pause=None):
    keras.config.disable_traceback_filtering()  # full tracebacks in the worker logs
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    print(f"startup {time.time() - STARTED:.1f} s", file=sys.stderr)
    from tfcompress.distribute import MultiWorkerMirroredStrategy  # fit works under it in Keras 3.15

    strategy = MultiWorkerMirroredStrategy()
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    x, y = data()
    for name in techniques.split(","):
        out = os.path.join(out_dir, f"{name}_worker{index}.npz")
        if os.path.exists(out):
            continue
        record = Record()
        callbacks = [keras.callbacks.BackupAndRestore(os.path.join(backup_dir, f"{name}_worker{index}")), record]
        if name == "prune":  # both workers log into one folder: only the chief may write there
            from tfcompress.pruning import PruningLogger

            callbacks.append(PruningLogger(log_dir=os.path.join(out_dir, "logs_prune")))
        if pause and pause.split(":")[0] == name:
            _, epoch, batch = pause.split(":")
            callbacks.append(Pause(int(epoch), int(batch), os.path.join(out_dir, "paused")))
        start = time.perf_counter()
        with strategy.scope():
            arrays = train(name, x, y, callbacks)
        print(f"{name}: fit {time.perf_counter() - start:.1f} s, epochs {record.epochs}", file=sys.stderr)
        np.savez(out + ".tmp.npz", _epochs=np.asarray(record.epochs), **arrays)
        os.replace(out + ".tmp.npz", out)


def mirrored(out_dir, techniques):
    """MirroredStrategy over two logical CPUs of this process (the single-machine case), and the
    same training on one device (default strategy) for reference."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x, y = data()
    for name in techniques.split(","):
        with strategy.scope():
            arrays = train(name, x, y)
        np.savez(os.path.join(out_dir, f"{name}_mirrored.npz"), **arrays)
        np.savez(os.path.join(out_dir, f"{name}_one_device.npz"), **train(name, x, y))


if __name__ == "__main__":
    if sys.argv[1] == "--mirrored":
        mirrored(*sys.argv[2:])
    else:
        main(*sys.argv[1:])
