"""Fast subset of the model-zoo sweep (benchmarks/zoo.py), with the sweep's own functions.

Each case builds a model, runs one technique (prune -> strip, QAT -> calibrate + fit -> int8,
cluster -> strip, factorize) through the real TFLite converter and LiteRT, and checks the TFLite
outputs against the Keras model they were exported from (the stripped / QAT / factorized model):
cosine > 0.999 for float32 exports, > 0.95 for int8. Models: the text / multi-IO rows of the sweep
(Embedding + LSTM / GRU / Bidirectional, Transformer encoder, multi-input / multi-output, nested
Sequential, subclassed) and a small keras.applications MobileNet. The full keras.applications
sweep (minutes per architecture) is `nice -n 19 python benchmarks/zoo.py`.
"""

import functools
import importlib.util
import os

import keras
import numpy as np
import pytest

_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "zoo.py")
_spec = importlib.util.spec_from_file_location("tfcompress_bench_zoo", _PATH)
zoo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(zoo)

# Models whose int8 file keeps float ops by design (float fallback: recurrent cells, attention,
# LayerNormalization have no quantization points inside them).
FLOAT_FALLBACK = {"text_lstm", "text_gru", "text_bilstm", "transformer_encoder"}


@functools.lru_cache(maxsize=None)
def _model(name):
    if name == "MobileNet_a025":  # keras.applications.MobileNet, narrow: same graph, small weights
        keras.utils.set_random_seed(0)
        return zoo.set_batch_norm_statistics(keras.applications.MobileNet(
            input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=10, classifier_activation=None))
    return zoo.build(name)


# Every model row of the sweep's text / multi-IO part and every technique at least once, within the
# suite's CPU budget (the sweep itself runs all of them: benchmarks/results/zoo.md).
CASES = [(name, "prune") for name in ("text_bilstm", "transformer_encoder", "multi_io", "subclassed",
                                      "MobileNet_a025")]
CASES += [(name, "qat_int8") for name in ("text_lstm", "text_gru", "transformer_encoder", "multi_io",
                                          "nested_sequential", "subclassed", "preprocessing_cnn",
                                          "MobileNet_a025")]
CASES += [(name, "cluster") for name in ("nested_sequential", "text_gru")]
CASES += [(name, "factorize") for name in ("multi_io", "transformer_encoder")]


@pytest.mark.parametrize("name,technique", CASES, ids=[f"{n}-{t}" for n, t in CASES])
def test_zoo_row_matches_keras(name, technique):
    model = _model(name)
    before = [np.array(w) for w in model.get_weights()]
    x = zoo.sample_inputs(model, zoo.N_SAMPLES, seed=1)
    cell = zoo.run_technique(technique, model, x)
    assert cell["status"] == "pass", (cell.get("why"), cell.get("layer"), cell.get("trace"))
    assert cell["cosine"] > zoo.THRESHOLD[technique]
    if technique == "qat_int8":
        assert cell["full_integer"] == (name not in FLOAT_FALLBACK), cell["float_ops"]
        # (no bound vs the float model: the fit steps on random targets change the function)
    # the user's model is never changed by the technique
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_cosine_is_the_smallest_over_outputs():
    a = [np.array([[1.0, 0.0]]), np.array([[1.0, 2.0]])]
    b = [np.array([[1.0, 0.0]]), np.array([[2.0, -1.0]])]  # second output orthogonal
    assert zoo.cosine(a, b) == pytest.approx(0.0, abs=1e-12)
    assert zoo.cosine(a[0], a[0]) == pytest.approx(1.0)


def test_every_application_is_swept():
    names = zoo.architectures()
    public = [n for n in dir(keras.applications) if n[0].isupper()]
    assert names == sorted(public) and "MobileNetV3Small" in names and "ConvNeXtXLarge" in names
    assert set(zoo.sweep_order(zoo.all_models())) == set(public) | set(zoo.TEXT_MODELS)


def test_blocker_names_the_layer():
    model = zoo.build("text_lstm")
    err = ValueError("quantize(): layer 'lstm' of class LSTM has no quantization config.")
    assert zoo.blocker(err, model) == "lstm (LSTM)"


@pytest.mark.parametrize("name", ["preprocessing_cnn", "subclassed"])
def test_qat_model_round_trips_through_keras_file(name, tmp_path):
    """QAT of a model with Normalization / a standalone BatchNormalization (re-expressed as x * a ->
    quantization point -> + b) and of a subclassed model saves and loads back with the same outputs."""
    from tfcompress.quantization import quantize

    model = _model(name)
    qat = quantize(model)
    x = zoo.sample_inputs(model, 3, seed=2)
    qat.save(tmp_path / "q.keras")
    back = keras.saving.load_model(tmp_path / "q.keras")
    np.testing.assert_array_equal(np.asarray(back(x)), np.asarray(qat(x)))


def _residual_relu_model():
    """conv -> conv, + shortcut, ReLU: TFLite fuses the ReLU into the ADD (one tensor for both)."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 4))
    a = keras.layers.Conv2D(8, 3, padding="same", name="short")(inp)
    b = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    b = keras.layers.Conv2D(8, 3, padding="same", name="c2")(b)
    y = keras.layers.ReLU(name="out")(keras.layers.Add(name="add")([a, b]))
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(inp, keras.layers.Dense(3, name="head")(y), name="resid")


def test_fused_add_relu_tensor_belongs_to_the_relu_and_ops_match_the_simulation():
    """The diagnostics of a failing int8 cell: the TFLite tensor of an ADD with a fused RELU is
    matched to the ReLU layer (not the Add: that mismatch read as cosine 1/sqrt(2)), every matched
    tensor agrees with the Keras QAT layer output, and each TFLite op, fed the TFLite tensors of its
    inputs, is within 1 LSB of the Keras QAT layer (checked here against the layers' own outputs)."""
    from tfcompress.export import export_tflite
    from tfcompress.quantization import calibrate, quantize

    model = _residual_relu_model()
    x = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 4)).astype("float32")
    qat = calibrate(quantize(model), x)
    tflite, _ = export_tflite(qat, quantize="int8")
    found = zoo._tflite_layer_tensors(qat, tflite, x)
    names = {l.name for l in qat.layers}
    relu, add = [n for n in names if n.endswith("out")][0], [n for n in names if n.endswith("add")][0]
    assert relu in found, sorted(found)
    probe = keras.Model(qat.inputs, [qat.get_layer(relu).output, qat.get_layer(add).output])
    want_relu, want_add = [np.asarray(v) for v in probe(x)]
    got = found[relu][1]
    assert (got >= 0).all()
    assert zoo.cosine(want_relu, got) > 0.999
    if add in found:  # an unfused ADD would have its own tensor, equal to the Add's output
        assert zoo.cosine(want_add, found[add][1]) > 0.999
    local = zoo.local_lsb_check(qat, tflite, x)
    assert local["layers"] >= 2 and local["max_lsb"] <= 1.01, local


def _squeeze_excite_model():
    """Squeeze-and-excite as in EfficientNet: mean -> 1x1 conv + swish -> 1x1 conv + sigmoid -> multiply.
    Wide random kernels give the sigmoid's pre-activation a range of about +-45 (step ~0.35)."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((2, 2, 16))
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name="sq")(inp)
    wide = keras.initializers.RandomNormal(stddev=2.0)
    s = keras.layers.Conv2D(8, 1, activation="swish", name="se_reduce", kernel_initializer=wide)(s)
    s = keras.layers.Conv2D(16, 1, activation="sigmoid", name="se_expand", kernel_initializer=wide)(s)
    y = keras.layers.Multiply(name="excite")([inp, s])
    return keras.Model(inp, keras.layers.Conv2D(4, 1, name="proj")(y), name="se")


def test_sigmoid_layer_is_checked_op_by_op():
    """A Conv2D with a sigmoid runs in TFLite as CONV_2D -> LOGISTIC. Checked as one layer, a CONV_2D
    output one step (0.35) from the simulation's (a rounding tie, as float32 arithmetic makes them:
    21 LSB in a run outside pytest) moves the sigmoid by many output steps of 1/256; checked op by
    op (CONV_2D vs the simulation's pre-activation point, LOGISTIC vs a sigmoid of TFLite's CONV_2D
    output) every op is within 1 LSB."""
    from tfcompress.export import export_tflite
    from tfcompress.quantization import calibrate, quantize

    model = _squeeze_excite_model()
    x = np.random.default_rng(0).uniform(-1, 1, (4096, 2, 2, 16)).astype("float32")
    qat = calibrate(quantize(model), x)
    tflite, _ = export_tflite(qat, quantize="int8")
    local = zoo.local_lsb_check(qat, tflite, x)
    assert local["op_by_op"] == 2, local  # se_reduce (swish) and se_expand (sigmoid)
    assert local["max_lsb"] <= 1.01, local  # (checked against swish's LOGISTIC output instead: 151 LSB)

    # the LOGISTIC op against numpy, independently of the checker
    inner = {}
    found = zoo._tflite_layer_tensors(qat, tflite, x, inner)
    expand = next(n for n in found if n.endswith("se_expand"))
    (_, pre), = inner[expand]
    want = np.round(256 / (1 + np.exp(-pre))) / 256
    assert np.abs(np.minimum(want, 255 / 256) - found[expand][1]).max() <= 1 / 256 + 1e-9


def test_layer_read_by_a_concat_and_an_add_is_matched_to_its_own_tensor():
    """`c` feeds an Add and a Concatenate: TFLite keeps c's CONV_2D output at c's own scale for the
    ADD and adds a QUANTIZE to the concat's scale for the CONCATENATION (as NASNet's cells do). The
    layer's tensor is the CONV_2D output the ADD reads, not that copy (fed the copy, NASNetLarge's
    ReLUs read 2 LSB off), and every op is within 1 LSB."""
    from ai_edge_litert.interpreter import Interpreter

    from tfcompress.export import export_tflite
    from tfcompress.quantization import calibrate, quantize

    keras.utils.set_random_seed(3)
    L = keras.layers
    inp = keras.Input((8, 8, 8))
    a = L.Conv2D(8, 1, name="a")(inp)
    b = L.Conv2D(8, 1, name="b", kernel_initializer=keras.initializers.RandomNormal(stddev=3.0))(inp)
    c = L.Conv2D(8, 1, name="c")(inp)
    cat = L.Concatenate(name="cat")([L.Add(name="add1")([a, b]), L.Add(name="add2")([a, c]), c])
    model = keras.Model(inp, L.Conv2D(4, 1, name="out")(L.Activation("relu", name="act")(cat)))
    x = np.random.default_rng(0).uniform(-1, 1, (64, 8, 8, 8)).astype("float32")
    qat = calibrate(quantize(model), x)
    tflite, _ = export_tflite(qat, quantize="int8")
    ops = Interpreter(model_content=tflite)._get_ops_details()
    assert any(o["op_name"] == "QUANTIZE" for o in ops)  # the copy exists
    found = zoo._tflite_layer_tensors(qat, tflite, x)
    c_name = next(n for n in found if n.endswith("_c"))
    add2_name = next(n for n in found if n.endswith("add2"))
    add2_inputs = next(set(map(int, o["inputs"])) for o in ops
                       if o["op_name"] == "ADD" and found[add2_name][0]["index"] in o["outputs"])
    assert found[c_name][0]["index"] in add2_inputs
    assert zoo.local_lsb_check(qat, tflite, x)["max_lsb"] <= 1.01


def test_rounding_sensitivity_matches_numpy_for_a_linear_model():
    """rounding_sensitivity: cosine of W x and W (x (1 + 0.3 n)), n standard normal (the same draw as
    numpy's default_rng(0)), computed here in numpy."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, use_bias=False)])
    x = np.random.default_rng(2).uniform(-1, 1, (5, 6)).astype("float32")
    noisy = (x * (1 + 0.3 * np.random.default_rng(0).standard_normal(x.shape))).astype("float32")
    w = model.get_weights()[0].astype("float64")
    a, b = (x.astype("float64") @ w).ravel(), (noisy.astype("float64") @ w).ravel()
    want = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert zoo.rounding_sensitivity(model, x, rel=0.3) == pytest.approx(want, abs=1e-6)
    assert want < 0.999


def test_half_step_sensitivity_matches_numpy_for_a_linear_model():
    """half_step_sensitivity: cosine of W x and W (x + u), u uniform in +-half an int8 step of x's
    range (the same draw as numpy's default_rng(5)), computed here in numpy."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, use_bias=False)])
    x = np.random.default_rng(2).uniform(-1, 1, (5, 6)).astype("float32")
    step = float(x.max() - x.min()) / 255
    u = np.random.default_rng(5).uniform(-step / 2, step / 2, x.shape).astype("float32")
    w = model.get_weights()[0].astype("float64")
    a, b = (x.astype("float64") @ w).ravel(), ((x + u).astype("float64") @ w).ravel()
    want = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert zoo.half_step_sensitivity(model, x) == pytest.approx(want, abs=1e-6)
    assert want < 1.0
