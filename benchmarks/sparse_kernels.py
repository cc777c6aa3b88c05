"""Sparse kernels side by side: dense built-in FC vs TFLite's built-in sparse FC vs tfcompress.

One process, one LiteRT version, the same interpreter settings (1 thread, XNNPACK on as in an
app) for every variant; each variant is timed in 3 interleaved rounds and the fastest median is
kept, so the ratios are comparable even on a busy machine.

    python benchmarks/sparse_kernels.py            # full run (~5-10 min)
    python benchmarks/sparse_kernels.py --quick    # a few configurations
    python benchmarks/sparse_kernels.py --int8     # int8 rows only (MobileNetV2 int8, per layer,
                                                   # cost-model fit): results/sparse_kernels_int8*.json
    python benchmarks/sparse_kernels.py --int8 --layers-only --paths avx512vnni,avxvnni,avx2
                                                   # the 19 MobileNetV2 1x1 convs alone, each x86
                                                   # int8 path forced in turn (PATH_ENV), interleaved
                                                   # with dense XNNPACK: results/sparse_kernels_int8_paths*.json

Writes benchmarks/results/sparse_kernels.json and sparse_kernels_speedup.png.
"""

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# numpy's OpenBLAS threads spin after each call and steal the core the 1-thread interpreter runs on
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfcompress.export import benchmark_tflite, export_tflite, load_interpreter, run_tflite  # noqa: E402
from tfcompress.export.sparse import (int8_cost_features, predict_int8_us, rewrite_tflite,  # noqa: E402
                                      sparse_kernel_report)
from tfcompress.pruning import Block, Unstructured  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def prune_kn(w, pattern, sparsity, rng):
    """Zeros a Keras kernel [K, N] by magnitude: unstructured, 2:4 or 1x4 blocks along K."""
    w = w.copy()
    k, n = w.shape
    if pattern == "unstructured":
        w[np.abs(w) < np.quantile(np.abs(w), sparsity)] = 0
    elif pattern == "2:4":
        g = w.reshape(k // 4, 4, n)
        order = np.argsort(np.abs(g), axis=1)
        np.put_along_axis(g, order[:, :2, :], 0.0, axis=1)
    elif pattern == "block1x4":
        norms = np.abs(w.reshape(k // 4, 4, n)).sum(axis=1)
        mask = norms < np.quantile(norms, sparsity)
        w[np.repeat(mask, 4, axis=0)] = 0
    return w


def fc_model(k, n, pattern, sparsity, rng):
    model = keras.Sequential([keras.Input((k,)), keras.layers.Dense(n)])
    w = rng.standard_normal((k, n)).astype("float32") / np.sqrt(k)
    model.layers[0].kernel.assign(prune_kn(w, pattern, sparsity, rng))
    model.layers[0].bias.assign(rng.standard_normal(n).astype("float32") * 0.1)
    return model


def convert(model, dtype, calib, builtin_sparse):
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    opts = []
    if dtype == "int8":
        opts.append(tf.lite.Optimize.DEFAULT)
        conv.representative_dataset = lambda: ([c[None]] for c in calib)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    if builtin_sparse:
        opts.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    conv.optimizations = opts
    return conv.convert()


def _median_ms_no_xnnpack(tfl, runs):
    """For models XNNPACK refuses (the int8 DENSIFY + FC that EXPERIMENTAL_SPARSITY emits)."""
    from ai_edge_litert.interpreter import OpResolverType

    interp = load_interpreter(tfl, num_threads=1,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    for _ in range(3):
        interp.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def timed(variants, runs, notes=None, rounds=3):
    """Fastest of `rounds` interleaved median latencies (ms) per variant."""
    best = {name: float("inf") for name in variants}
    for _ in range(rounds):
        for name, tfl in variants.items():
            try:
                ms = benchmark_tflite(tfl, runs=runs, warmup=3, num_threads=1)["median_ms"]
            except ValueError as e:
                ms = _median_ms_no_xnnpack(tfl, runs)
                if notes is not None:
                    notes[name] = f"default interpreter refuses it ({str(e)[:80]}); timed without XNNPACK"
            best[name] = min(best[name], ms)
    return best


def bench_fc(configs, rng):
    rows = []
    for k, n, pattern, sparsity, dtype in configs:
        model = fc_model(k, n, pattern, sparsity, rng)
        calib = rng.standard_normal((32, k)).astype("float32")
        dense = convert(model, dtype, calib, False)
        builtin = convert(model, dtype, calib, True)
        ours = rewrite_tflite(dense, "custom")
        (layer,) = sparse_kernel_report(ours)
        x = rng.standard_normal((4, k)).astype("float32")
        ref = run_tflite(dense, x)
        err = float(np.abs(run_tflite(ours, x) - ref).max() / max(np.abs(ref).max(), 1e-12))
        runs = 30 if k * n <= 2048 * 2048 else 15
        notes = {}
        t = timed({"dense": dense, "builtin_sparse": builtin, "tfcompress": ours}, runs, notes)
        row = {"K": k, "N": n, "pattern": pattern, "sparsity": sparsity, "dtype": dtype,
               "dense_ms": t["dense"], "builtin_sparse_ms": t["builtin_sparse"],
               "tfcompress_ms": t["tfcompress"],
               "speedup_builtin_sparse": t["dense"] / t["builtin_sparse"],
               "speedup_tfcompress": t["dense"] / t["tfcompress"],
               "tfcompress_vs_builtin_sparse": t["builtin_sparse"] / t["tfcompress"],
               "tfcompress_emitted": layer["emitted"], "max_rel_err": err, "notes": notes,
               "bytes": {"dense": len(dense), "builtin_sparse": len(builtin), "tfcompress": len(ours)}}
        rows.append(row)
        print(f"{k:>5}x{n:<5} {pattern:>12} {sparsity:>5.0%} {dtype:>7} | dense {t['dense']:7.3f} ms | "
              f"builtin sparse {t['builtin_sparse']:7.3f} ms ({row['speedup_builtin_sparse']:4.2f}x) | "
              f"tfcompress {t['tfcompress']:7.3f} ms ({row['speedup_tfcompress']:4.2f}x) | err {err:.1e}"
              + (" | builtin sparse: no XNNPACK" if notes else ""),
              flush=True)
    return rows


MOBILENET_PATTERNS = {"unstructured": Unstructured(), "block4x1": Block((4, 1)), "block1x4": Block((1, 4))}


def mobilenet_v2(pattern, sparsity, rng):
    """MobileNetV2 224 (random weights), every 1x1 conv pruned by magnitude with a tfcompress
    pruning pattern, then its BatchNorm statistics re-estimated on random images: with the
    untouched statistics of an untrained model the activations shrink layer after layer (output
    ~1e-13) and any kernel would "match" the dense one."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3),
                                           classifier_activation=None)
    pruned = 0
    for layer in model.layers:
        if type(layer) is keras.layers.Conv2D and tuple(layer.kernel.shape[:2]) == (1, 1):
            w = layer.kernel.numpy()
            mask = MOBILENET_PATTERNS[pattern].compute_mask(np.abs(w.reshape(1, *w.shape[2:])), sparsity)
            layer.kernel.assign(w * mask.reshape(w.shape))
            pruned += 1
    x = rng.random((4, 224, 224, 3)).astype("float32")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            h = keras.Model(model.input, layer.input)(x).numpy()
            layer.moving_mean.assign(h.mean((0, 1, 2)))
            layer.moving_variance.assign(h.var((0, 1, 2)))
    return model, pruned


def bench_mobilenet(rng, sparsity=0.8, rounds=30):
    """Dense export vs custom / auto sparse kernels, both patterns, all timed interleaved."""
    variants, out = {}, {"sparsity": sparsity, "rounds": rounds,
                         "setup": "MobileNetV2 224, random weights, every 1x1 conv pruned by magnitude "
                                  "(tfcompress.pruning Unstructured() or Block((4, 1))), BatchNorm "
                                  "statistics re-estimated; batch 1, 1 thread, XNNPACK for the rest"}
    x = rng.random((2, 224, 224, 3)).astype("float32")
    for pattern in ("unstructured", "block4x1"):
        model, pruned = mobilenet_v2(pattern, sparsity, rng)
        dense, _ = export_tflite(model)
        custom = rewrite_tflite(dense, "custom")
        auto = rewrite_tflite(dense, "auto")
        ref = run_tflite(dense, x)
        res = {"pruned_1x1_convs": pruned, "output_scale": float(np.abs(ref).max())}
        for name, tfl in (("custom", custom), ("auto", auto)):
            got = run_tflite(tfl, x)
            res[f"{name}_max_rel_err"] = float(np.abs(got - ref).max() / np.abs(ref).max())
            res[f"{name}_top1_agreement"] = float((got.argmax(1) == ref.argmax(1)).mean())
            res[f"{name}_layers"] = sum(r["emitted"] == "custom" for r in sparse_kernel_report(tfl))
        res["bytes"] = {"dense": len(dense), "custom": len(custom), "auto": len(auto)}
        out[pattern] = res
        variants.update({f"{pattern}/dense": dense, f"{pattern}/custom": custom, f"{pattern}/auto": auto})
    t = timed(variants, runs=10, rounds=rounds)
    for pattern in ("unstructured", "block4x1"):
        res = out[pattern]
        for name in ("dense", "custom", "auto"):
            res[f"{name}_ms"] = t[f"{pattern}/{name}"]
        res["speedup_custom"] = res["dense_ms"] / res["custom_ms"]
        res["speedup_auto"] = res["dense_ms"] / res["auto_ms"]
        print(f"MobileNetV2 224, {res['pruned_1x1_convs']} 1x1 convs {sparsity:.0%} sparse, {pattern:>12} | "
              f"dense {res['dense_ms']:.2f} ms | custom {res['custom_ms']:.2f} ms "
              f"({res['speedup_custom']:.2f}x, {res['custom_layers']} layers) | auto {res['auto_ms']:.2f} ms "
              f"({res['speedup_auto']:.2f}x, {res['auto_layers']} layers) | rel err "
              f"{res['custom_max_rel_err']:.1e} (output scale {res['output_scale']:.2f})", flush=True)
    return out


# ---------------------------------------------------------------------------------------- int8

# x86 int8 kernel paths (tflite_export/tfc_internal.h): the environment that forces each one
# in the kernels' Prepare ("best": what the CPU picks by itself). NO_AVX512 makes the pickers act
# as on a CPU without AVX-512; XNNPACK (the dense baseline) still uses this CPU's AVX-512.
PATH_ENV = {"best": {}, "portable": {"TFCOMPRESS_ISA_CAP": "0"},  # "best": environment left as started
            "avx512vnni": {"TFCOMPRESS_ISA_CAP": "2"},
            "avxvnni": {"TFCOMPRESS_ISA_CAP": "2", "TFCOMPRESS_NO_AVX512": "1"},
            "avx2": {"TFCOMPRESS_ISA_CAP": "1", "TFCOMPRESS_NO_AVX512": "1"}}


_PATH_VARS = ("TFCOMPRESS_ISA_CAP", "TFCOMPRESS_NO_AVX512")
_ENV_AT_START = {var: os.environ.get(var) for var in _PATH_VARS}  # "best": as the user started us


def set_path(path):
    """Sets the environment of an x86 kernel path (PATH_ENV) for the next interpreters; "best"
    restores the variables the process was started with."""
    for var in _PATH_VARS:
        os.environ.pop(var, None)
        if path == "best" and _ENV_AT_START[var] is not None:
            os.environ[var] = _ENV_AT_START[var]
    os.environ.update(PATH_ENV[path])


def interleaved(variants, rounds, runs, paths=None):
    """Per variant: the median latency (ms) of each of `rounds` interleaved rounds. `paths`
    (variant -> PATH_ENV key) forces the kernel path of a variant's interpreter."""
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, tfl in variants.items():
            set_path((paths or {}).get(name, "best"))
            times[name].append(benchmark_tflite(tfl, runs=runs, warmup=2, num_threads=1)["median_ms"])
    set_path("best")
    return times


def _last_kernel():
    import ctypes

    from tfcompress.export.sparse_native import library_path

    lib = ctypes.CDLL(library_path())
    lib.TfcLastKernelName.restype = ctypes.c_char_p
    return lib.TfcLastKernelName().decode()


def _summary(ms):
    ms = np.asarray(ms)
    return {"median_ms": float(np.median(ms)), "p25_ms": float(np.percentile(ms, 25)),
            "p75_ms": float(np.percentile(ms, 75)), "min_ms": float(ms.min()), "max_ms": float(ms.max())}


def int8_layer(kind, rows_shape, kernel_kn, rng, activation="relu6"):
    """Dense int8 TFLite bytes of one FC / 1x1 conv (the op alone) with the given [K, N] kernel."""
    k, n = kernel_kn.shape
    inp = keras.Input(tuple(rows_shape) + (k,))
    if kind == "conv":
        out = keras.layers.Conv2D(n, 1, activation=activation)(inp)
        kernel = kernel_kn.reshape(1, 1, k, n)
    else:
        out = keras.layers.Dense(n, activation=activation)(inp)
        kernel = kernel_kn
    m = keras.Model(inp, out)
    m.layers[-1].kernel.assign(kernel)
    m.layers[-1].bias.assign(rng.standard_normal(n).astype("float32") * 0.1)
    calib = rng.standard_normal((8,) + tuple(rows_shape) + (k,)).astype("float32")
    dense, _ = export_tflite(m, quantize="int8", representative_data=calib)
    return dense


def int8_layer_specs(model=None):
    """(kind, rows shape, [K, N] kernel, label) of the per-layer int8 measurements: every distinct
    1x1 conv of the pruned MobileNetV2 (`model`), plus a grid of FC / conv shapes and sparsities
    for the cost-model fit."""
    rng = np.random.default_rng(1)
    specs, seen = [], set()
    if model is not None:
        for layer in model.layers:
            if type(layer) is keras.layers.Conv2D and tuple(layer.kernel.shape[:2]) == (1, 1):
                h, w, k = layer.input.shape[1:]
                n = layer.kernel.shape[-1]
                if (h, w, k, n) in seen:
                    continue
                seen.add((h, w, k, n))
                specs.append(("conv", (h, w), layer.kernel.numpy().reshape(k, n), f"mobilenet {h}x{w} {k}->{n}"))
    for (hw, k, n) in [(28, 64, 64), (14, 256, 256), (56, 32, 64), (7, 512, 512), (28, 128, 48)]:
        for sparsity in (0.5, 0.7, 0.9):
            w = prune_kn(rng.standard_normal((k, n)).astype("float32"), "block1x4", sparsity, rng)
            specs.append(("conv", (hw, hw), w, f"grid conv {hw}x{hw} {k}->{n} block1x4 {sparsity:.0%}"))
    for (p, k, n) in [(1, 1280, 1000), (1, 2048, 2048), (1, 512, 512), (1, 256, 1024), (4, 1024, 1024),
                      (32, 512, 512)]:
        for pattern, sparsity in (("block1x4", 0.5), ("block1x4", 0.8), ("block1x4", 0.95), ("unstructured", 0.9)):
            w = prune_kn(rng.standard_normal((k, n)).astype("float32"), pattern, sparsity, rng)
            specs.append(("fc", (p,) if p > 1 else (), w, f"grid fc {p}x{k}->{n} {pattern} {sparsity:.0%}"))
    return specs


def _dense_proxy(kind, rows_shape, kn, rng):
    """The layer with a dense random kernel as a tfcompress custom op (every 4-input quad stored):
    what the tfcompress kernels of a path cost without sparsity, a stand-in for a dense int8
    kernel of the same instruction set (XNNPACK here cannot be capped below AVX-512)."""
    from tfcompress.export import sparse as sparse_mod

    w = rng.standard_normal(kn.shape).astype("float32")
    if kind == "fc" and rows_shape:
        dense = _fc_batched(w, rows_shape[0], rng)
    else:
        dense = int8_layer(kind, rows_shape if kind == "conv" else (), w, rng,
                           activation="relu6" if kind == "conv" else None)
    keep, sparse_mod.CUSTOM_MIN_SPARSITY = sparse_mod.CUSTOM_MIN_SPARSITY, 0.0
    try:
        return rewrite_tflite(dense, "custom")
    finally:
        sparse_mod.CUSTOM_MIN_SPARSITY = keep


def bench_int8_layers(specs, rng, rounds, paths=("best",), dense_proxy=False):
    """Each layer alone, dense int8 vs tfcompress ("custom", on each x86 kernel path of `paths`:
    the first one is "custom"), interleaved rounds. With more than one path, the outputs of
    all paths are checked to be bit-identical and each path's kernel name is recorded;
    `dense_proxy`: also the layer unpruned on each path (`_dense_proxy`)."""
    models, forced = {}, {}
    rows = []
    for i, (kind, rows_shape, kn, label) in enumerate(specs):
        dense = int8_layer(kind, rows_shape if kind == "conv" else (), kn, rng,
                           activation="relu6" if kind == "conv" else None)
        if kind == "fc" and rows_shape:  # batched FC: the Keras model is built for 1 row
            dense = _fc_batched(kn, rows_shape[0], rng)
        custom = rewrite_tflite(dense, "custom")
        (rep,) = sparse_kernel_report(custom)
        p = int(np.prod(rows_shape)) if rows_shape else 1
        feats = int8_cost_features(kn.T, p)
        models[f"{i}/dense"], models[f"{i}/custom"] = dense, custom
        row = {"label": label, "kind": kind, "features": feats, "sparsity": rep["sparsity"],
               "pattern": rep["pattern"], "emitted": rep["emitted"]}
        forced[f"{i}/custom"] = paths[0]
        if len(paths) > 1:
            batch_rows = tuple(rows_shape) if kind == "fc" and rows_shape else (1,) + tuple(rows_shape)
            x = rng.standard_normal(batch_rows + (kn.shape[0],)).astype(np.float32)
            outs, row["kernels"] = {}, {}
            for path in paths:
                set_path(path)
                outs[path] = run_tflite(custom, x)
                row["kernels"][path] = _last_kernel()
                models[f"{i}/{path}"] = custom
                forced[f"{i}/{path}"] = path
            if dense_proxy:
                proxy = _dense_proxy(kind, rows_shape, kn, rng)
                for path in paths:
                    models[f"{i}/proxy_{path}"] = proxy
                    forced[f"{i}/proxy_{path}"] = path
            set_path("best")
            row["paths_bit_identical"] = all(np.array_equal(outs[p], outs[paths[0]]) for p in paths)
            assert row["paths_bit_identical"], (label, {p: np.abs(outs[p] - outs[paths[0]]).max() for p in paths})
            del models[f"{i}/custom"]
        rows.append(row)
    times = interleaved(models, rounds, runs=15, paths=forced)
    for i, row in enumerate(rows):
        row["dense"] = _summary(times[f"{i}/dense"])
        if len(paths) > 1:
            row["paths"] = {}
            for path in paths:
                t = np.asarray(times[f"{i}/{path}"])
                ratio = np.asarray(times[f"{i}/dense"]) / t  # per round: both timed back to back
                row["paths"][path] = {**_summary(t), "speedup": row["dense"]["median_ms"] / float(np.median(t)),
                                      "speedup_per_round": {"median": float(np.median(ratio)),
                                                            "p25": float(np.percentile(ratio, 25)),
                                                            "p75": float(np.percentile(ratio, 75))}}
                if dense_proxy:  # the same kernels with every quad stored
                    row["paths"][path]["dense_proxy"] = _summary(times[f"{i}/proxy_{path}"])
                    row["paths"][path]["speedup_vs_dense_proxy"] = (
                        row["paths"][path]["dense_proxy"]["median_ms"] / row["paths"][path]["median_ms"])
            row["custom"] = {k: v for k, v in row["paths"][paths[0]].items() if k.endswith("_ms")}
        else:
            row["custom"] = _summary(times[f"{i}/custom"])
        row["speedup"] = row["dense"]["median_ms"] / row["custom"]["median_ms"]
        d_us, s_us = predict_int8_us(row["features"])
        row["predicted_us"] = {"dense": d_us, "custom": s_us}
        if len(paths) > 1:
            per = " | ".join(f"{p} {row['paths'][p]['median_ms'] * 1e3:6.1f} us ({row['paths'][p]['speedup']:4.2f}x"
                             + (f", proxy {row['paths'][p]['dense_proxy']['median_ms'] * 1e3:6.1f}" if dense_proxy else "")
                             + ")" for p in paths)
            print(f"{row['label']:>34} | dense {row['dense']['median_ms'] * 1e3:6.1f} us | {per}", flush=True)
            continue
        print(f"{row['label']:>42} | dense {row['dense']['median_ms'] * 1e3:7.1f} us | tfcompress "
              f"{row['custom']['median_ms'] * 1e3:7.1f} us ({row['speedup']:4.2f}x) | predicted "
              f"{d_us:6.1f} / {s_us:6.1f} us", flush=True)
    return rows


def _fc_batched(kn, batch, rng):
    k, n = kn.shape
    m = keras.Sequential([keras.Input((k,), batch_size=batch), keras.layers.Dense(n)])
    m.layers[-1].kernel.assign(kn)
    m.layers[-1].bias.assign(rng.standard_normal(n).astype("float32") * 0.1)
    calib = rng.standard_normal((8, k)).astype("float32")
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([np.repeat(c[None], batch, 0)] for c in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def fit_int8_cost(rows):
    """Non-negative least squares fit of the int8 cost model (tfcompress.export.sparse.INT8_COST)
    on the per-layer medians, relative errors weighted equally (rows divided by the time)."""
    from scipy.optimize import nnls

    def feats(f, which):
        p, k, n = f["rows"], f["K"], f["N"]
        if which == "dense_many":
            return [1, p * n / 1e3, p * k * n / 1e6, p * k / 1e3]
        if which == "sparse_many":
            return [1, p * n / 1e3, p * f["quads"] / 1e3, p * k / 1e3]
        if which == "dense_few":
            return [1, k * n / 1e3, p * k * n / 1e6]
        return [1, f["slots"] / 1e3, p * f["slots"] / 1e3]

    out = {}
    for which in ("dense_many", "sparse_many", "dense_few", "sparse_few"):
        many = which.endswith("many")
        sel = [r for r in rows if (r["features"]["rows"] >= 16) == many]
        if not sel:
            continue
        key = "dense" if which.startswith("dense") else "custom"
        y = np.array([r[key]["median_ms"] * 1e3 for r in sel])
        a = np.array([feats(r["features"], which) for r in sel], float)
        coef, _ = nnls(a / y[:, None], np.ones(len(y)))
        pred = a @ coef
        out[which] = {"coef": [round(float(c), 5) for c in coef],
                      "median_rel_err": float(np.median(np.abs(pred - y) / y)), "layers": len(sel)}
    return out


def bench_mobilenet_int8(rng, sparsity=0.8, rounds=30, agree_n=200):
    """MobileNetV2 224 int8 (post-training, random weights, BN re-estimated), every 1x1 conv
    pruned to `sparsity` in 1x4 blocks (pruning.Block((1, 4))): dense int8 vs custom vs auto."""
    model, pruned = mobilenet_v2("block1x4", sparsity, rng)
    calib = rng.random((16, 224, 224, 3)).astype("float32")
    dense, _ = export_tflite(model, quantize="int8", representative_data=calib)
    custom = rewrite_tflite(dense, "custom")
    auto = rewrite_tflite(dense, "auto")
    x = rng.random((agree_n, 224, 224, 3)).astype("float32")
    ref = run_tflite(dense, x)
    out = {"setup": f"MobileNetV2 224, random weights, BN statistics re-estimated, every 1x1 conv "
                    f"{sparsity:.0%} zero in 1x4 blocks (pruning.Block((1, 4))), post-training int8 "
                    "(export_tflite(quantize='int8')), batch 1, 1 thread, XNNPACK for the rest; "
                    "x86 AMD Zen 4 (AVX-512 VNNI)",
           "pruned_1x1_convs": pruned, "rounds": rounds,
           "bytes": {"dense": len(dense), "custom": len(custom), "auto": len(auto)}}
    out["size_ratio_custom"] = len(custom) / len(dense)
    for name, tfl in (("custom", custom), ("auto", auto)):
        got = run_tflite(tfl, x)
        out[f"{name}_top1_agreement_vs_dense_int8"] = float((got.argmax(1) == ref.argmax(1)).mean())
        out[f"{name}_max_abs_diff_vs_dense_int8"] = float(np.abs(got - ref).max())
        out[f"{name}_layers"] = sum(r["emitted"] == "custom" for r in sparse_kernel_report(tfl))
    out["output_scale"] = float(np.abs(ref).max())
    out["agreement_inputs"] = agree_n
    out["auto_decisions"] = [{k: r.get(k) for k in ("layer", "shape", "emitted", "reason")}
                             for r in sparse_kernel_report(auto)]
    t = interleaved({"dense": dense, "custom": custom, "auto": auto}, rounds, runs=10)
    for name in ("dense", "custom", "auto"):
        out[name] = _summary(t[name])
    out["speedup_custom"] = out["dense"]["median_ms"] / out["custom"]["median_ms"]
    out["speedup_auto"] = out["dense"]["median_ms"] / out["auto"]["median_ms"]
    # per-round ratios (each round times the three back to back): spread of the speed-up
    ratios = np.asarray(t["dense"]) / np.asarray(t["custom"])
    out["speedup_custom_per_round"] = {"median": float(np.median(ratios)), "p25": float(np.percentile(ratios, 25)),
                                       "p75": float(np.percentile(ratios, 75))}
    print(f"MobileNetV2 224 int8, {pruned} 1x1 convs {sparsity:.0%} zero (1x4 blocks) | dense "
          f"{out['dense']['median_ms']:.3f} ms | custom {out['custom']['median_ms']:.3f} ms "
          f"({out['speedup_custom']:.2f}x, {out['custom_layers']} layers) | auto {out['auto']['median_ms']:.3f} ms "
          f"({out['speedup_auto']:.2f}x, {out['auto_layers']} layers) | size {out['size_ratio_custom']:.2f}x | "
          f"top-1 agreement {out['custom_top1_agreement_vs_dense_int8']:.1%}", flush=True)
    return out, model


def main_int8(args):
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    start = time.time()
    result = {"machine": {"python": sys.version.split()[0], "tensorflow": tf.__version__,
                          "cpu": platform.processor() or platform.machine(), "threads": 1,
                          "note": "x86 (AMD EPYC Zen 4, avx2 + avx_vnni + avx512_vnni); shared machine, other jobs "
                                  "running"}}
    paths = tuple(args.paths.split(","))
    unknown = [p for p in paths if p not in PATH_ENV]
    if unknown:
        raise SystemExit(f"--paths: unknown {unknown}; choose from {sorted(PATH_ENV)}")
    if args.layers_only:  # the 19 distinct 1x1 convs of the pruned MobileNetV2, no whole-model run
        model, _ = mobilenet_v2("block1x4", 0.8, rng)
        specs = int8_layer_specs(model)
        # + the FC grid at 80 % in 1x4 blocks (batch 1 and 4: the 1-15-row windowed kernels)
        specs = specs[:19] + ([sp for sp in specs if sp[0] == "fc" and sp[3].endswith("block1x4 80%")]
                              if args.fc else [])
        result["setup"] = ("each distinct MobileNetV2 224 1x1 conv alone (random weights, BN re-estimated, 80 % "
                           "zero in 1x4 blocks, post-training int8), batch 1, 1 thread: dense int8 (XNNPACK, "
                           "which uses this CPU's AVX-512 VNNI kernels: it cannot be capped) vs tfcompress on "
                           f"each forced x86 kernel path {list(paths)}; interleaved rounds of 15 invokes")
        result["machine"]["load_average_start"] = os.getloadavg()
    else:
        mob, model = bench_mobilenet_int8(rng, rounds=args.rounds)
        result["mobilenet_v2_int8"] = mob
        specs = int8_layer_specs(model)
        if args.quick:
            specs = specs[:19]
    result["layers"] = bench_int8_layers(specs, rng, rounds=max(3, args.rounds // 6), paths=paths,
                                         dense_proxy=args.dense_proxy)
    if args.layers_only:
        result["machine"]["load_average_end"] = os.getloadavg()
        mob = [r for r in result["layers"] if r["label"].startswith("mobilenet")]  # the 19 1x1 convs
        result["totals_us"] = {"dense": sum(r["dense"]["median_ms"] for r in mob) * 1e3}
        for p in paths:
            result["totals_us"][p] = sum(r["paths"][p]["median_ms"] if "paths" in r else r["custom"]["median_ms"]
                                         for r in mob) * 1e3
            if args.dense_proxy and len(paths) > 1:
                result["totals_us"][f"dense_proxy_{p}"] = sum(
                    r["paths"][p]["dense_proxy"]["median_ms"] for r in mob) * 1e3
        print("sum over the 19 layers (us):", json.dumps({k: round(v, 1) for k, v in result["totals_us"].items()}))
    else:
        result["cost_model"] = fit_int8_cost(result["layers"])
        print("cost model fit:", json.dumps(result["cost_model"]))
    result["seconds"] = round(time.time() - start, 1)
    os.makedirs(RESULTS, exist_ok=True)
    name = "sparse_kernels_int8_paths" if args.layers_only else "sparse_kernels_int8"
    path = os.path.join(RESULTS, f"{name}{args.tag}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {path} ({result['seconds']} s)")


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, dtype in zip(axes, ("float32", "int8")):
        for pattern, marker in (("unstructured", "o"), ("block1x4", "s"), ("2:4", "^")):
            pts = sorted((r["sparsity"], r) for r in rows if r["dtype"] == dtype and
                         r["pattern"] == pattern and r["K"] == 2048 and r["N"] == 2048)
            if not pts:
                continue
            xs = [p for p, _ in pts]
            ax.plot(xs, [r["speedup_tfcompress"] for _, r in pts], marker=marker, label=f"tfcompress {pattern}")
            ax.plot(xs, [r["speedup_builtin_sparse"] for _, r in pts], marker=marker, linestyle="--",
                    alpha=0.6, label=f"TFLite built-in sparse {pattern}")
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_title(f"FC 2048x2048, batch 1, 1 thread, {dtype}")
        ax.set_xlabel("sparsity")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("speed-up vs dense built-in FC")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few configurations only")
    ap.add_argument("--no-mobilenet", action="store_true")
    ap.add_argument("--only-mobilenet", action="store_true",
                    help="re-measure MobileNetV2 only (more rounds) and update the existing JSON")
    ap.add_argument("--int8", action="store_true",
                    help="int8 rows only: MobileNetV2 int8 dense vs tfcompress, per-layer timings, cost-model fit")
    ap.add_argument("--rounds", type=int, default=30, help="interleaved rounds (--int8)")
    ap.add_argument("--tag", default="", help="suffix of the --int8 results file (e.g. _run2)")
    ap.add_argument("--paths", default="best",
                    help="--int8: comma-separated x86 int8 kernel paths to time the tfcompress layers on, each "
                         f"forced in turn ({', '.join(PATH_ENV)}; 'best' = what the CPU picks)")
    ap.add_argument("--dense-proxy", action="store_true",
                    help="--int8 --paths a,b: also time each layer unpruned on the tfcompress kernels of each path "
                         "(a dense kernel of that instruction set, as XNNPACK cannot be capped below AVX-512 here)")
    ap.add_argument("--fc", action="store_true",
                    help="--layers-only: also the FC grid at 80 %% in 1x4 blocks (batch 1, 4, 32)")
    ap.add_argument("--layers-only", action="store_true",
                    help="--int8: only the 19 distinct MobileNetV2 1x1 convs, each alone (no whole model, no "
                         "cost-model fit); writes results/sparse_kernels_int8_paths<tag>.json")
    args = ap.parse_args()
    if args.int8:
        main_int8(args)
        return
    if args.only_mobilenet:
        path = os.path.join(RESULTS, "sparse_kernels.json")
        with open(path) as f:
            result = json.load(f)
        result["mobilenet_v2"] = bench_mobilenet(np.random.default_rng(0))
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
        print(f"updated {path}")
        return
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    sweep = [0.5, 0.7, 0.8, 0.9, 0.95]
    configs = []
    dtypes = ("float32", "int8")
    for dtype in dtypes:
        for pattern in ("unstructured", "block1x4"):
            for s in ([0.8, 0.9] if args.quick else sweep):
                configs.append((2048, 2048, pattern, s, dtype))
        configs.append((2048, 2048, "2:4", 0.5, dtype))
        if not args.quick:
            for size in (512, 1024, 4096):
                configs.append((size, size, "unstructured", 0.9, dtype))
    start = time.time()
    print("FC (batch 1, 1 thread); latencies are the fastest of 3 interleaved medians")
    rows = bench_fc(configs, rng)
    result = {"machine": {"python": sys.version.split()[0], "tensorflow": tf.__version__,
                          "cpu": platform.processor() or platform.machine(), "threads": 1},
              "fc": rows}
    if not args.no_mobilenet:
        result["mobilenet_v2"] = bench_mobilenet(rng)
    result["seconds"] = round(time.time() - start, 1)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "sparse_kernels.json"), "w") as f:
        json.dump(result, f, indent=1)
    plot(rows, os.path.join(RESULTS, "sparse_kernels_speedup.png"))
    print(f"wrote {RESULTS}/sparse_kernels.json and sparse_kernels_speedup.png ({result['seconds']} s)")


if __name__ == "__main__":
    main()
