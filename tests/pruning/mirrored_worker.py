"""Run by test_distributed.py in a fresh process: two logical CPU devices must be configured before
TensorFlow initialises its devices. Prunes the same model on one device and under MirroredStrategy
over two devices and saves both sets of masks and steps to the .npz given as argv[1]."""

import os
import sys

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
os.environ["KERAS_BACKEND"] = "tensorflow"

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfcompress.datasets import load_digits  # noqa: E402
from tfcompress.pruning import PolynomialDecay, PruneWrapper, PruningCallback, prune  # noqa: E402


def run(strategy, weights, x, y):
    with strategy.scope():
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                                  keras.layers.Flatten(), keras.layers.Dense(10)])
        model.set_weights(weights)
        pruned = prune(model, schedule=PolynomialDecay(0.0, 0.7, 0, 12, frequency=4))
        pruned.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0, callbacks=[PruningCallback()])
    ws = [l for l in pruned.layers if isinstance(l, PruneWrapper)]
    return ([w.pruned[0][3].numpy() for w in ws], [int(w.pruning_step.numpy()) for w in ws],
            [w.layer.kernel.numpy() for w in ws])


def main(out):
    (x, y), _ = load_digits()
    x, y = x[:512], y[:512]
    keras.utils.set_random_seed(0)
    init = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(10)]).get_weights()
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    m_masks, m_steps, m_kernels = run(mirrored, init, x, y)
    s_masks, s_steps, s_kernels = run(tf.distribute.OneDeviceStrategy("/cpu:0"), init, x, y)
    np.savez(out, replicas=mirrored.num_replicas_in_sync, m_steps=m_steps, s_steps=s_steps,
             **{f"m_mask{i}": m for i, m in enumerate(m_masks)}, **{f"s_mask{i}": m for i, m in enumerate(s_masks)},
             **{f"m_kernel{i}": m for i, m in enumerate(m_kernels)},
             **{f"s_kernel{i}": m for i, m in enumerate(s_kernels)})


if __name__ == "__main__":
    main(sys.argv[1])
