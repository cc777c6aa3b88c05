"""Prune -> (QAT) -> int8 -> sparse kernels, as an app ships it: MobileNetV2 224 and the digits CNN.

Each model as {float32 dense, float32 sparse, int8 dense, int8 sparse} x {1, 2 threads}, batch 1,
in ONE process with the same LiteRT interpreter settings as an app (XNNPACK on; the tfcompress
sparse custom ops through `tfcompress.export.load_interpreter`). Every file is timed in interleaved
rounds (each round runs every file/thread pair once, `--runs` invokes, in a fresh random order);
the table gives the median over rounds of the per-round medians, and the spread (min-max of the
round medians); speed is the per-round ratio baseline / file (median, p10-p90) against two baselines
timed in the same round: the dense twin (same dtype) and the dense int8 file, the one an app would
ship otherwise. Sizes are file bytes. Agreement is top-1 agreement with the Keras model the file
was exported from (and, for int8 sparse, with the int8 dense file of the same weights).

- "dense" files are the PRUNED weights exported without sparse kernels (the same weights as the
  sparse file); the digits section also gives the unpruned model's int8 file for accuracy.
- float32 and int8 files may come from DIFFERENT pruned models: each dtype uses the pattern its
  kernels want (`--float-pattern`, default Block((8, 1)): 8 consecutive output channels share their
  zeros, so the AVX2 float32 kernel's 8-channel groups hold no padded zeros;
  `--int8-pattern`, default Block((1, 4)), 4 consecutive input channels as the int8 dot-product
  kernels need). MobileNetV2: only the 1x1 convolutions are pruned (the layers the sparse kernels
  handle), by magnitude, to `--sparsity`; random weights, BatchNorm statistics re-estimated on
  random images after pruning (otherwise an untrained model's activations vanish), int8 by
  post-training calibration on random images. Digits CNN: trained on sklearn digits, pruned with
  `tfcompress.pruning.prune` (every conv / Dense), int8 by pruning-preserving QAT.
- Sparse files: `export_tflite(..., sparse_kernels="custom")` and `"auto"`; "custom" is one custom node
  per layer (`fuse_blocks=False`), "fused" (MobileNetV2, float32 and int8) the same "custom" rewrite
  with every inverted-residual block fused into one TFC_SPARSE_INVERTED_RESIDUAL node; this script converts
  once and applies `tfcompress.export.sparse.rewrite_tflite` to the dense bytes, which is exactly
  what `export_tflite` does after conversion (same bytes, one conversion instead of three).

    python benchmarks/mobile_pipeline.py            # full run (~5-10 min on 2 loaded cores)
    python benchmarks/mobile_pipeline.py --quick    # smoke run (~2 min)

Writes benchmarks/results/mobile_pipeline.json and mobile_pipeline.png (`--quick`:
mobile_pipeline_quick.*). x86 figures; timings are only comparable within one run.
"""

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # idle BLAS threads steal the interpreter's cores

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfcompress import load_digits, pruning  # noqa: E402
from tfcompress.export import export_tflite, load_interpreter, run_tflite  # noqa: E402
from tfcompress.export.sparse import rewrite_tflite, sparse_kernel_report  # noqa: E402
from tfcompress.quantization import calibrate, quantize  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
PATTERNS = {
    "block1x4": lambda: pruning.Block((1, 4)),
    "block4x1": lambda: pruning.Block((4, 1)),
    "block8x1": lambda: pruning.Block((8, 1)),
    "block1x16": lambda: pruning.Block((1, 16)),
    "unstructured": lambda: pruning.Unstructured(),
    "2:4": lambda: pruning.NofM(2, 4),
}
VARIANTS = ("dense", "custom", "auto")


# ------------------------------------------------------------------------------------ helpers
def int8_weight_zeros(tflite):
    """`{tensor name: fraction of zeros}` of every int8 CONV_2D / FC / DEPTHWISE weight in the file."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    ops = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.FULLY_CONNECTED,
           schema.BuiltinOperator.DEPTHWISE_CONV_2D}
    out, graph = {}, model.subgraphs[0]
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) not in ops:
            continue
        t = graph.tensors[op.inputs[1]]
        data = model.buffers[t.buffer].data
        if t.type == schema.TensorType.INT8 and data is not None:
            out[t.name.decode()] = float(np.mean(np.asarray(data) == 0))
    return out


def sparse_files(dense, fused=False):
    """`{variant: bytes}`: the dense file and its custom / auto sparse-kernel rewrites.

    "custom" is one custom node per layer (`fuse_blocks=False`); with `fused`, "fused" is the
    "custom" rewrite with inverted-residual blocks fused into one node each
    (TFC_SPARSE_INVERTED_RESIDUAL, the default of `rewrite_tflite`). "auto" is the default call.
    """
    files = {"dense": dense, "custom": rewrite_tflite(dense, "custom", fuse_blocks=False)}
    if fused:
        files["fused"] = rewrite_tflite(dense, "custom")
    files["auto"] = rewrite_tflite(dense, "auto")
    return files


def sparse_layers(tflite):
    rows = sparse_kernel_report(tflite)
    return {"custom": sum(r["emitted"] == "custom" for r in rows),
            "builtin": sum(r["emitted"] == "builtin" for r in rows),
            "fused": sum(r["emitted"] == "fused" for r in rows),
            # layers looked at: a fused block stands for its 1x1 convs (2, or 1 without expand)
            "candidates": sum(r["emitted"] != "fused" for r in rows)
            + sum(2 if r["expand"] else 1 for r in rows if r["emitted"] == "fused")}


def top1(tflite, x):
    return run_tflite(tflite, x, batch_size=1).argmax(-1)


def _interpreter(tflite, threads, rng):
    interp = load_interpreter(tflite, num_threads=threads)
    for d in interp.get_input_details():
        if d["shape_signature"][0] == -1 and d["shape"][0] != 1:
            interp.resize_tensor_input(d["index"], [1] + list(d["shape"][1:]))
    interp.allocate_tensors()
    for d in interp.get_input_details():
        if np.issubdtype(d["dtype"], np.integer):
            x = rng.integers(-128, 128, d["shape"]).astype(d["dtype"])
        else:
            x = rng.random(d["shape"]).astype(d["dtype"])
        interp.set_tensor(d["index"], x)
    for _ in range(3):
        interp.invoke()
    return interp


def time_interleaved(files, threads, rounds, runs, seed=0):
    """`{(name, threads): [median ms of each round]}`; every round visits every pair once, shuffled."""
    rng = np.random.default_rng(seed)
    interps = {(name, t): _interpreter(blob, t, rng) for name, blob in files.items() for t in threads}
    samples = {key: [] for key in interps}
    keys = list(interps)
    for _ in range(rounds):
        for i in rng.permutation(len(keys)):
            interp = interps[keys[i]]
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                interp.invoke()
                times.append(time.perf_counter() - t0)
            samples[keys[i]].append(float(np.median(times)) * 1e3)
    return samples


def summary(ms):
    return {"median_ms": float(np.median(ms)), "min_ms": float(np.min(ms)), "max_ms": float(np.max(ms)),
            "rounds": len(ms)}


def round_ratios(dense_ms, file_ms):
    """Speed vs a baseline per round (the two were timed in the same round): median, p10, p90."""
    r = np.asarray(dense_ms) / np.asarray(file_ms)
    return {"median": float(np.median(r)), "p10": float(np.percentile(r, 10)), "p90": float(np.percentile(r, 90))}


# ------------------------------------------------------------------------------------ MobileNetV2
def mobilenet_v2(pattern, sparsity, x_bn):
    """MobileNetV2 224, random weights, every 1x1 conv pruned with `pattern`, BN re-estimated."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), classifier_activation=None)
    pruned = 0
    for layer in model.layers:
        if type(layer) is keras.layers.Conv2D and tuple(layer.kernel.shape[:2]) == (1, 1):
            w = layer.kernel.numpy()
            mask = PATTERNS[pattern]().compute_mask(np.abs(w.reshape(1, *w.shape[2:])), sparsity)
            layer.kernel.assign(w * mask.reshape(w.shape))
            pruned += 1
    for layer in model.layers:  # as benchmarks/sparse_kernels.py: statistics of the pruned model
        if isinstance(layer, keras.layers.BatchNormalization):
            h = keras.Model(model.input, layer.input)(x_bn).numpy()
            layer.moving_mean.assign(h.mean((0, 1, 2)))
            layer.moving_variance.assign(h.var((0, 1, 2)))
    return model, pruned


def build_mobilenet(args, rng):
    x_bn = rng.random((4, 224, 224, 3)).astype("float32")
    x_cal = rng.random((8 if args.quick else 32, 224, 224, 3)).astype("float32")
    x_eval = rng.random((8 if args.quick else 32, 224, 224, 3)).astype("float32")
    files, info = {}, {}
    for dtype, pattern in (("float32", args.float_pattern), ("int8", args.int8_pattern)):
        t0 = time.time()
        model, pruned = mobilenet_v2(pattern, args.sparsity, x_bn)
        if dtype == "float32":
            dense, _ = export_tflite(model)
        else:
            dense, _ = export_tflite(model, quantize="int8", representative_data=x_cal)
        keras_out = model.predict(x_eval, batch_size=8, verbose=0)
        keras_top1 = keras_out.argmax(-1)
        top2 = np.sort(keras_out, axis=-1)[:, -2:]
        for variant, blob in sparse_files(dense, fused=True).items():
            name = f"{dtype} {variant}"
            files[name] = blob
            out = run_tflite(blob, x_eval, batch_size=1)
            got = out.argmax(-1)
            info[name] = {"dtype": dtype, "variant": variant, "pattern": pattern, "bytes": len(blob),
                          "agreement_keras": float(np.mean(got == keras_top1)),
                          # why int8 top-1 can differ from Keras on an untrained net: the logit error
                          # against the gap between the two largest Keras logits (random weights: tiny)
                          "median_abs_logit_err": float(np.median(np.abs(out - keras_out))),
                          "median_keras_top2_gap": float(np.median(top2[:, 1] - top2[:, 0])),
                          "sparse_layers": sparse_layers(blob) if variant != "dense" else None,
                          "pruned_1x1_convs": pruned, "_top1": got}
        info[f"{dtype} dense"]["keras_distinct_top1"] = int(len(np.unique(keras_top1)))
        print(f"  MobileNetV2 {dtype} ({pattern}) built and exported in {time.time() - t0:.0f} s", flush=True)
        del model
        keras.backend.clear_session()
    for variant in ("custom", "fused", "auto"):
        info[f"int8 {variant}"]["agreement_int8_dense"] = float(
            np.mean(info[f"int8 {variant}"]["_top1"] == info["int8 dense"]["_top1"]))
        info[f"float32 {variant}"]["agreement_float_dense"] = float(
            np.mean(info[f"float32 {variant}"]["_top1"] == info["float32 dense"]["_top1"]))
    return files, info, len(x_eval)


# ------------------------------------------------------------------------------------ digits CNN
def _compile(model, lr):
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def digits_cnn():
    L = keras.layers
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(16, 3, padding="same", use_bias=False), L.BatchNormalization(), L.ReLU(),
        L.Conv2D(32, 3, padding="same", use_bias=False), L.BatchNormalization(), L.ReLU(),
        L.MaxPooling2D(), L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10),
    ])


def digits_epochs(args):
    """(train, prune, QAT) epochs of the digits CNN."""
    return (3, 3, 1) if args.quick else (15, 8, 3)


def train_digits(x_train, y_train, epochs, seed):
    """The digits CNN trained from seed `seed`."""
    keras.utils.set_random_seed(seed)
    model = _compile(digits_cnn(), 1e-3)
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    return model


def prune_digits(model, x_train, y_train, pattern, sparsity, epochs):
    """The trained digits CNN pruned to `sparsity` in `pattern` (still wrapped), fine-tuned `epochs`."""
    steps = epochs * int(np.ceil(len(x_train) / 32))
    schedule = pruning.PolynomialDecay(0.0, sparsity, 0, int(steps * 0.7), frequency=10)
    wrapped = _compile(pruning.prune(model, schedule=schedule, pattern=PATTERNS[pattern]()), 1e-3)
    wrapped.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0, callbacks=[pruning.PruningCallback()])
    return wrapped


def qat_int8_digits(wrapped, x_train, y_train, epochs):
    """Pruning-preserving QAT of a pruned model, activation ranges started from calibration (as in
    the QAT notebook): `(QAT model, int8 TFLite bytes)`."""
    qat = _compile(calibrate(quantize(wrapped), x_train[:256]), 1e-4)
    qat.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    return qat, export_tflite(qat, quantize="int8")[0]


def digits_seeds(args, seeds):
    """Prune -> QAT -> int8 of the digits CNN once per seed (training, pruning and QAT all seeded):
    top-1 of the pruned float model and of the int8 file on the held-out split, and the smallest
    zero fraction of the file's int8 weights. One seed's difference on 359 images is a few images
    (1 image = 0.28 pt): the mean over seeds is the comparison."""
    (x_train, y_train), (x_test, y_test) = load_digits()
    epochs, prune_epochs, qat_epochs = digits_epochs(args)
    rows = []
    for seed in seeds:
        model = train_digits(x_train, y_train, epochs, seed)
        wrapped = prune_digits(model, x_train, y_train, args.int8_pattern, args.sparsity, prune_epochs)
        pruned_acc = float(np.mean(pruning.strip(wrapped).predict(x_test, verbose=0).argmax(-1) == y_test))
        _, blob = qat_int8_digits(wrapped, x_train, y_train, qat_epochs)
        int8_acc = float(np.mean(top1(blob, x_test) == y_test))
        rows.append({"seed": seed, "pruned_float": pruned_acc, "qat_int8": int8_acc,
                     "min_int8_weight_zeros": min(int8_weight_zeros(blob).values())})
        print(f"  digits seed {seed}: pruned float {pruned_acc:.2%}, prune -> QAT -> int8 {int8_acc:.2%}", flush=True)
        keras.backend.clear_session()
    diff = np.array([r["qat_int8"] - r["pruned_float"] for r in rows]) * 100
    return {"seeds": rows, "mean_diff_pt": float(diff.mean()), "sd_diff_pt": float(diff.std(ddof=1)) if len(rows) > 1 else 0.0}


def build_digits(args):
    (x_train, y_train), (x_test, y_test) = load_digits()
    epochs, prune_epochs, qat_epochs = digits_epochs(args)
    model = train_digits(x_train, y_train, epochs, 0)

    def acc(blob_or_model):
        if isinstance(blob_or_model, keras.Model):
            return float(np.mean(blob_or_model.predict(x_test, verbose=0).argmax(-1) == y_test))
        return float(np.mean(top1(blob_or_model, x_test) == y_test))

    accuracy = {"float32 unpruned (Keras)": acc(model)}
    qat_unpruned = _compile(calibrate(quantize(model), x_train[:256]), 1e-4)
    qat_unpruned.fit(x_train, y_train, epochs=qat_epochs, batch_size=32, verbose=0)
    unpruned_int8, _ = export_tflite(qat_unpruned, quantize="int8")
    accuracy["int8 unpruned (QAT, dense file)"] = acc(unpruned_int8)
    files, info = {}, {}
    for dtype, pattern in (("float32", args.float_pattern), ("int8", args.int8_pattern)):
        keras.utils.set_random_seed(0)
        wrapped = prune_digits(model, x_train, y_train, pattern, args.sparsity, prune_epochs)
        stripped = pruning.strip(wrapped)
        accuracy[f"{dtype} pruned {pattern} (Keras float)"] = acc(stripped)
        if dtype == "float32":
            keras_model, dense = stripped, export_tflite(stripped)[0]
        else:
            keras_model, dense = qat_int8_digits(wrapped, x_train, y_train, qat_epochs)
            ptq = export_tflite(wrapped, quantize="int8", representative_data=x_train[:256])[0]
            accuracy[f"int8 pruned {pattern} (PTQ, no QAT)"] = acc(ptq)
            info["int8_weight_zeros"] = int8_weight_zeros(dense)
        keras_top1 = keras_model.predict(x_test, verbose=0).argmax(-1)
        for variant, blob in sparse_files(dense).items():
            name = f"{dtype} {variant}"
            files[name] = blob
            got = top1(blob, x_test)
            info[name] = {"dtype": dtype, "variant": variant, "pattern": pattern, "bytes": len(blob),
                          "agreement_keras": float(np.mean(got == keras_top1)), "accuracy": acc(blob),
                          "sparse_layers": sparse_layers(blob) if variant != "dense" else None, "_top1": got}
        if dtype == "int8":
            accuracy[f"int8 pruned {pattern} (QAT, dense file)"] = info["int8 dense"]["accuracy"]
            accuracy[f"int8 pruned {pattern} (QAT, custom sparse file)"] = info["int8 custom"]["accuracy"]
    for variant in ("custom", "auto"):
        info[f"int8 {variant}"]["agreement_int8_dense"] = float(
            np.mean(info[f"int8 {variant}"]["_top1"] == info["int8 dense"]["_top1"]))
        info[f"float32 {variant}"]["agreement_float_dense"] = float(
            np.mean(info[f"float32 {variant}"]["_top1"] == info["float32 dense"]["_top1"]))
    files["int8 unpruned"] = unpruned_int8
    info["int8 unpruned"] = {"dtype": "int8", "variant": "dense (unpruned)", "pattern": "-",
                             "bytes": len(unpruned_int8), "accuracy": accuracy["int8 unpruned (QAT, dense file)"],
                             "agreement_keras": float(np.mean(top1(unpruned_int8, x_test) ==
                                                              qat_unpruned.predict(x_test, verbose=0).argmax(-1)))}
    return files, info, accuracy, len(x_test)


# ------------------------------------------------------------------------------------ report
def table(name, info, lat, threads, ratios, ratios_int8):
    micro = max(v[t]["median_ms"] for v in lat.values() for t in threads) < 1.0
    unit, k = ("us", 1e3) if micro else ("ms", 1.0)
    head = ("| file | pattern | " + " | ".join(f"{t} thr {unit} (min-max)" for t in threads)
            + " | " + " | ".join(f"x vs dense {t} thr (p10-p90)" for t in threads)
            + " | " + " | ".join(f"x vs dense int8 {t} thr (p10-p90)" for t in threads)
            + " | size KB | top-1 agr. Keras | agr. dense twin | sparse ops |")
    lines = [f"### {name}", "", head, "|" + "---|" * (head.count("|") - 1)]
    for key, row in info.items():
        if not isinstance(row, dict) or "dtype" not in row:
            continue
        cells = []
        for t in threads:
            s = lat[key][t]
            cells.append(f"{s['median_ms'] * k:.3g} ({s['min_ms'] * k:.3g}-{s['max_ms'] * k:.3g})")
        cells_r = [f"{r['median']:.2f}x ({r['p10']:.2f}-{r['p90']:.2f})"
                   for r in [ratios[key][t] for t in threads] + [ratios_int8[key][t] for t in threads]]
        dense_agr = row.get("agreement_int8_dense", row.get("agreement_float_dense"))
        sl = row.get("sparse_layers")
        lines.append(f"| {key} | {row['pattern']} | " + " | ".join(cells) + " | " + " | ".join(cells_r)
                     + f" | {row['bytes'] / 1024:.1f} | {row['agreement_keras']:.1%} | "
                     + ("-" if dense_agr is None else f"{dense_agr:.1%}") + " | "
                     + ("-" if not sl else f"{sl['custom']} custom + {sl['builtin']} builtin"
                        + (f" + {sl['fused']} fused blocks" if sl.get("fused") else "")
                        + f" / {sl['candidates']}")
                     + " |")
    return "\n".join(lines)


def plot(results, threads, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = [s for s in ("mobilenet_v2", "digits_cnn") if s in results]
    fig, axes = plt.subplots(1, len(sections), figsize=(6 * len(sections), 4.2), squeeze=False)
    for ax, sec in zip(axes[0], sections):
        lat = results[sec]["latency"]
        names = list(lat)
        width = 0.8 / len(threads)
        micro = max(lat[n][str(t)]["median_ms"] for n in names for t in threads) < 1.0
        k, unit = (1e3, "us") if micro else (1.0, "ms")
        for j, t in enumerate(threads):
            med = [lat[n][str(t)]["median_ms"] * k for n in names]
            lo = [m - lat[n][str(t)]["min_ms"] * k for m, n in zip(med, names)]
            hi = [lat[n][str(t)]["max_ms"] * k - m for m, n in zip(med, names)]
            ax.bar(np.arange(len(names)) + j * width, med, width, yerr=[lo, hi], capsize=2,
                   label=f"{t} thread{'s' if t > 1 else ''}")
        ax.set_xticks(np.arange(len(names)) + width * (len(threads) - 1) / 2)
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel(f"batch-1 latency ({unit}, log scale)")
        ax.set_title(f"{sec}: median of rounds, whiskers min-max\n(x86, LiteRT + XNNPACK, one run)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer rounds, epochs and images")
    ap.add_argument("--int8-pattern", default="block1x4", choices=sorted(PATTERNS))
    ap.add_argument("--float-pattern", default="block8x1", choices=sorted(PATTERNS))
    ap.add_argument("--sparsity", type=float, default=0.8)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts. Default: 1,2")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 25; --quick 3)")
    ap.add_argument("--runs", type=int, default=20,
                    help="MobileNetV2 invokes per file and round (default 20; the round's median is kept). "
                         "More runs weigh steady state (an app's video loop) over the first invokes after "
                         "another file ran")
    ap.add_argument("--out-stem", default=None,
                    help="results file stem in benchmarks/results (default mobile_pipeline[_quick])")
    ap.add_argument("--no-mobilenet", action="store_true", help="digits CNN only")
    ap.add_argument("--digits-seeds", type=int, default=None,
                    help="prune -> QAT -> int8 accuracy of the digits CNN over this many seeds (default 5; --quick 0)")
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNG from the existing JSON")
    args = ap.parse_args()
    if args.plot_only:
        stem = os.path.join(RESULTS, "mobile_pipeline_quick" if args.quick else "mobile_pipeline")
        with open(stem + ".json") as f:
            saved = json.load(f)
        plot(saved, saved["settings"]["threads"], stem + ".png")
        print(f"wrote {stem}.png")
        return
    if not 0.0 < args.sparsity < 1.0:
        ap.error(f"--sparsity must be in (0, 1), got {args.sparsity}")
    threads = [int(t) for t in args.threads.split(",")]
    if any(t < 1 or t > 64 for t in threads):
        ap.error(f"--threads must be integers in 1..64, got {args.threads!r}")
    rounds = args.rounds or (3 if args.quick else 25)
    start = time.time()
    rng = np.random.default_rng(0)
    results = {"machine": {"python": sys.version.split()[0], "cpu": platform.processor() or platform.machine(),
                           "cores": os.cpu_count(), "load_avg_at_start": os.getloadavg()},
               "settings": {"quick": args.quick, "sparsity": args.sparsity, "int8_pattern": args.int8_pattern,
                            "float_pattern": args.float_pattern, "threads": threads, "rounds": rounds,
                            "batch": 1}}
    sections = []
    if not args.no_mobilenet:
        print("MobileNetV2 224: building, pruning, exporting ...", flush=True)
        files, info, n_eval = build_mobilenet(args, rng)
        sections.append(("mobilenet_v2", files, info, args.runs,
                         {"eval_images": n_eval, "agreement_on": "random images"}))
    print("digits CNN: training, pruning, QAT, exporting ...", flush=True)
    files, info, accuracy, n_test = build_digits(args)
    sections.append(("digits_cnn", files, info, 100 if args.quick else 300,
                     {"test_images": n_test, "accuracy": accuracy, "int8_weight_zeros": info.pop("int8_weight_zeros")}))
    n_seeds = args.digits_seeds if args.digits_seeds is not None else (0 if args.quick else 5)
    if n_seeds > 0:
        print(f"digits CNN: prune -> QAT -> int8 over {n_seeds} seeds ...", flush=True)
        sections[-1][4]["accuracy_over_seeds"] = digits_seeds(args, range(n_seeds))
    print(f"timing {rounds} interleaved rounds ...", flush=True)
    md = []
    for sec, files, info, runs, extra in sections:
        samples = time_interleaved(files, threads, rounds, runs)
        lat = {name: {t: summary(samples[(name, t)]) for t in threads} for name in files}
        rows = [name for name in files if isinstance(info.get(name), dict) and "dtype" in info[name]]
        ratios = {name: {t: round_ratios(samples[(f"{info[name]['dtype']} dense", t)], samples[(name, t)])
                         for t in threads} for name in rows}
        # the baseline an app would pick: the dense int8 file on the same number of threads
        ratios_int8 = {name: {t: round_ratios(samples[("int8 dense", t)], samples[(name, t)]) for t in threads}
                       for name in rows}
        md.append(table(sec, info, lat, threads, ratios, ratios_int8))
        for row in info.values():
            row.pop("_top1", None)
        results[sec] = {"files": info, "runs_per_round": runs,
                        "latency": {n: {str(t): v for t, v in d.items()} for n, d in lat.items()},
                        "vs_dense_per_round": {n: {str(t): v for t, v in d.items()} for n, d in ratios.items()},
                        "vs_dense_int8_per_round": {n: {str(t): v for t, v in d.items()} for n, d in ratios_int8.items()},
                        **extra}
        if sec == "digits_cnn":
            md.append("\nDigits top-1 on the held-out split (%d images):\n" % n_test)
            md.append("| model | top-1 |\n|---|---:|")
            md.extend(f"| {k} | {v:.2%} |" for k, v in accuracy.items())
            md.append("\nint8 weight zeros in the pruned QAT file: "
                      + ", ".join(f"{z:.1%}" for z in extra["int8_weight_zeros"].values()))
            over = extra.get("accuracy_over_seeds")
            if over:
                md.append(f"\nprune -> QAT -> int8 vs the pruned float model over {len(over['seeds'])} seeds: "
                          f"{over['mean_diff_pt']:+.2f} pt on average (sd {over['sd_diff_pt']:.2f} pt); per seed "
                          + ", ".join(f"{r['qat_int8']:.2%} vs {r['pruned_float']:.2%}" for r in over["seeds"])
                          + f"; fewest int8 weight zeros {min(r['min_int8_weight_zeros'] for r in over['seeds']):.1%}")
    results["machine"]["load_avg_at_end"] = os.getloadavg()
    results["seconds"] = round(time.time() - start, 1)
    text = "\n".join(md)
    print(text)
    results["markdown"] = text
    os.makedirs(RESULTS, exist_ok=True)
    stem = args.out_stem or ("mobile_pipeline_quick" if args.quick else "mobile_pipeline")
    with open(os.path.join(RESULTS, f"{stem}.json"), "w") as f:
        json.dump(results, f, indent=1)
    plot(results, threads, os.path.join(RESULTS, f"{stem}.png"))
    print(f"wrote {RESULTS}/{stem}.json and {stem}.png ({results['seconds']} s, load average "
          f"{results['machine']['load_avg_at_start'][0]:.1f} at start, {results['machine']['load_avg_at_end'][0]:.1f} at end)")


if __name__ == "__main__":
    main()
