"""sparse_kernels="auto" with its measured guard (tfcompress.export._auto_guard).

The decision logic is tested as pure functions on explicit inputs with known answers; the
end-to-end tests run the real converter, the real LiteRT interpreter (in the guard's child
process) and the native kernels, and check that what the file holds agrees with what the guard
recorded having measured (never a wall-clock figure: timings on this shared machine vary).
"""

import os

import keras
import numpy as np
import pytest

from tfcompress.export import export_tflite, run_tflite
from tfcompress.export import _auto_guard as guard
from tfcompress.export.sparse import (rewrite_tflite, sparse_kernel_guard, sparse_kernel_markdown,
                                      sparse_kernel_report)

# ---------------------------------------------------------------- pure decision functions


def test_choose_keeps_the_fastest_candidate_that_is_never_slower():
    # all layers: fast at 1 thread, slower at 2 -> rejected; half: faster at both -> chosen
    speedups = [{1: 1.50, 2: 0.80}, {1: 1.30, 2: 1.05}, {1: 1.10, 2: 1.02}, {1: 1.0, 2: 1.0}]
    verdict = guard.choose(speedups)
    assert verdict["index"] == 1
    assert verdict["accepted"] == [1, 2]
    assert verdict["tolerance"] == pytest.approx(guard.MIN_TOLERANCE)


def test_choose_prefers_the_higher_geometric_mean():
    # geometric means: sqrt(1.6 * 1.0) = 1.265 > sqrt(1.2 * 1.2) = 1.2
    verdict = guard.choose([{1: 1.6, 2: 1.0}, {1: 1.2, 2: 1.2}, {1: 1.0, 2: 1.0}])
    assert verdict["index"] == 0


def test_choose_breaks_a_tie_within_the_noise_towards_more_layers():
    # the control measured 2 % off; geometric means 1.2629 (all layers) and 1.2707 (half): 0.6 %
    # apart, less than the noise, so the file keeps every layer (the old rule took the half,
    # and which of two such candidates came out ahead changed from run to run)
    control = {1: 1.02, 2: 0.99}
    assert guard.choose([{1: 1.45, 2: 1.10}, {1: 1.38, 2: 1.17}, control])["index"] == 0
    # a lead larger than the noise still decides: 1.2707 vs 1.20 (6 % apart)
    assert guard.choose([{1: 1.44, 2: 1.0}, {1: 1.38, 2: 1.17}, control])["index"] == 1
    # a candidate within the noise of the best but with a geometric mean <= 1 is never chosen
    assert guard.choose([{1: 1.0, 2: 0.995}, {1: 1.004, 2: 1.0}, control])["index"] == 1


def test_choose_reverts_everything_when_no_candidate_is_faster():
    speedups = [{1: 1.40, 2: 0.70}, {1: 1.20, 2: 0.90}, {1: 1.0, 2: 1.0}]
    verdict = guard.choose(speedups)
    assert verdict["index"] == 2 and verdict["accepted"] == []
    # accepted but not faster than the control (geometric mean <= 1): dense is kept
    assert guard.choose([{1: 0.995, 2: 1.0}, {1: 1.0, 2: 1.0}])["index"] == 1


def test_choose_tolerance_is_the_noise_of_the_all_dense_control():
    # the control (same bytes as dense) measured 3 % off: 0.975 is within noise, 0.96 is not
    control = {1: 1.03, 2: 0.99}
    v = guard.choose([{1: 1.3, 2: 0.975}, control])
    assert v["tolerance"] == pytest.approx(0.03) and v["index"] == 0
    assert guard.choose([{1: 1.3, 2: 0.96}, control])["index"] == 1
    with pytest.raises(ValueError, match="control"):
        guard.choose([])


def test_choose_on_a_noisy_host_keeps_only_what_is_faster_beyond_the_noise():
    # the control measured 8 % off (> MAX_NOISE): a 1.6x / 1.5x candidate is faster than dense by
    # more than that at every thread count and ships; one within the noise (1.05x) does not
    control = {1: 1.0, 2: 0.92}
    v = guard.choose([{1: 1.6, 2: 1.5}, {1: 1.7, 2: 1.05}, control])
    assert v["tolerance"] == pytest.approx(0.08) and v["clear"] == [0] and v["index"] == 0
    # the higher geometric mean (1.7 x 1.05 > 1.6 x 1.0) does not win when it is not clear
    v = guard.choose([{1: 1.6, 2: 1.09}, {1: 1.9, 2: 1.05}, control])
    assert v["clear"] == [0] and v["index"] == 0
    assert guard.choose([{1: 1.3, 2: 1.05}, control])["index"] == 1  # nothing clear: dense
    # beyond MAX_CLEAR_NOISE nothing is believed, however fast
    wild = {1: 1.0, 2: 1.0 - (guard.MAX_CLEAR_NOISE + 0.05)}
    v = guard.choose([{1: 3.0, 2: 3.0}, wild])
    assert v["clear"] == [0] and v["index"] == 1
    # below MAX_NOISE the usual rule: accepted (>= 1 - noise) is enough
    assert guard.choose([{1: 1.3, 2: 0.99}, {1: 1.0, 2: 0.97}])["index"] == 0


def test_a_second_measurement_must_confirm_a_candidate():
    """The three guard measurements of one float32 MobileNetV2 export in a row on the AMD VM
    (all-layers / half / eighth / control at 1 and 2 threads): the first accepts every layer, the
    third rejects it at 2 threads. Joined with worst_of, a candidate is kept only when both
    measurements accept it; the control's noise is the larger of the two."""
    first = [{1: 1.545, 2: 1.033}, {1: 1.339, 2: 1.071}, {1: 1.134, 2: 1.054}, {1: 1.018, 2: 0.994}]
    third = [{1: 1.558, 2: 0.83}, {1: 1.315, 2: 0.902}, {1: 1.188, 2: 1.04}, {1: 0.99, 2: 0.961}]
    assert guard.choose(first)["index"] == 0  # alone: all layers, 1.03x at 2 threads
    joined = guard.worst_of(first, third)
    assert joined[:3] == [{1: 1.545, 2: 0.83}, {1: 1.315, 2: 0.902}, {1: 1.134, 2: 1.04}]
    assert joined[3] == {1: 1.018, 2: 0.961}  # per thread count the value farther from 1
    v = guard.choose(joined)
    assert v["tolerance"] == pytest.approx(0.039) and v["accepted"] == [2] and v["index"] == 2
    # the order of the two measurements does not matter
    assert guard.worst_of(third, first) == joined


def test_candidate_sets_are_nested_best_gain_first():
    sets = guard.candidate_sets([1.0, 5.0, 3.0, 2.0, 4.0, 0.5, 6.0, 2.5])
    # best first: 6 (6.0), 1 (5.0), 4 (4.0), 2 (3.0), 7, 3, 0, 5; all, half, quarter, eighth, none
    assert [sorted(s) for s in sets] == [list(range(8)), [1, 2, 4, 6], [1, 6], [6], []]
    assert all(a >= b for a, b in zip(sets, sets[1:]))  # each contains the next
    assert guard.candidate_sets([2.0]) == [frozenset({0}), frozenset()]
    assert guard.candidate_sets([]) == [frozenset()]
    assert len(guard.candidate_sets(list(range(100)))) == guard.MAX_CANDIDATES


def test_layer_gain_from_predicted_times_or_saved_multiply_adds():
    assert guard.layer_gain({"predicted_us": {"dense": 12.5, "tfcompress": 4.0}}) == 8.5
    # 196 rows x (N=64, K=32) x 75 % zeros = 301,056 multiply-adds saved
    assert guard.layer_gain({"rows": 196, "shape": [64, 32], "sparsity": 0.75}) == pytest.approx(0.301056)


def test_speedups_compare_the_fast_end_of_the_block_times():
    # 25 % points (numpy linear interpolation): dense [1, 2, 3, 100, 100] -> 2.0 vs candidate
    # [0.5, 1, 1, 50, 80] -> 1.0: 2x faster; dense [2, 2, 2, 2, 2] -> 2.0 vs [4, 4, 4, 4, 4]: 0.5x
    pairs = {2: [[[1.0, 2.0, 3.0, 100.0, 100.0], [0.5, 1.0, 1.0, 50.0, 80.0]], [[2.0] * 5, [4.0] * 5]]}
    speed, paired = guard.speedups_of(pairs, quantile=25)
    assert speed == [{2: 2.0}, {2: 0.5}]
    # paired ratios d / c = [2, 2, 3, 2, 1.25]: 10 / 50 / 90 % points
    assert paired[0][2] == pytest.approx([1.55, 2.0, 2.6]) and paired[1][2] == pytest.approx([0.5] * 3)
    # default: the fastest blocks (1.0 vs 0.5; 2.0 vs 4.0)
    assert guard.speedups_of(pairs)[0] == [{2: 2.0}, {2: 0.5}]
    fastest, _ = guard.speedups_of({1: [[[3.0, 9.0, 9.0], [6.0, 6.0, 1.5]]]})  # 3.0 / 1.5
    assert fastest == [{1: 2.0}]
    merged = guard.merge_pairs(pairs, pairs)
    assert merged[2][1] == [[2.0] * 10, [4.0] * 10]


@pytest.mark.parametrize("value,expected", [(1, (1,)), ((2, 1, 2), (1, 2)), ([4], (4,)),
                                            (np.int64(3), (3,)), (None, None)])
def test_thread_counts_are_normalized(value, expected):
    assert guard.check_threads(value) == expected


@pytest.mark.parametrize("value,error,match", [
    (0, ValueError, "from 1 to 64"), ((1, 65), ValueError, "from 1 to 64"), ((), ValueError, "at least one"),
    ("2", TypeError, "must hold ints"), ((1, 1.5), TypeError, "must hold ints"), (True, TypeError, "must hold ints"),
    (2.0, TypeError, "None, an int or a sequence"),
])
def test_bad_thread_counts_are_rejected(value, error, match):
    with pytest.raises(error, match=match):
        guard.check_threads(value)


# ---------------------------------------------------------------- real models, real LiteRT


def _pruned_convs(rng, sparsity=0.85):
    """Three 1x1 convs on a 28x28 map (K >= 24, so float32 "auto" emits all three), 4x1 blocks."""
    inp = keras.Input((28, 28, 32))
    h = keras.layers.Conv2D(96, 1, activation="relu")(inp)
    h = keras.layers.DepthwiseConv2D(3, padding="same")(h)
    h = keras.layers.Conv2D(48, 1, activation="relu")(h)
    h = keras.layers.Conv2D(32, 1)(h)
    model = keras.Model(inp, h)
    for layer in model.layers:
        if type(layer) is keras.layers.Conv2D:
            w = layer.kernel.numpy()  # [1, 1, K, N]
            k, n = w.shape[2:]
            mask = rng.random((k, n // 4)) >= sparsity  # 4 consecutive outputs share their zeros
            layer.kernel.assign(w * np.repeat(mask, 4, axis=1).reshape(w.shape))
    return model


def _custom_nodes(tflite):
    """Operators of the file that are custom ops (read with LiteRT's flatbuffer schema)."""
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    return sum(m.operatorCodes[op.opcodeIndex].customCode is not None
               for sg in m.subgraphs for op in sg.operators)


def _check_consistent(tflite, report, record, n_layers):
    """The file agrees with the guard's record: the kept layers are the chosen candidate's (top
    predicted gain first), the reverted ones say so, and the choice follows from the recorded
    speed-ups by `choose` (or, when the host was too noisy, everything was reverted)."""
    assert record["measured_threads"] and set(record["measured_threads"]) <= set(record["threads"])
    assert max(record["measured_threads"]) <= (len(os.sched_getaffinity(0)))
    cands = record["candidates"]
    assert [c["kept_layers"] for c in cands][0] == n_layers and cands[-1]["kept_layers"] == 0
    speed = [{int(t): v for t, v in c["speedup"].items()} for c in cands]
    for s in speed:
        assert set(s) == set(record["measured_threads"])
    verdict = guard.choose(speed)
    assert record["chosen"] == verdict["index"]
    assert record["tolerance"] == pytest.approx(verdict["tolerance"], abs=1e-4)
    if verdict["tolerance"] > guard.MAX_NOISE and verdict["index"] == len(cands) - 1:
        assert "too busy" in record["result"]
    elif verdict["tolerance"] > guard.MAX_NOISE:
        assert "beyond the host's noise" in record["result"]
    kept = cands[record["chosen"]]["kept_layers"]
    emitted = [r for r in report if r["emitted"] == "custom"]
    reverted = [r for r in report if "reverted to dense by the measured guard" in r["reason"]]
    assert len(emitted) == kept and len(reverted) == n_layers - kept
    assert _custom_nodes(tflite) == kept
    for r in emitted:
        assert r["guard"].startswith("kept")
    for r in reverted:
        assert r["emitted"] == "dense" and r["guard"].startswith("reverted")
    return emitted, reverted


def test_auto_export_with_guard_on_a_float_model(rng, tmp_path):
    model = _pruned_convs(rng)
    path = str(tmp_path / "auto.tflite")
    tflite, _ = export_tflite(model, path, sparse_kernels="auto", num_threads=(1, 2))
    assert open(path, "rb").read() == tflite
    report = sparse_kernel_report(tflite)
    record = sparse_kernel_guard(tflite)
    assert record["threads"] == [1, 2] and record["rounds"] >= guard.MIN_ROUNDS
    emitted, _ = _check_consistent(tflite, report, record, n_layers=3)
    # kept layers are the ones with the most multiply-adds saved (numpy, from the Keras weights)
    saved = []
    for layer in model.layers:
        if type(layer) is keras.layers.Conv2D:
            w = layer.kernel.numpy()
            saved.append(28 * 28 * float((w == 0).sum()))
    top = sorted(range(3), key=lambda i: -saved[i])[:len(emitted)]
    assert sorted(r["op_index"] for r in emitted) == sorted(
        [r for r in report][i]["op_index"] for i in top)
    # whatever was kept, the file computes the model
    x = rng.standard_normal((1, 28, 28, 32)).astype("float32")
    ref = model.predict(x, verbose=0)
    assert np.abs(run_tflite(tflite, x) - ref).max() <= 1e-4 * np.abs(ref).max()
    md = sparse_kernel_markdown(tflite)
    assert "**auto guard:**" in md and "| layers kept | 1 thread(s) | 2 thread(s) |" in md
    assert md.count("\n| ") >= 3 + len(record["candidates"])


def test_auto_int8_rows_carry_predicted_times_and_guard(rng):
    model = _pruned_convs(rng, sparsity=0.9)
    for layer in model.layers:  # 1x4 input blocks for int8 on top of the 4x1 ones
        if type(layer) is keras.layers.Conv2D:
            w = layer.kernel.numpy()
            k = w.shape[2]
            keep = np.repeat(rng.random((k // 4, 1)) >= 0.2, 4, axis=0).reshape(1, 1, k, 1)
            layer.kernel.assign(w * keep)
    calib = rng.standard_normal((8, 28, 28, 32)).astype("float32")
    cores = len(os.sched_getaffinity(0))
    too_many = min(cores + 1, guard.MAX_THREADS)  # more threads than this host has cores: not timed
    tflite, _ = export_tflite(model, quantize="int8", representative_data=calib, sparse_kernels="auto",
                              num_threads=(1, too_many))
    report = sparse_kernel_report(tflite)
    assert len(report) == 3
    for r in report:  # the cost model's numbers are in the row and in its reason
        pred = r["predicted_us"]
        assert f"{pred['tfcompress']:.1f} us tfcompress vs {pred['dense']:.1f} us dense" in r["reason"]
    record = sparse_kernel_guard(tflite)
    assert record["threads"] == [1, too_many]
    if too_many > cores:
        assert record["measured_threads"] == [1] and "above the host's" in record["note"]
    cost_model = [r for r in report if r["emitted"] == "custom" or "reverted" in r["reason"]]
    if cost_model:
        _check_consistent(tflite, report, record, n_layers=len(cost_model))
        gains = [r["predicted_us"]["dense"] - r["predicted_us"]["tfcompress"] for r in cost_model]
        kept = [r for r in cost_model if r["emitted"] == "custom"]
        if kept:  # every kept layer has a larger predicted gain than every reverted one
            reverted = [g for g, r in zip(gains, cost_model) if r["emitted"] == "dense"]
            assert min(r["predicted_us"]["dense"] - r["predicted_us"]["tfcompress"] for r in kept) >= \
                max(reverted, default=-np.inf)
    else:
        assert record["result"].startswith("nothing to check")


def test_num_threads_none_keeps_the_cost_models_choice(rng):
    model = _pruned_convs(rng)
    tflite, _ = export_tflite(model, sparse_kernels="auto", num_threads=None)
    assert sparse_kernel_guard(tflite) == {}
    assert [r["emitted"] for r in sparse_kernel_report(tflite)] == ["custom"] * 3
    assert "auto guard" not in sparse_kernel_markdown(tflite)


@pytest.mark.parametrize("value,error", [(0, ValueError), ((1, 100), ValueError), ("1,2", TypeError),
                                         ([], ValueError)])
def test_bad_num_threads_fails_before_converting_and_leaves_no_file(value, error, tmp_path):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    path = tmp_path / "m.tflite"
    with pytest.raises(error, match="num_threads"):
        export_tflite(model, str(path), sparse_kernels="auto", num_threads=value)
    assert not path.exists() and os.listdir(tmp_path) == []


def test_rewrite_validates_num_threads():
    with pytest.raises(ValueError, match="num_threads must be from 1 to 64"):
        rewrite_tflite(b"TFL3", "auto", num_threads=(0,))


@pytest.mark.parametrize("flag,message", [("0", "expected thread counts such as 1,2"),
                                          ("1,x", "expected thread counts such as 1,2"),
                                          ("1,1000", "expected thread counts such as 1,2")])
def test_cli_rejects_bad_sparse_threads_before_any_work(flag, message, tmp_path, capsys):
    from tfcompress.cli import main

    out = tmp_path / "o.tflite"
    code = main(["convert", str(tmp_path / "missing.keras"), "-o", str(out), "--sparse-kernels", "auto",
                 "--sparse-threads", flag])
    err = capsys.readouterr().err
    assert code == 2 and message in err and not out.exists()


def test_cli_parses_sparse_threads():
    from tfcompress.cli import build_parser

    args = build_parser().parse_args(["convert", "m.keras", "-o", "o.tflite", "--sparse-kernels", "auto",
                                      "--sparse-threads", "2,1"])
    assert args.sparse_kernels == "auto" and args.sparse_threads == (2, 1)
    args = build_parser().parse_args(["convert", "m.keras", "-o", "o.tflite", "--sparse-threads", "none"])
    assert args.sparse_threads is None and args.sparse_kernels is None
