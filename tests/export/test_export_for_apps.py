"""Export for apps: a static batch puts every op on the delegate, Keras I/O names and order are kept
in the TFLite signature, and `verify` compares every output (lists and dicts) against Keras."""

import keras
import numpy as np
import pytest
from ai_edge_litert import interpreter as litert

from tfcompress.cli import main
from tfcompress.export import export_tflite, run_tflite, verify

SHAPE_OPS = {"SHAPE", "STRIDED_SLICE", "PACK"}


def _flatten_dense():
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])


def _ops(tflite):
    """Op names of the main graph, read by LiteRT with no delegate applied."""
    interp = litert.Interpreter(model_content=tflite, experimental_op_resolver_type=(
        litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interp.allocate_tensors()
    return [d["op_name"] for d in interp._get_ops_details()]


def _xnnpack_nodes(tflite):
    """DELEGATE nodes XNNPACK creates with node fusion off: one per op it takes."""
    interp = litert.Interpreter(model_content=tflite, experimental_disable_delegate_node_fusion=True)
    interp.allocate_tensors()
    return sum(d["op_name"] == "DELEGATE" for d in interp._get_ops_details())


def test_batch_size_1_puts_every_op_on_xnnpack_and_gpu(digits):
    model = _flatten_dense()
    static, report = export_tflite(model, batch_size=1)
    dynamic, dynamic_report = export_tflite(model)
    ops = _ops(static)
    assert not SHAPE_OPS & set(ops), ops
    assert _xnnpack_nodes(static) == len(ops) == 3  # RESHAPE, FULLY_CONNECTED x2: all delegated
    assert report.targets["gpu"].compatible and not report.targets["gpu"].offending_ops
    assert not report.targets["cpu"].offending_ops
    # the dynamic-batch file of the same model, for contrast: shape arithmetic the delegates skip
    dyn_ops = _ops(dynamic)
    assert SHAPE_OPS <= set(dyn_ops)
    assert _xnnpack_nodes(dynamic) < len(dyn_ops)
    assert not dynamic_report.targets["gpu"].compatible
    interp = litert.Interpreter(model_content=static)
    assert list(interp.get_input_details()[0]["shape"]) == [1, 8, 8, 1]
    x = digits[1][0][:20]
    np.testing.assert_allclose(run_tflite(static, x), model.predict(x, verbose=0), atol=1e-5)


def test_static_batch_larger_than_one_runs_any_number_of_samples(digits):
    model = _flatten_dense()
    tflite, _ = export_tflite(model, batch_size=4)
    assert list(litert.Interpreter(model_content=tflite).get_input_details()[0]["shape"]) == [4, 8, 8, 1]
    x = digits[1][0][:10]  # 10 = 4 + 4 + 2: the last batch padded by run_tflite
    np.testing.assert_allclose(run_tflite(tflite, x), model.predict(x, verbose=0), atol=1e-5)


def test_int8_calibration_with_a_static_batch(digits):
    (x, y), (x_test, _) = digits
    model = _flatten_dense()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    tflite, report = export_tflite(model, quantize="int8", representative_data=x[:99], batch_size=4)
    assert report.is_full_integer
    assert list(litert.Interpreter(model_content=tflite).get_input_details()[0]["shape"]) == [4, 8, 8, 1]
    r = verify(model, tflite, x_test[:100])
    assert r.top1_agreement >= 0.95, r


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1"])
def test_bad_batch_size_is_a_clear_error_and_writes_nothing(tmp_path, bad):
    out = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match="batch_size must be None"):
        export_tflite(_flatten_dense(), out, batch_size=bad)
    assert not out.exists()


def test_edgetpu_takes_batch_1_only():
    with pytest.raises(ValueError, match="edgetpu"):
        export_tflite(_flatten_dense(), target="edgetpu", batch_size=2)


def _two_in_two_out():
    """Inputs and outputs of equal shapes with names out of alphabetical order: a swap would
    still run, so only the names and the order can tell."""
    zeta = keras.Input((6,), name="zeta_pixels")
    alpha = keras.Input((6,), name="alpha_meta")
    h = keras.layers.Dense(8, activation="relu", name="trunk")(zeta - 2.0 * alpha)
    score = keras.layers.Dense(3, name="score")(h)
    logits = keras.layers.Dense(3, name="class_logits")(h)
    return keras.Model([zeta, alpha], [score, logits])


def test_keras_input_and_output_names_and_order_are_kept(rng):
    model = _two_in_two_out()
    tflite, _ = export_tflite(model)
    interp = litert.Interpreter(model_content=tflite)
    interp.allocate_tensors()
    signature = interp.get_signature_list()["serving_default"]
    assert sorted(signature["inputs"]) == ["alpha_meta", "zeta_pixels"]
    assert sorted(signature["outputs"]) == ["class_logits", "score"]
    # positional order (what run_tflite and index-based apps see) is the Keras order
    assert [d["name"] for d in interp.get_input_details()] == [
        "serving_default_zeta_pixels:0", "serving_default_alpha_meta:0"]
    assert [d["name"] for d in interp.get_output_details()] == ["score", "class_logits"]
    zeta, alpha = rng.random((7, 6), np.float32), rng.random((7, 6), np.float32)
    score, logits = model.predict([zeta, alpha], verbose=0)
    # an app calls the signature by name
    runner = interp.get_signature_runner()
    for i in range(len(zeta)):
        out = runner(zeta_pixels=zeta[i : i + 1], alpha_meta=alpha[i : i + 1])
        np.testing.assert_allclose(out["score"], score[i : i + 1], atol=1e-5)
        np.testing.assert_allclose(out["class_logits"], logits[i : i + 1], atol=1e-5)
    got_score, got_logits = run_tflite(tflite, [zeta, alpha])
    np.testing.assert_allclose(got_score, score, atol=1e-5)
    np.testing.assert_allclose(got_logits, logits, atol=1e-5)


def test_multi_input_int8_calibrates_by_input_name(rng):
    model = _two_in_two_out()
    data = [rng.random((64, 6), np.float32), rng.random((64, 6), np.float32)]
    tflite, report = export_tflite(model, quantize="int8", representative_data=lambda: iter([tuple(data)]))
    assert report.is_full_integer
    r = verify(model, tflite, data)
    assert set(r.per_output) == {"score", "class_logits"}
    for name, out in r.per_output.items():
        # int8 quantization noise only: a few output steps of the outputs' range
        assert out.max_abs_error < 0.05 * max(out.output_scale, 1e-3) + 0.05, (name, out)


def test_verify_compares_each_output_of_a_list_model(rng):
    model = _two_in_two_out()
    tflite, _ = export_tflite(model)
    data = [rng.random((20, 6), np.float32), rng.random((20, 6), np.float32)]
    report = verify(model, tflite, data)
    assert set(report.per_output) == {"score", "class_logits"}
    assert report.max_abs_error < 1e-5
    # a model whose second head differs: verify sees it in that output only
    other = _two_in_two_out()
    other.set_weights(model.get_weights())
    head = other.get_layer("class_logits")
    head.set_weights([w + 0.5 for w in head.get_weights()])
    bad = verify(other, tflite, data)
    assert bad.per_output["score"].max_abs_error < 1e-5
    assert bad.per_output["class_logits"].max_abs_error > 0.4
    assert bad.max_abs_error == bad.per_output["class_logits"].max_abs_error


def test_verify_handles_dict_inputs_and_outputs(rng):
    zeta = keras.Input((5,), name="zeta_pixels")
    alpha = keras.Input((5,), name="alpha_meta")
    h = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()([zeta, alpha]))
    model = keras.Model({"zeta_pixels": zeta, "alpha_meta": alpha},
                        {"score": keras.layers.Dense(1)(h), "probs": keras.layers.Dense(4, activation="softmax")(h)})
    tflite, _ = export_tflite(model)
    data = {"zeta_pixels": rng.random((16, 5), np.float32), "alpha_meta": rng.random((16, 5), np.float32)}
    expected = model.predict(data, verbose=0)
    report = verify(model, tflite, data)
    assert set(report.per_output) == {"score", "probs"}
    assert report.per_output["probs"].top1_agreement == 1.0
    assert report.max_abs_error < 1e-5
    runner = litert.Interpreter(model_content=tflite).get_signature_runner()
    out = runner(**{k: v[:1] for k, v in data.items()})
    np.testing.assert_allclose(out["probs"], expected["probs"][:1], atol=1e-5)
    np.testing.assert_allclose(out["score"], expected["score"][:1], atol=1e-5)
    # swapping the two (same-shaped) inputs changes the outputs: the names, not the order, matched
    swapped = {"zeta_pixels": data["alpha_meta"], "alpha_meta": data["zeta_pixels"]}
    assert np.abs(model.predict(swapped, verbose=0)["probs"] - expected["probs"]).max() > 1e-3
    with pytest.raises(ValueError, match="alpha_meta"):
        verify(model, tflite, {"zeta_pixels": data["zeta_pixels"], "beta": data["alpha_meta"]})


def test_cli_convert_batch_size(tmp_path, capsys):
    model = _flatten_dense()
    model.save(tmp_path / "m.keras")
    out = tmp_path / "m.tflite"
    assert main(["convert", str(tmp_path / "m.keras"), "-o", str(out), "--batch-size", "1"]) == 0
    tflite = out.read_bytes()
    assert list(litert.Interpreter(model_content=tflite).get_input_details()[0]["shape"]) == [1, 8, 8, 1]
    assert not SHAPE_OPS & set(_ops(tflite))
    capsys.readouterr()
    assert main(["convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "n.tflite"), "--batch-size", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tfcompress: error: argument --batch-size: expected a positive integer, got '0'"]
    assert not (tmp_path / "n.tflite").exists()
