"""Small models of every kind used by the pruning tests, and an independent masking reference."""

import keras
import numpy as np

from tfcompress.pruning import PruningCallback

L = keras.layers


def sequential_cnn():
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(8, 3, padding="same", activation="relu", name="conv"),
        L.DepthwiseConv2D(3, padding="same", name="dw"),
        L.SeparableConv2D(8, 3, padding="same", name="sep"),
        L.Conv2DTranspose(4, 3, strides=1, padding="same", name="convt"),
        L.BatchNormalization(name="bn"),
        L.Flatten(),
        L.Dense(10, name="head"),
    ], name="seq")


def functional_multi_io():
    img = keras.Input((8, 8, 1), name="img")
    tok = keras.Input((6,), dtype="int32", name="tok")
    h = L.Conv2D(8, 3, padding="same", name="c1")(img)
    r = L.Conv2D(8, 3, padding="same", activation="relu", name="c2")(h)
    h = L.Add(name="res")([h, r])
    h = L.GlobalAveragePooling2D()(h)
    out1 = L.Dense(10, name="out_img")(h)
    e = L.Embedding(20, 8, name="emb")(tok)
    a = L.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(e, e)
    a = L.Conv1D(8, 3, padding="same", name="c1d")(a)
    a = L.GlobalAveragePooling1D()(a)
    out2 = L.Dense(3, name="out_tok")(L.Concatenate()([a, h]))
    return keras.Model([img, tok], [out1, out2], name="multi_io")


def nested():
    inner = keras.Sequential([keras.Input((16,)), L.Dense(12, activation="relu", name="in_d1"),
                              L.Dense(12, name="in_d2")], name="inner")
    x = keras.Input((16,))
    h = inner(x)
    h = L.Dense(8, name="outer_d")(h)
    return keras.Model(x, h, name="outer")


def conv_1d_3d():
    return keras.Sequential([keras.Input((4, 4, 4, 2)), L.Conv3D(4, 2, name="c3d"), L.Reshape((27, 4)),
                             L.Conv1D(6, 3, name="c1d"), L.Flatten(), L.Dense(5, name="d")], name="c13")


@keras.saving.register_keras_serializable(package="tfcompress_tests")
class Subclassed(keras.Model):
    def __init__(self, units=12, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.d1 = L.Dense(units, activation="relu", name="sub_d1")
        self.blocks = [L.Dense(units, activation="relu", name=f"sub_b{i}") for i in range(2)]
        self.out = L.Dense(4, name="sub_out")

    def call(self, x):
        h = self.d1(x)
        for b in self.blocks:
            h = h + b(h)
        return self.out(h)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def subclassed():
    m = Subclassed(name="sub")
    m(np.zeros((1, 16), "float32"))
    return m


MODELS = {"sequential": sequential_cnn, "functional_multi_io": functional_multi_io, "nested": nested,
          "conv1d_conv3d": conv_1d_3d, "subclassed": subclassed}


def sample_input(model, n=4, seed=0):
    rng = np.random.default_rng(seed)
    if model.name == "multi_io":
        return [rng.random((n, 8, 8, 1)).astype("float32"), rng.integers(0, 20, (n, 6)).astype("int32")]
    if model.name == "c13":
        return rng.random((n, 4, 4, 4, 2)).astype("float32")
    if model.name == "seq":
        return rng.random((n, 8, 8, 1)).astype("float32")
    return rng.random((n, 16)).astype("float32")


def copy_model(model):
    if isinstance(model, Subclassed):
        c = Subclassed.from_config(model.get_config())
        c(np.zeros((1, 16), "float32"))
    else:
        c = keras.models.clone_model(model)
    c.set_weights(model.get_weights())
    return c


def leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer)
        else:
            yield layer


def magnitude_masked_reference(model, sparsity):
    """Copy of `model` with the smallest |w| of every multi-dim trainable weight zeroed (NumPy)."""
    ref = copy_model(model)
    for layer in leaf_layers(ref):
        for w in layer.trainable_weights:
            if len(w.shape) >= 2:
                v = w.numpy()
                k = int(round(sparsity * v.size))
                thr = np.sort(np.abs(v).ravel())[k - 1]
                w.assign(np.where(np.abs(v) > thr, v, 0.0))
    return ref


def apply_masks_now(pruned):
    """Runs the callback's mask update for step 0 (public callback API, no fit)."""
    cb = PruningCallback()
    cb.set_model(pruned)
    cb.on_train_begin()
    cb.on_train_batch_begin(0)
    cb.on_train_end()
    return cb


def outputs(model, x):
    y = model(x, training=False)
    return [np.asarray(t) for t in (y if isinstance(y, (list, tuple)) else [y])]


