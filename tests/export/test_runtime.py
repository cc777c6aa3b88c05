"""load_interpreter / run_tflite / benchmark_tflite / verify against numpy references."""

import keras
import numpy as np
import pytest

from tfcompress.export import (benchmark_tflite, export_tflite, load_interpreter, run_tflite,
                               verify)


def _dense(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(5)])


def _numpy_dense(model, x):
    kernel, bias = model.layers[0].get_weights()
    return x.astype(np.float64) @ kernel + bias


def test_verify_errors_match_numpy_reference():
    x = np.random.default_rng(0).normal(size=(300, 6)).astype("float32")
    model_a, model_b = _dense(1), _dense(2)
    tflite_b, _ = export_tflite(model_b)
    report = verify(model_a, tflite_b, x)
    ref_a, ref_b = _numpy_dense(model_a, x), _numpy_dense(model_b, x)
    diff = np.abs(ref_a - ref_b)
    assert report.max_abs_error == pytest.approx(diff.max(), rel=1e-5, abs=1e-5)
    assert report.mean_abs_error == pytest.approx(diff.mean(), rel=1e-5, abs=1e-6)
    assert report.top1_agreement == pytest.approx(np.mean(ref_a.argmax(1) == ref_b.argmax(1)))
    assert report.num_samples == 300
    same = verify(model_b, tflite_b, x)
    assert same.max_abs_error < 1e-5 and same.top1_agreement == 1.0


def test_run_tflite_int8_io_matches_manual_quantization():
    x = np.random.default_rng(0).normal(size=(40, 6)).astype("float32")
    model = _dense(3)
    tflite, _ = export_tflite(model, quantize="int8", representative_data=x)
    interp = load_interpreter(tflite)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    (s_in, z_in), (s_out, z_out) = inp["quantization"], out["quantization"]
    manual = []
    for row in x:  # quantize / invoke / dequantize by hand, one sample at a time
        interp.resize_tensor_input(inp["index"], [1, 6])
        interp.allocate_tensors()
        q = np.clip(np.round(row / s_in + z_in), -128, 127).astype(np.int8)[None]
        interp.set_tensor(inp["index"], q)
        interp.invoke()
        manual.append((interp.get_tensor(out["index"]).astype(np.float32) - z_out) * s_out)
    manual = np.concatenate(manual)
    np.testing.assert_allclose(run_tflite(tflite, x, batch_size=16), manual, atol=1e-6)
    # And the int8 model is within a few output steps of the float reference.
    assert np.abs(manual - _numpy_dense(model, x)).max() < 0.05 * np.abs(manual).max() + 4 * s_out


def test_run_tflite_batching_and_static_batch():
    x = np.random.default_rng(0).normal(size=(23, 6)).astype("float32")
    model = _dense(4)
    tflite, _ = export_tflite(model)
    ref = _numpy_dense(model, x)
    for batch in (None, 1, 7, 64):
        np.testing.assert_allclose(run_tflite(tflite, x, batch_size=batch), ref, atol=1e-5)
    static, report = export_tflite(model, target="edgetpu", representative_data=x)
    assert report.inputs[0]["shape"] == [1, 6]
    assert run_tflite(static, x).shape == (23, 5)
    with pytest.raises(ValueError, match=r"expects shape \(n, 6\)"):
        run_tflite(tflite, x[:, :5])


def test_benchmark_reports_latency():
    tflite, _ = export_tflite(_dense(5))
    stats = benchmark_tflite(tflite, runs=20, warmup=2, num_threads=2)
    assert 0 < stats["min_ms"] <= stats["median_ms"] <= stats["p90_ms"]
    assert stats["runs"] == 20 and stats["num_threads"] == 2 and stats["batch_size"] == 1
    with pytest.raises(ValueError, match="runs must be"):
        benchmark_tflite(tflite, runs=0)


def test_load_interpreter_rejects_bad_inputs(tmp_path):
    tflite, _ = export_tflite(_dense(6))
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(tflite[: len(tflite) // 3])
    text = tmp_path / "notes.tflite"
    text.write_text("this is not a model\n")
    with pytest.raises(ValueError):
        load_interpreter(truncated)
    with pytest.raises(ValueError, match="not a TFLite model"):
        load_interpreter(text)
    with pytest.raises(FileNotFoundError):
        load_interpreter(tmp_path / "missing.tflite")
    with pytest.raises(TypeError, match="bytes or a path"):
        load_interpreter(12)
    with pytest.raises(ValueError, match="num_threads"):
        load_interpreter(tflite, num_threads=0)
    assert load_interpreter(tflite, num_threads=2).get_input_details()[0]["shape"].tolist() == [1, 6]


def test_multi_input_multi_output_keep_the_keras_order():
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    joined = keras.layers.Concatenate()([a, b])
    outputs = [keras.layers.Dense(2, name="small")(joined), keras.layers.Dense(7, name="big")(b)]
    model = keras.Model([a, b], outputs)
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(30, 4)).astype("float32"), rng.normal(size=(30, 3)).astype("float32")
    tflite, report = export_tflite(model)
    assert [t["shape"] for t in report.inputs] == [[-1, 4], [-1, 3]]
    assert [t["shape"] for t in report.outputs] == [[-1, 2], [-1, 7]]
    got = run_tflite(tflite, [xa, xb])
    for mine, ref in zip(got, model.predict([xa, xb], verbose=0)):
        np.testing.assert_allclose(mine, ref, atol=1e-5)
    pairs = lambda: ((xa[i : i + 1], xb[i : i + 1]) for i in range(30))  # noqa: E731
    int8, report = export_tflite(model, quantize="int8", representative_data=pairs)
    assert report.is_full_integer
    small, big = run_tflite(int8, [xa, xb])
    assert small.shape == (30, 2) and big.shape == (30, 7)
    ref_small, ref_big = model.predict([xa, xb], verbose=0)
    assert np.abs(big - ref_big).max() < 0.1 * np.abs(ref_big).max()
    assert np.abs(small - ref_small).max() < 0.1 * np.abs(ref_small).max()
