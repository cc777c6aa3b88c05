"""LSTM / GRU / Bidirectional kernels prune and export to TFLite; a user's layer declares its
prunable weights with `tfcompress_prunable_weights`."""

import keras
import numpy as np
import pytest

from pruning_models import apply_masks_now
import tfcompress
from tfcompress.export import export_tflite, run_tflite
from tfcompress.pruning import ConstantSparsity, PruneWrapper, prune

L = keras.layers


def _zero_smallest(w, sparsity):
    """NumPy reference of magnitude pruning of one weight."""
    k = int(round(sparsity * w.size))
    thr = np.sort(np.abs(w).ravel())[k - 1]
    return np.where(np.abs(w) > thr, w, 0.0)


def _text_model():
    x = keras.Input((12,), dtype="int32")
    h = L.Embedding(50, 8, name="emb")(x)
    h = L.Bidirectional(L.LSTM(16, return_sequences=True), name="bilstm")(h)
    h = L.GRU(8, name="gru")(h)
    return keras.Model(x, L.Dense(3, name="head")(h), name="text")


def test_lstm_gru_bidirectional_kernels_prune_and_export():
    model = _text_model()
    xs = np.random.default_rng(0).integers(0, 50, (4, 12)).astype("int32")
    pruned = prune(model, schedule=ConstantSparsity(0.5, frequency=1),
                   layers=[L.Bidirectional, L.GRU])
    apply_masks_now(pruned)
    wrappers = {l.layer.name: l for l in pruned.layers if isinstance(l, PruneWrapper)}
    assert sorted(wrappers) == ["bilstm", "gru"]
    assert [n for n, *_ in wrappers["bilstm"].pruned] == [
        "forward_kernel", "forward_recurrent_kernel", "backward_kernel", "backward_recurrent_kernel"]
    assert [n for n, *_ in wrappers["gru"].pruned] == ["kernel", "recurrent_kernel"]
    # reference: the original model with every (recurrent) kernel thresholded in numpy
    ref = keras.models.clone_model(model)
    ref.set_weights(model.get_weights())
    cells = [ref.get_layer("bilstm").forward_layer.cell, ref.get_layer("bilstm").backward_layer.cell,
             ref.get_layer("gru").cell]
    for cell in cells:
        for var in (cell.kernel, cell.recurrent_kernel):
            var.assign(_zero_smallest(var.numpy(), 0.5))
    expected = np.asarray(ref(xs))
    np.testing.assert_allclose(np.asarray(pruned(xs)), expected, rtol=1e-5, atol=1e-5)
    # export: strip, then RNNs unrolled (TFLite cannot lower the TensorList loop)
    tfl, _ = export_tflite(pruned)
    np.testing.assert_allclose(run_tflite(tfl, xs), expected, rtol=1e-4, atol=1e-5)


def test_rnn_with_unknown_sequence_length_export_error_says_what_to_do():
    x = keras.Input((None, 4))
    model = keras.Model(x, L.LSTM(4, name="seq")(x))
    with pytest.raises(ValueError, match="fixed sequence length"):
        export_tflite(model)


@keras.saving.register_keras_serializable(package="tfcompress_tests")
class ScaledDense(L.Layer):
    """A user's layer: declares `kernel` prunable, not `scale`."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.units))
        self.scale = self.add_weight(name="scale", shape=(self.units,), initializer="ones")

    def call(self, x):
        return keras.ops.matmul(x, self.kernel) * self.scale

    def tfcompress_prunable_weights(self):
        return [self.kernel]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class NoProtocol(ScaledDense):
    tfcompress_prunable_weights = None


def test_custom_layer_declares_its_prunable_weights(tmp_path):
    x = keras.Input((16,))
    model = keras.Model(x, ScaledDense(8, name="mine")(x))
    w = np.random.default_rng(1).normal(size=(16, 8)).astype("float32")
    model.get_layer("mine").kernel.assign(w)
    pruned = prune(model, schedule=ConstantSparsity(0.75, frequency=1))
    apply_masks_now(pruned)
    wrapper = pruned.get_layer("prune_mine")
    assert [n for n, *_ in wrapper.pruned] == ["kernel"]  # scale is not touched
    xs = np.random.default_rng(2).random((3, 16)).astype("float32")
    expected = xs @ _zero_smallest(w, 0.75)
    np.testing.assert_allclose(np.asarray(pruned(xs)), expected, rtol=1e-5, atol=1e-5)
    path = str(tmp_path / "custom.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(tfcompress.strip(loaded)(xs)), expected, rtol=1e-5, atol=1e-5)
    # without the protocol the layer is reported as not prunable
    other = keras.Model(x, NoProtocol(8, name="plain")(x))
    with pytest.raises(ValueError, match="nothing to prune"):
        prune(other, schedule=ConstantSparsity(0.5))
