"""`tfcompress demo`: train a digits CNN offline, export it to TFLite four ways, verify, benchmark.

Each compression technique adds its rows through a function `<technique>_rows(ctx) -> list[dict]`
in this module (the technique packages know nothing of the demo), listed in `ROW_FUNCTIONS`. A row
function builds its compressed Keras model from `ctx.model` / `ctx.data` (never mutating
`ctx.model`) and returns `[ctx.measure("label", keras_model, quantize=...), ...]`.
Keep each row cheap (a few seconds): the demo runs in the tests.
"""

import gzip
import os
import re
import time

import numpy as np
from absl import logging

DEFAULT_EPOCHS = 12
QUICK_EPOCHS = 3


def build_digits_cnn(input_shape=(8, 8, 1), num_classes=10):
    """The demo's small CNN for the 8x8 digits (about 72k parameters).

    Example:
        >>> build_digits_cnn().count_params() > 50_000
        True
    """
    import keras

    return keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.MaxPooling2D(2, name="pool"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(128, activation="relu", name="fc1"),
        keras.layers.Dense(num_classes, activation="softmax", name="logits"),
    ], name="digits_cnn")


class DemoContext:
    """What a technique's demo row function gets: the trained model, the data, and `measure`.

    Attributes:
        model: The trained float `keras.Model` (do not mutate it; clone or copy weights).
        data: `((x_train, y_train), (x_test, y_test))` of the digits, NHWC float32.
        x_train, y_train, x_test, y_test: The same arrays.
        epochs: Epochs the float model trained for (use them for fine-tuning budgets).
        quick: True in tests: use fewer epochs/runs.
        out_dir: Where .tflite files and the report go.
        bench_runs: Timed invokes per benchmark.

    Example:
        >>> def my_rows(ctx):  # a row function, listed in ROW_FUNCTIONS  # doctest: +SKIP
        ...     model = my_compress(ctx.model)
        ...     ctx.compile_and_fit(model, epochs=2)
        ...     return [ctx.measure("my technique int8", model, quantize="int8")]
    """

    def __init__(self, model, data, epochs, out_dir, quick=False, bench_runs=50, progress=None):
        self.model = model
        self.data = data
        (self.x_train, self.y_train), (self.x_test, self.y_test) = data
        self.epochs = epochs
        self.out_dir = out_dir
        self.quick = quick
        self.bench_runs = bench_runs
        self.progress = progress or _log_progress

    def compile_and_fit(self, model, epochs=None, callbacks=None, verbose=0, **compile_kwargs):
        """Compiles (Adam 1e-3, sparse categorical cross-entropy) and fits on the digits.

        Args:
            model: The model to train (typically a copy of `ctx.model`).
            epochs: Defaults to `self.epochs`.
            callbacks: Keras callbacks (e.g. a pruning step callback). Defaults to None.
            verbose: Keras fit verbosity. Defaults to 0.
            **compile_kwargs: Overrides of the compile arguments.

        Returns:
            The Keras `History`.
        """
        import keras

        kwargs = {"optimizer": keras.optimizers.Adam(1e-3),
                  "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
        kwargs.update(compile_kwargs)
        model.compile(**kwargs)
        return model.fit(self.x_train, self.y_train, batch_size=32,
                         epochs=self.epochs if epochs is None else epochs,
                         callbacks=callbacks, verbose=verbose)

    def measure(self, label, keras_model, quantize=None, **export_kwargs):
        """Exports, verifies against `keras_model` and benchmarks; returns one table row.

        Args:
            label: Row name, e.g. "int8".
            keras_model: The Keras model to export (and compare with).
            quantize: As in `export_tflite`. Defaults to None (float32).
            **export_kwargs: More `export_tflite` arguments. For "int8", 200 training images
                are the representative data unless given.

        Returns:
            dict with label, quantize, size_bytes, top1 (TFLite accuracy on the test set),
            keras_top1, agreement (TFLite vs Keras top-1), max_abs_error, median_ms, p90_ms, path.
        """
        from tfcompress.export import benchmark_tflite, export_tflite, run_tflite

        if quantize == "int8" and "representative_data" not in export_kwargs:
            export_kwargs["representative_data"] = self.x_train[:200]
        slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
        path = os.path.join(self.out_dir, f"{slug}.tflite")
        self.progress(f"exporting '{label}' (quantize={quantize})")
        tflite, report = export_tflite(keras_model, path, quantize=quantize, **export_kwargs)
        keras_probs = keras_model.predict(self.x_test, batch_size=256, verbose=0)
        tflite_probs = run_tflite(tflite, self.x_test)
        keras_pred, tflite_pred = keras_probs.argmax(-1), tflite_probs.argmax(-1)
        stats = benchmark_tflite(tflite, runs=self.bench_runs, warmup=max(self.bench_runs // 10, 2))
        return {
            "label": label,
            "quantize": quantize or "float32",
            "size_bytes": report.size_bytes,
            "top1": float(np.mean(tflite_pred == self.y_test)),
            "keras_top1": float(np.mean(keras_pred == self.y_test)),
            "agreement": float(np.mean(tflite_pred == keras_pred)),
            "max_abs_error": float(np.max(np.abs(keras_probs - tflite_probs))),
            "median_ms": stats["median_ms"],
            "p90_ms": stats["p90_ms"],
            "path": path,
        }


def export_rows(ctx):
    """The four baseline rows: float32, float16, dynamic-range and full-int8 TFLite."""
    return [ctx.measure(label, ctx.model, quantize=q)
            for label, q in [("float32", None), ("float16", "float16"),
                             ("dynamic", "dynamic"), ("int8", "int8")]]


def quantization_rows(ctx):
    """QAT fine-tuning of the trained digits CNN, exported full-int8 with its own trained ranges."""
    import keras

    from tfcompress.quantization import quantize

    qat = quantize(ctx.model)
    ctx.compile_and_fit(qat, epochs=1 if ctx.quick else max(2, ctx.epochs // 4),
                        optimizer=keras.optimizers.Adam(1e-4))
    # representative_data=None: the fake-quant ranges learnt in training replace calibration
    return [ctx.measure("QAT int8", qat, quantize="int8", representative_data=None)]


def pruning_rows(ctx):
    """Prunes the trained digits CNN to 80 % sparsity (Zhu & Gupta schedule) and exports it.

    The row is exported with dynamic-range int8 weights; the zeros are what the tfcompress
    sparse kernels and gzip exploit.
    """
    from tfcompress.pruning import PolynomialDecay, PruningCallback, prune

    epochs = 1 if ctx.quick else max(2, ctx.epochs // 3)
    steps = int(np.ceil(len(ctx.x_train) / 32))
    end = max(1, steps * max(1, epochs - 1))
    pruned = prune(ctx.model, schedule=PolynomialDecay(0.0, 0.8, 0, end, frequency=max(1, min(100, end // 4))))
    ctx.compile_and_fit(pruned, epochs=epochs, callbacks=[PruningCallback()])
    return [ctx.measure("pruned 80% (int8 weights)", pruned, quantize="dynamic")]


def _fine_tune_epochs(ctx):
    return 1 if ctx.quick else max(2, ctx.epochs // 3)


def _add_gzip_bytes(rows):
    for row in rows:
        with open(row["path"], "rb") as f:
            row["gzip_bytes"] = len(gzip.compress(f.read(), 9))
    return rows


def factorization_rows(ctx):
    """The CNN factorized at energy 0.9 (truncated SVD), fine-tuned briefly, exported float32."""
    import keras

    from tfcompress.factorization import factorize

    small, _ = factorize(ctx.model, energy=0.9)
    ctx.compile_and_fit(small, epochs=_fine_tune_epochs(ctx), optimizer=keras.optimizers.Adam(1e-4))
    return _add_gzip_bytes([ctx.measure("factorized energy 0.9", small)])


def clustering_rows(ctx):
    """The CNN clustered to 16 shared values per kernel; the gain shows in `gzip_bytes`."""
    import keras

    from tfcompress.clustering import cluster

    clustered = cluster(ctx.model, n_clusters=16)
    ctx.compile_and_fit(clustered, epochs=_fine_tune_epochs(ctx), optimizer=keras.optimizers.Adam(1e-4))
    return _add_gzip_bytes([ctx.measure("clustered 16", clustered)])


def distillation_rows(ctx):
    """A small student distilled from the trained CNN, exported int8 (gain in size and latency)."""
    import keras

    from tfcompress.distillation import Distiller, SoftTargetLoss

    student = keras.Sequential([
        keras.Input(ctx.x_train.shape[1:]),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ], name="student")
    # The demo CNN ends in a softmax: the soft-target loss takes probabilities.
    distiller = Distiller(ctx.model, student, loss=SoftTargetLoss(2.0, from_logits=False), alpha=0.5)
    distiller.compile(keras.optimizers.Adam(1e-3))
    distiller.fit(ctx.x_train, ctx.y_train, batch_size=32, epochs=1 if ctx.quick else ctx.epochs, verbose=0)
    return _add_gzip_bytes([ctx.measure("distilled student int8", student, quantize="int8")])


# The technique rows, in report order.
ROW_FUNCTIONS = [quantization_rows, pruning_rows, factorization_rows, clustering_rows, distillation_rows]


def markdown_table(rows):
    """Rows as a Markdown table (size, size vs float32, top-1, agreement, latency)."""
    base = next((r["size_bytes"] for r in rows if r["label"] == "float32"), None)
    lines = ["| model | TFLite | size (KiB) | vs float32 | top-1 | Keras top-1 | agreement with "
             "Keras | max abs err | median ms | p90 ms |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['size_bytes'] / base:.1%}" if base else "-"
        lines.append(
            f"| {r['label']} | {r['quantize']} | {r['size_bytes'] / 1024:.1f} | {ratio} | "
            f"{r['top1']:.2%} | {r['keras_top1']:.2%} | {r['agreement']:.2%} | "
            f"{r['max_abs_error']:.2g} | {r['median_ms']:.3f} | {r['p90_ms']:.3f} |")
    return "\n".join(lines)


def plot_tradeoff(rows, path):
    """Writes a PNG: size vs top-1 and latency vs top-1, one point per row, named in a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    markers = "osD^vP*Xhp<>"
    for ax, key, xlabel in [(axes[0], "size_bytes", "size (KiB)"),
                            (axes[1], "median_ms", "median latency (ms, 1 thread)")]:
        for i, r in enumerate(rows):  # points overlap (same size, same accuracy): a legend, not labels
            x = r[key] / 1024 if key == "size_bytes" else r[key]
            ax.scatter(x, r["top1"] * 100, marker=markers[i % len(markers)], s=50, label=r["label"])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.suptitle("tfcompress demo: size / latency / accuracy trade-off (digits CNN)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _log_progress(message):
    logging.info("demo: %s", message)


def run_demo(out_dir="demo_out", epochs=None, quick=False, progress=_log_progress, seed=0):
    """Runs the whole demo and writes `report.md`, `tradeoff.png` and the .tflite files.

    Args:
        out_dir: Output directory (created). Defaults to "demo_out".
        epochs: Training epochs. Defaults to 12 (3 with `quick`).
        quick: Fewer epochs and benchmark runs (for tests). Defaults to False.
        progress: Called with one progress line per step. Defaults to logging each line at INFO
            through `absl.logging` (shown with `absl.logging.set_verbosity("info")`).
        seed: Keras random seed. Defaults to 0.

    Returns:
        dict with `rows`, `markdown`, `report_path`, `plot_path`, `checks` (name -> bool).

    Example:
        >>> result = run_demo("demo_out", quick=True)  # doctest: +SKIP
        >>> result["checks"]["int8 agreement with Keras >= 99%"]  # doctest: +SKIP
        True
    """
    import keras

    from tfcompress.datasets import load_digits

    started = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    epochs = epochs or (QUICK_EPOCHS if quick else DEFAULT_EPOCHS)
    keras.utils.set_random_seed(seed)
    data = load_digits()
    (x_train, y_train), _ = data
    progress(f"training the digits CNN for {epochs} epochs on {len(x_train)} images")
    model = build_digits_cnn(x_train.shape[1:])
    ctx = DemoContext(model, data, epochs, out_dir, quick=quick,
                      bench_runs=10 if quick else 50, progress=progress)
    ctx.compile_and_fit(model, verbose=0 if quick else 2)
    rows = export_rows(ctx)
    for row_function in ROW_FUNCTIONS:
        progress(f"adding rows from {row_function.__name__}")
        rows.extend(row_function(ctx))
    table = markdown_table(rows)
    base = next(r for r in rows if r["label"] == "float32")
    int8 = next(r for r in rows if r["label"] == "int8")
    checks = {
        "int8 agreement with Keras >= 99%": int8["agreement"] >= 0.99,
        "int8 size <= 30% of float32": int8["size_bytes"] <= 0.30 * base["size_bytes"],
    }
    check_lines = [f"- {'PASS' if ok else 'FAIL'}: {name} (int8: agreement "
                   f"{int8['agreement']:.2%}, size {int8['size_bytes'] / base['size_bytes']:.1%} "
                   "of float32)" for name, ok in checks.items()]
    report_path = os.path.join(out_dir, "report.md")
    plot_path = os.path.join(out_dir, "tradeoff.png")
    markdown = "\n".join([
        "# tfcompress demo", "",
        f"Digits CNN ({model.count_params():,} parameters), {epochs} epochs, "
        f"{len(data[1][0])} test images. Latency: LiteRT interpreter, 1 thread, batch 1, "
        "this machine.", "", table, "", *check_lines, "", "![trade-off](tradeoff.png)", ""])
    with open(report_path, "w", encoding="utf-8") as f:
        f.write(markdown)
    plot_tradeoff(rows, plot_path)
    print(table, flush=True)
    print("\n".join(check_lines), flush=True)
    progress(f"wrote {report_path} and {plot_path} in {time.perf_counter() - started:.0f} s")
    return {"rows": rows, "markdown": markdown, "report_path": report_path,
            "plot_path": plot_path, "checks": checks}
