"""Distiller under tf.distribute.MirroredStrategy with two logical CPUs (fresh process: the logical
devices must be configured before TensorFlow initialises)."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from tfcompress.datasets import load_digits
    from tfcompress.distillation import Distiller, FeatureLoss

    keras.utils.set_random_seed(0)
    (x, y), (xt, yt) = load_digits()
    x, y = x[:512], y[:512]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        inp = keras.Input((8, 8, 1))
        h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="t_conv")(inp)
        teacher = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(h)))
        teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=2, batch_size=64, verbose=0)
    with strategy.scope():
        inp = keras.Input((8, 8, 1))
        h = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="s_conv")(inp)
        student = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(h)))
        distiller = Distiller(teacher, student, features=[FeatureLoss("t_conv", "s_conv")])
        distiller.compile("adam", metrics=["accuracy"])
    history = distiller.fit(x, y, epochs=3, batch_size=64, validation_data=(xt, yt), verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0], losses
    acc = distiller.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"]
    own = float(np.mean(np.argmax(student.predict(xt, verbose=0), -1) == yt))
    assert abs(acc - own) < 1e-6, (acc, own)
    print("OK", len(tf.config.list_logical_devices("CPU")), losses[0], losses[-1], acc)
""")


def test_distiller_mirrored_strategy_two_logical_cpus():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK 2" in result.stdout
