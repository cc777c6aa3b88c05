"""The measured guard of ``sparse_kernels="auto"``: the rewritten file is never slower than dense.

Why a measurement and not only the per-layer cost model: the cost model predicts each layer
alone, at one thread. In a whole model every tfcompress node also splits XNNPACK's graph (the
34 custom 1x1 convs of MobileNetV2 leave XNNPACK 28 small partitions), and small partitions
barely scale with threads: on this x86 host (2 cores) the "auto" MobileNetV2 was 1.5x / 1.06x
dense at 1 thread (float32 / int8) but 0.95x / 0.77x at 2. That cost belongs to the graph, not
to a layer, and depends on the runtime's threading; a per-layer model cannot see it.

What the guard does (`guard`), after the cost model has chosen the layers:

1. Ranks the rewritten layers by their predicted gain (int8: the cost model's dense minus
   tfcompress microseconds; float32: the multiply-adds the zeros save) and builds nested
   candidate files that keep the top 1, 1/2, 1/4 ... of them and revert the rest to the dense
   op, plus the all-dense file (every layer reverted: the control).
2. Times the dense file and every candidate in a child process (`_sandbox`, so a crash in
   native code cannot kill the caller) at each requested thread count the host has cores for:
   one interpreter per (file, threads), rounds of a few invokes each in a shuffled order, the
   fastest of a few invokes kept per block, each candidate's block right next to a dense one;
   a candidate's speed-up is the ratio of the fastest of dense's and of its block times (the
   fast end: other processes only ever slow an invoke down; see `speedups_of`). Twice: a second,
   independent measurement confirms the first; each candidate keeps the lower of its two
   speed-ups, the control the noisier of its two (`worst_of`).
3. `choose`: a candidate is acceptable when its speed-up is >= 1 - tolerance at every measured
   thread count, where the tolerance is the noise the all-dense control shows (its speed-up
   should be exactly 1), at least 1 %; of the acceptable ones whose geometric-mean speed-up over
   the thread counts is above 1 and within the tolerance of the highest, the one keeping the most
   layers wins (a difference the noise can make does not decide); when none beats the control,
   every layer is reverted (the dense file: not slower by construction).

The measurement is the host's: an x86 host says nothing about a phone. For an ARM app, export
with ``num_threads=None`` (cost model only) and time the dense and the rewritten file on the
device (LiteRT's ``benchmark_model``, or `tfcompress.export.benchmark_tflite` there), or run the
export on an ARM machine, where the guard measures the ARM kernels.

Internal module.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

# Thread counts "auto" checks by default: an app's usual 1 and 2 (capped to the host's cores).
DEFAULT_THREADS = (1, 2)
MAX_THREADS = 64
# Smallest tolerance (relative speed-up) for "not slower than dense"; the measured noise of the
# all-dense control raises it.
MIN_TOLERANCE = 0.01
# Above this noise (the control's distance from 1) the measurement cannot tell small differences:
# only a candidate faster than dense by more than the noise at every thread count ("clear") is
# kept, else every layer is reverted (the dense file cannot be slower than itself).
MAX_NOISE = 0.05
# Above this noise nothing is kept, however fast a candidate measured.
MAX_CLEAR_NOISE = 0.25
# Timing budget of one guard measurement (seconds of invokes, not counting interpreter set-up).
BUDGET_S = 3.0
MIN_ROUNDS, MAX_ROUNDS = 5, 60
INVOKES_PER_ROUND = 3
# Percentile of the block times compared (see `speedups_of`): 0, the fastest block.
QUANTILE = 0
# At most this many candidate files (the all-dense control included): each costs a rewrite and
# one interpreter per thread count.
MAX_CANDIDATES = 5


def check_threads(num_threads):
    """Validated thread counts as a sorted tuple, or None (no measurement).

    Args:
        num_threads: None, an int, or a non-empty sequence of ints from 1 to 64.

    Returns:
        A sorted tuple of distinct ints, or None.

    Raises:
        TypeError: not an int / sequence of ints.
        ValueError: empty, or a count outside 1..64.

    Example:
        >>> check_threads((2, 1))
        (1, 2)
    """
    if num_threads is None:
        return None
    values = [num_threads] if isinstance(num_threads, (int, np.integer)) else num_threads
    try:
        values = list(values)
    except TypeError:
        raise TypeError(f"num_threads must be None, an int or a sequence of ints (the thread counts "
                        f"the app runs the model at, e.g. (1, 2)), got {num_threads!r}.") from None
    if not values:
        raise ValueError("num_threads must name at least one thread count, e.g. (1, 2); use None "
                         "to skip the measurement.")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"num_threads must hold ints (thread counts such as 1, 2, 4), got "
                            f"{v!r} in {num_threads!r}.")
        if not 1 <= int(v) <= MAX_THREADS:
            raise ValueError(f"num_threads must be from 1 to {MAX_THREADS}, got {int(v)} in "
                             f"{num_threads!r}.")
    return tuple(sorted({int(v) for v in values}))


def layer_gain(row) -> float:
    """Predicted gain of one rewritten layer, the key the guard ranks layers by.

    int8 rows carry the cost model's ``predicted_us`` (dense, tfcompress): the gain is their
    difference in microseconds. Other rows: the multiply-adds the zeros save per invoke, in
    millions (rows x K x N x sparsity; a fused block's ``macs_saved_m``: the sum over its 1x1
    convs), a proxy on a different scale (only compared among rows of one model; a model holds
    one dtype).

    Example:
        >>> layer_gain({"predicted_us": {"dense": 10.0, "tfcompress": 4.0}})
        6.0
        >>> layer_gain({"rows": 100, "shape": [8, 16], "sparsity": 0.5})
        0.0064
        >>> layer_gain({"op": "INVERTED_RESIDUAL (fused)", "shape": [4, 4, 8, 16, 8], "macs_saved_m": 0.02})
        0.02
    """
    pred = row.get("predicted_us")
    if pred:
        return float(pred["dense"]) - float(pred["tfcompress"])
    if "macs_saved_m" in row:
        return float(row["macs_saved_m"])
    n, k = row.get("shape", (0, 0))
    return float(row.get("rows") or 1) * n * k * float(row.get("sparsity", 0.0)) / 1e6


def candidate_sets(gains) -> list:
    """Nested sets of layer positions to keep, best predicted gain first.

    Args:
        gains: Predicted gain of each rewritten layer (list, in file order).

    Returns:
        A list of frozensets of indices into `gains`: all layers, then the top half, quarter,
        eighth (rounded down, at least one layer), then the empty set (all reverted): at most
        `MAX_CANDIDATES` distinct sets.

    Example:
        >>> [sorted(s) for s in candidate_sets([1.0, 5.0, 3.0, 2.0])]
        [[0, 1, 2, 3], [1, 2], [1], []]
    """
    order = sorted(range(len(gains)), key=lambda i: (-gains[i], i))
    sizes, k = [], len(order)
    while k >= 1 and len(sizes) < MAX_CANDIDATES - 1:
        sizes.append(k)
        k = k // 2 if k > 1 else 0
    sets = []
    for size in sizes + [0]:
        s = frozenset(order[:size])
        if s not in sets:
            sets.append(s)
    return sets


def choose(speedups, min_tolerance=MIN_TOLERANCE) -> dict:
    """The candidate file to ship, from measured speed-ups (pure function).

    Args:
        speedups: One dict per candidate, ``{threads: speed-up vs dense}`` (dense time /
            candidate time, median over paired rounds), in the order of `candidate_sets`: the
            last one keeps no layer (the all-dense control, whose true speed-up is 1).
        min_tolerance: Smallest tolerated slow-down (relative). Defaults to 0.01.

    Returns:
        Dict with ``index`` (the chosen candidate), ``tolerance`` (max(min_tolerance, the
        control's distance from 1 at any thread count)), ``accepted`` (candidate indices
        whose speed-up is >= 1 - tolerance at every thread count) and ``clear`` (those >= 1 +
        tolerance at every thread count: faster than dense beyond the noise). The chosen one
        is the candidate keeping the most layers whose geometric-mean speed-up is within the
        tolerance of the best accepted one (a difference the noise can make does not decide,
        so the same model gives the same file from run to run); the control (every layer
        reverted: the dense file) unless one beats 1. Above `MAX_NOISE` only clear candidates
        may be chosen, above `MAX_CLEAR_NOISE` none.

    Example:
        >>> choose([{1: 1.5, 2: 0.8}, {1: 1.3, 2: 1.05}, {1: 1.0, 2: 1.0}])["index"]
        1
        >>> choose([{1: 1.5, 2: 0.8}, {1: 1.0, 2: 1.0}])["index"]
        1
        >>> choose([{1: 1.9, 2: 1.6}, {1: 1.1, 2: 1.02}, {1: 1.0, 2: 0.92}])["index"]  # noisy, 0 is clear
        0
        >>> choose([{1: 1.45, 2: 1.10}, {1: 1.38, 2: 1.17}, {1: 1.02, 2: 0.99}])["index"]  # a tie
        0
    """
    if not speedups:
        raise ValueError("choose needs at least the all-dense control candidate.")
    control = len(speedups) - 1
    tol = max([min_tolerance] + [abs(1.0 - v) for v in speedups[control].values()])
    accepted, clear, scores = [], [], {}
    for i, s in enumerate(speedups[:control]):
        if not s or any(v < 1.0 - tol for v in s.values()):
            continue
        accepted.append(i)
        if all(v >= 1.0 + tol for v in s.values()):
            clear.append(i)
        if tol > MAX_CLEAR_NOISE or (tol > MAX_NOISE and i not in clear):
            continue
        score = math.exp(np.mean([math.log(max(v, 1e-9)) for v in s.values()]))
        if score > 1.0:
            scores[i] = score
    best = control
    if scores:  # candidates are nested, most layers first: the first one within the noise of the best
        top = max(scores.values())
        best = min(i for i, v in scores.items() if v >= top * (1.0 - tol))
    return {"index": best, "tolerance": float(tol), "accepted": accepted, "clear": clear}


def _host_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def measure(files, threads, budget_s=BUDGET_S, seed=0):
    """Times model files against the first one (dense) in a child process.

    Args:
        files: List of TFLite bytes; files[0] is the reference (dense).
        threads: Thread counts (each <= the host's cores).
        budget_s: About how many seconds the timed rounds take. Defaults to 3.

    Returns:
        ``{"rounds": r, "invokes_per_round": i, "pairs": {threads: [[dense block ms,
        candidate block ms] per candidate]}, ...}``.

    Example:
        >>> m = measure([dense, rewritten], (1, 2))  # doctest: +SKIP
        >>> speedups_of(m["pairs"])[0]  # doctest: +SKIP
        [{1: 1.21, 2: 0.93}]
    """
    from tfcompress.export import _sandbox

    data = b"".join(files)
    options = {"sizes": [len(f) for f in files], "threads": list(threads), "budget_s": budget_s,
               "seed": seed}
    answer = _sandbox.run("compare", data, options, timeout=max(120.0, 20 * budget_s))
    answer["pairs"] = {int(t): v for t, v in answer["pairs"].items()}
    return answer


def compare_child(data, options):
    """The child side of `measure` (runs in `_sandbox`).

    Every round, at each thread count, each candidate is timed right next to the dense file
    (the two in random order, `INVOKES_PER_ROUND` invokes each, the fastest kept): the pair
    ran under the same machine load, so their ratio is what the load leaves least changed.
    """
    from tfcompress.export.interpreter import load_interpreter

    rng = np.random.default_rng(int(options.get("seed", 0)))
    sizes, threads = options["sizes"], [int(t) for t in options["threads"]]
    if sum(sizes) != len(data) or len(sizes) < 2:
        raise ValueError("compare: needs a reference and at least one candidate whose sizes add "
                         "up to the data given.")
    files, off = [], 0
    for n in sizes:
        files.append(data[off:off + n])
        off += n
    interps, inputs, t_setup = {}, {}, time.perf_counter()
    for t in threads:
        for i, f in enumerate(files):
            it = load_interpreter(f, num_threads=t)  # validates, allocates, one invoke on zeros
            for j, d in enumerate(it.get_input_details()):
                shape = [int(v) for v in d["shape"]]
                dtype = np.dtype(d["dtype"])
                key = (j, tuple(shape), dtype.str)
                if key not in inputs:  # every file gets the same inputs (run time can depend on them)
                    if dtype.kind == "f":
                        inputs[key] = rng.standard_normal(shape).astype(dtype)
                    elif dtype.kind in "iu":
                        info = np.iinfo(dtype)
                        inputs[key] = rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)
                    else:
                        inputs[key] = np.zeros(shape, dtype)
                it.set_tensor(d["index"], inputs[key])
            interps[(t, i)] = it

    def block(it):
        best = np.inf
        for _ in range(INVOKES_PER_ROUND):
            t0 = time.perf_counter()
            it.invoke()
            best = min(best, time.perf_counter() - t0)
        return 1e3 * best

    for it in interps.values():  # warm-up
        it.invoke()
    setup_s = time.perf_counter() - t_setup
    n = len(files)
    budget = float(options.get("budget_s", BUDGET_S))
    # per thread count and candidate: [dense block times, candidate block times], paired in time
    pairs = {t: [[[], []] for _ in range(n - 1)] for t in threads}
    start, rounds = time.perf_counter(), 0
    # rounds until the budget is spent (at least MIN_ROUNDS, at most MAX_ROUNDS)
    while rounds < MAX_ROUNDS and (rounds < MIN_ROUNDS or time.perf_counter() - start < budget):
        rounds += 1
        for t in rng.permutation(threads):
            t = int(t)
            for i in rng.permutation(np.arange(1, n)):
                i = int(i)
                if rng.random() < 0.5:
                    d = block(interps[(t, 0)])
                    c = block(interps[(t, i)])
                else:
                    c = block(interps[(t, i)])
                    d = block(interps[(t, 0)])
                pairs[t][i - 1][0].append(d)
                pairs[t][i - 1][1].append(c)
    return {"rounds": rounds, "invokes_per_round": INVOKES_PER_ROUND, "setup_s": round(setup_s, 2),
            "timing_s": round(time.perf_counter() - start, 2),
            "pairs": {str(t): v for t, v in pairs.items()}}


def speedups_of(pairs, quantile=QUANTILE):
    """Per candidate, ``{threads: dense / candidate}`` from the fast end of their timings, and
    the 10 / 50 / 90 % points of the paired per-round ratios (for the report).

    The speed-up is the ratio of the `quantile` points (default 0: the fastest) of the dense
    blocks and of the candidate's blocks timed next to them (a block: the fastest of a few
    invokes). On a shared host other processes only ever make an invoke slower, and the
    slow-downs are bimodal (an invoke either had its cores or shared them), so the fastest invoke
    is the file's own speed and stays put while the median moves with the load (measured here at
    load average 13 on 2 cores: three copies of the same float32 MobileNetV2 had medians of
    16-24 ms and minima of 3.42-3.45 ms; 10 % and 25 % points still flipped between the modes
    when few invokes got the cores).

    Args:
        pairs: ``{threads: [[dense block ms, candidate block ms] per candidate]}``, the two lists
            of a candidate of equal length, paired in time.
        quantile: Percentile (0-100) of the block times compared. Defaults to 0 (fastest).

    Example:
        >>> s, paired = speedups_of({1: [[[2.0, 2.0, 4.0, 4.0], [1.0, 1.0, 1.0, 9.0]]]})
        >>> s
        [{1: 2.0}]
    """
    n = len(next(iter(pairs.values())))
    speed, paired = [dict() for _ in range(n)], [dict() for _ in range(n)]
    for t, rows in pairs.items():
        for i, (d, c) in enumerate(rows):
            d, c = np.asarray(d, np.float64), np.asarray(c, np.float64)
            speed[i][t] = float(np.percentile(d, quantile) / np.percentile(c, quantile))
            paired[i][t] = [float(np.percentile(d / c, q)) for q in (10, 50, 90)]
    return speed, paired


def merge_pairs(a, b):
    """Two `measure` results' pairs joined (a second measurement of the same files).

    Example:
        >>> merge_pairs({1: [[[1.0], [2.0]]]}, {1: [[[3.0], [4.0]]]})
        {1: [[[1.0, 3.0], [2.0, 4.0]]]}
    """
    return {t: [[d + d2, c + c2] for (d, c), (d2, c2) in zip(rows, b[t])] for t, rows in a.items()}


def worst_of(a, b):
    """Two measurements' speed-ups joined pessimistically: per candidate and thread count the lower
    one; for the all-dense control (the last), the one farther from 1 (the larger noise).

    A candidate then passes `choose` only when both measurements accept it: a speed-up one
    measurement saw and the next did not is not kept (the 2-thread timing of a file whose graph
    XNNPACK runs as many partitions moves between measurements seconds apart by more than one
    measurement's noise: the same float32 MobileNetV2 file measured 1.03x, 0.99x and 0.83x dense).

    Example:
        >>> worst_of([{1: 1.5, 2: 1.03}, {1: 1.0, 2: 0.99}], [{1: 1.4, 2: 0.83}, {1: 1.01, 2: 0.97}])
        [{1: 1.4, 2: 0.83}, {1: 1.01, 2: 0.97}]
    """
    out = [{t: min(x[t], y[t]) for t in x} for x, y in zip(a[:-1], b[:-1])]
    control = {t: a[-1][t] if abs(1.0 - a[-1][t]) >= abs(1.0 - b[-1][t]) else b[-1][t] for t in a[-1]}
    return out + [control]


def guard(dense, layers, rewrite, threads, budget_s=BUDGET_S):
    """Measured guard of an "auto" rewrite (see the module docstring).

    Args:
        dense: The dense TFLite bytes (the converter's output).
        layers: The "auto" report rows (`sparse_kernel_report`), in file order.
        rewrite: ``rewrite(revert, guard_record) -> bytes``: the "auto" rewrite with the layers
            whose ``(subgraph, op_index)`` is in `revert` kept dense and `guard_record` stored
            in the metadata.
        threads: Validated thread counts (`check_threads`).
        budget_s: Seconds of timed rounds. Defaults to 3.

    Returns:
        The bytes to ship (an "auto" rewrite with some, all or none of its layers reverted).

    Example:
        >>> out = rewrite_tflite(dense, "auto", num_threads=(1, 2))  # calls guard  # doctest: +SKIP
        >>> sparse_kernel_guard(out)["result"]  # doctest: +SKIP
        'kept the 8 of 33 layers with the largest predicted gain (...), reverted the rest'
    """
    from absl import logging

    rewritten = [i for i, r in enumerate(layers) if r["emitted"] in ("custom", "builtin", "fused")]
    cores = _host_cores()
    measured = tuple(t for t in threads if t <= cores)
    record = {"threads": list(threads), "measured_threads": list(measured), "host_cores": cores,
              "host": _host_name()}
    if len(measured) < len(threads):
        record["note"] = (f"thread counts above the host's {cores} cores were not measured "
                          "(oversubscribed timings say nothing)")
    if not rewritten:
        record["result"] = "nothing to check: no layer was rewritten"
        return rewrite(frozenset(), record)
    gains = [layer_gain(layers[i]) for i in rewritten]
    sets = candidate_sets(gains)
    keys = [(layers[i]["subgraph"], layers[i]["op_index"]) for i in rewritten]
    candidates = [rewrite(_reverted(layers, rewritten, s), None) for s in sets]
    t0 = time.perf_counter()
    logging.info("sparse_kernels='auto': timing %d candidate files (%d of %d rewritten layers kept) "
                 "against dense at %s thread(s) on this host, ~%.0f s", len(candidates),
                 len(sets[0]), len(rewritten), "/".join(map(str, measured)), budget_s)
    try:
        m = measure([dense] + candidates, measured, budget_s)
    except (ValueError, OSError) as e:
        logging.warning("sparse_kernels='auto': the measurement failed (%s); keeping the cost "
                        "model's choice unchecked.", e)
        record["result"] = f"not measured ({' '.join(str(e).split())[:300]}): cost model's choice kept"
        return rewrite(frozenset(), record)
    speed, _ = speedups_of(m["pairs"])
    runs = [speed]
    # a second, independent measurement confirms (see worst_of): what one saw and the other did
    # not is not kept
    try:
        m2 = measure([dense] + candidates, measured, budget_s, seed=1)
    except (ValueError, OSError) as e:
        logging.warning("sparse_kernels='auto': the confirming measurement failed (%s); deciding on one.", e)
        m2 = None
    if m2 is not None:
        runs.append(speedups_of(m2["pairs"])[0])
        speed = worst_of(runs[0], runs[1])
        m["pairs"] = merge_pairs(m["pairs"], m2["pairs"])
        m["rounds"] += m2["rounds"]
    paired = speedups_of(m["pairs"])[1]
    verdict = choose(speed)
    # noisy: the measurement only tells candidates faster than dense beyond the noise (choose)
    noisy = verdict["tolerance"] > MAX_NOISE and verdict["index"] == len(sets) - 1
    kept = sets[verdict["index"]]
    record.update({
        "rounds": m["rounds"], "invokes_per_round": m["invokes_per_round"],
        "child_setup_s": m.get("setup_s"), "child_timing_s": m.get("timing_s"),
        "quantile": QUANTILE,
        "block_ms_compared": {str(t): [[round(float(np.percentile(v, QUANTILE)), 4) for v in pair] for pair in rows]
                         for t, rows in m["pairs"].items()},
        "seconds": round(time.perf_counter() - t0, 2), "tolerance": verdict["tolerance"],
        "measurements": len(runs),
        "candidates": [{"kept_layers": len(s), "speedup": {str(t): v for t, v in sp.items()},
                        "speedup_per_measurement": [{str(t): v for t, v in r[i].items()} for r in runs],
                        "paired_ratio_p10_p50_p90": {str(t): [round(v, 4) for v in q] for t, q in pr.items()},
                        "accepted": i in verdict["accepted"] or i == len(sets) - 1}
                       for i, (s, sp, pr) in enumerate(zip(sets, speed, paired))],
        "chosen": verdict["index"], "kept_layers": len(kept), "rewritten_layers": len(rewritten),
    })
    chosen = speed[verdict["index"]]
    ratios = ", ".join(f"{v:.2f}x at {t} thread(s)" for t, v in chosen.items())
    if noisy:
        record["result"] = (f"reverted all rewritten layers: the host was too busy to measure (the all-dense "
                            f"control measured {_ratios(speed[-1])} thread(s) vs dense, noise > "
                            f"{MAX_NOISE:.0%}, and no candidate was faster beyond it); export on a quieter "
                            "machine, or pass num_threads=None to keep the cost model's choice unchecked")
        logging.warning("sparse_kernels='auto': %s", record["result"])
    elif verdict["tolerance"] > MAX_NOISE:
        record["result"] = (f"kept the {len(kept)} of {len(rewritten)} layers of the fastest candidate that "
                            f"was faster than dense beyond the host's noise ({ratios} vs dense; the all-dense "
                            f"control measured {_ratios(speed[-1])} thread(s))")
    elif len(kept) == len(rewritten):
        record["result"] = f"kept all {len(rewritten)} rewritten layers: {ratios} vs dense"
    elif not kept:
        record["result"] = ("reverted all rewritten layers: no candidate was faster than dense at every "
                            "thread count beyond the noise; the file is the dense one")
    else:
        record["result"] = (f"kept the {len(kept)} of {len(rewritten)} layers with the largest predicted "
                            f"gain ({ratios} vs dense), reverted the rest")
    logging.info("sparse_kernels='auto': %s (%.1f s)", record["result"], record["seconds"])
    record["layer_notes"] = _layer_notes(sets, speed, verdict["index"], keys, gains)
    return rewrite(_reverted(layers, rewritten, kept), record)


def _reverted(layers, rewritten, kept):
    """The `(subgraph, op index)` keys to keep dense: every rewritten layer not in `kept` (a fused
    block: each of its 1x1 convs)."""
    keys = set()
    for j, i in enumerate(rewritten):
        if j not in kept:
            row = layers[i]
            keys.update((row["subgraph"], k) for k in row.get("conv_op_indices", [row["op_index"]]))
    return frozenset(keys)


def _ratios(speedup):
    return ", ".join(f"{v:.2f}x at {t}" for t, v in speedup.items())


def _layer_notes(sets, speed, chosen, keys, gains):
    """Per rewritten layer: kept or reverted, and the measured file ratios behind it."""
    rank = {j: r + 1 for r, j in enumerate(sorted(range(len(gains)), key=lambda i: (-gains[i], i)))}
    notes = {}
    for j, key in enumerate(keys):
        holding = [i for i, s in enumerate(sets) if j in s]
        smallest = holding[-1]
        head = f"gain rank {rank[j]}/{len(keys)}"
        if j in sets[chosen]:
            text = (f"kept ({head}): the shipped file ({len(sets[chosen])} layers rewritten) measured "
                    f"{_ratios(speed[chosen])} thread(s) vs dense")
        else:
            text = (f"reverted ({head}): the smallest candidate still holding it ({len(sets[smallest])} "
                    f"layers) measured {_ratios(speed[smallest])} thread(s) vs dense")
        notes[f"{key[0]}:{key[1]}"] = text
    return notes


def _host_name():
    import platform

    return f"{platform.machine()} {platform.system()}"


def summary_markdown(record) -> str:
    """The guard's record as Markdown lines ("" when there is none).

    Example:
        >>> summary_markdown({"result": "nothing to check"})
        '**auto guard:** nothing to check'
    """
    if not record:
        return ""
    lines = [f"**auto guard:** {record.get('result', '')}"]
    if record.get("candidates"):
        threads = [str(t) for t in record["measured_threads"]]
        lines += ["", f"Measured on this host ({record.get('host', '?')}, {record.get('host_cores')} cores), "
                  f"{record['rounds']} interleaved rounds in {record.get('measurements', 1)} measurement(s); speed-up vs "
                  f"dense (ratio of the {record['quantile']} % points of the block times, 0 % = fastest; the lower of "
                  f"the measurements; in brackets the 10-90 % of the paired per-round ratios); "
                  f"tolerance {record['tolerance']:.1%}:", "",
                  "| layers kept | " + " | ".join(f"{t} thread(s)" for t in threads) + " | accepted | chosen |",
                  "|---:|" + "---:|" * len(threads) + "---|---|"]
        for i, c in enumerate(record["candidates"]):
            cells = [f"{c['speedup'][t]:.2f}x ({c['paired_ratio_p10_p50_p90'][t][0]:.2f}-"
                     f"{c['paired_ratio_p10_p50_p90'][t][2]:.2f})"
                     for t in threads]
            lines.append(f"| {c['kept_layers']} | " + " | ".join(cells) +
                         f" | {'yes' if c['accepted'] else 'no'} | {'**yes**' if i == record['chosen'] else ''} |")
    if record.get("note"):
        lines += ["", record["note"]]
    return "\n".join(lines)

