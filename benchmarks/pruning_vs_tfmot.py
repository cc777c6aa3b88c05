"""Pruning: tfcompress (Keras 3) vs tfmot 0.8.1 (tf_keras), side by side in one run.

Part 1, digits CNN, 80 % unstructured magnitude pruning with the same architecture, the same
pretrained dense weights, data, optimizer, batch size, epochs and PolynomialDecay schedule:
TFLite top-1, gzip and raw size, per-layer reached sparsity, and per-epoch training time of each
framework relative to its own plain (unpruned) training. Epochs of the four runs (plain/pruned x
Keras 3/tf_keras) are interleaved so machine load affects them alike; medians over epochs.

Part 2, MobileNetV2 (weights=None, 96x96, alpha 1.0), 50 % Channels() pruning then shrink():
TFLite float32 size and latency relative to the dense export, measured in the same run.

Usage: python benchmarks/pruning_vs_tfmot.py [--epochs 12] [--quick]
Writes benchmarks/results/pruning_vs_tfmot.json and prints a table.
"""

import argparse
import gzip
import json
import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402  (Keras 3, imported before tfmot switches tf.keras to tf_keras)
import numpy as np  # noqa: E402

import tfcompress  # noqa: E402
from _timing import EpochTimer  # noqa: E402  (benchmarks/_timing.py)
from tfcompress import pruning  # noqa: E402
from tfcompress.export import benchmark_tflite, export_tflite, run_tflite, verify  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "pruning_vs_tfmot.json")
TARGET = 0.8


def k3_cnn():
    L = keras.layers
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(32, 3, activation="relu", name="conv1"),
                             L.Conv2D(64, 3, activation="relu", name="conv2"), L.Flatten(name="flatten"),
                             L.Dense(128, activation="relu", name="fc1"), L.Dense(10, name="logits")])


def tfk_cnn(tfk):
    L = tfk.layers
    return tfk.Sequential([tfk.Input((8, 8, 1)), L.Conv2D(32, 3, activation="relu", name="conv1"),
                           L.Conv2D(64, 3, activation="relu", name="conv2"), L.Flatten(name="flatten"),
                           L.Dense(128, activation="relu", name="fc1"), L.Dense(10, name="logits")])


def kernel_sparsity(model):
    return {l.name: float((l.get_weights()[0] == 0).mean()) for l in model.layers if l.get_weights()}


def tflite_top1(tflite, x, y):
    return float((run_tflite(tflite, x).argmax(-1) == y).mean())


def timing_phase(dense_weights, tfk, tfmot, x, y, batch, frequency, rounds):
    """Per-epoch time of pruned vs plain training, each framework against its own plain run.

    Fresh models from the same dense weights; the pruning schedules ramp over the whole phase so
    mask updates (every `frequency` steps) are included. The five runs are interleaved round by
    round (order alternating), and the overhead is the median over rounds of the paired ratio
    pruned/plain, which cancels most of the load of other processes on this shared machine.
    """
    steps = int(np.ceil(len(x) / batch))
    end = steps * rounds

    def k3(model):
        model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    def tk(model):
        model.compile(tfk.optimizers.Adam(1e-3), tfk.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    base = k3_cnn()
    base.set_weights(dense_weights)
    k3_plain = k3(keras.models.clone_model(base))
    k3_plain.set_weights(dense_weights)
    k3_pruned = k3(pruning.prune(base, schedule=pruning.PolynomialDecay(0.0, TARGET, 0, end, frequency=frequency)))
    # masks fixed after step 0: isolates the in-graph cost (mask multiply + step counter)
    k3_frozen = k3(pruning.prune(base, schedule=pruning.ConstantSparsity(TARGET, 0, 0)))
    tbase = tfk_cnn(tfk)
    tbase.set_weights(dense_weights)
    tfk_plain = tk(tfk.models.clone_model(tbase))
    tfk_plain.set_weights(dense_weights)
    tfk_pruned = tk(tfmot.sparsity.keras.prune_low_magnitude(
        tbase, pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(0.0, TARGET, 0, end, frequency=frequency)))
    k3_cb, k3_frozen_cb = pruning.PruningCallback(), pruning.PruningCallback()
    runs = {"k3_plain": (k3_plain, [], keras), "k3_pruned": (k3_pruned, [k3_cb], keras),
            "k3_frozen_masks": (k3_frozen, [k3_frozen_cb], keras), "tfk_plain": (tfk_plain, [], tfk),
            "tfk_pruned": (tfk_pruned, [tfmot.sparsity.keras.UpdatePruningStep()], tfk)}
    timers = {k: EpochTimer(mod.callbacks.Callback) for k, (_, _, mod) in runs.items()}
    for r in range(rounds + 1):  # round 0 traces the train functions and is discarded
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            model, cbs, _ = runs[name]
            model.fit(x, y, epochs=1, batch_size=batch, verbose=0, callbacks=cbs + [timers[name].callback])
    t = {k: np.array(v.cpu[1:]) for k, v in timers.items()}  # CPU seconds of this process
    wall = {k: np.array(v.times[1:]) for k, v in timers.items()}
    paired = {
        "tfcompress": float(np.median(t["k3_pruned"] / t["k3_plain"])),
        "tfcompress_frozen_masks": float(np.median(t["k3_frozen_masks"] / t["k3_plain"])),
        "tfmot": float(np.median(t["tfk_pruned"] / t["tfk_plain"])),
    }
    return {
        "rounds": rounds,
        "measure": "CPU seconds of this process per epoch (time.process_time): on this shared 2-core "
                   "machine wall time mostly measures the other processes; wall-clock ratios are "
                   "given too",
        "overhead_paired_median": paired,
        "wall_overhead_paired_median": {
            "tfcompress": float(np.median(wall["k3_pruned"] / wall["k3_plain"])),
            "tfcompress_frozen_masks": float(np.median(wall["k3_frozen_masks"] / wall["k3_plain"])),
            "tfmot": float(np.median(wall["tfk_pruned"] / wall["tfk_plain"]))},
        "overhead_of_medians": {
            "tfcompress": float(np.median(t["k3_pruned"]) / np.median(t["k3_plain"])),
            "tfmot": float(np.median(t["tfk_pruned"]) / np.median(t["tfk_plain"]))},
        "overhead_of_minimums": {
            "tfcompress": float(t["k3_pruned"].min() / t["k3_plain"].min()),
            "tfmot": float(t["tfk_pruned"].min() / t["tfk_plain"].min())},
        "median_epoch_cpu_seconds": {k: float(np.median(v)) for k, v in t.items()},
        "median_epoch_wall_seconds": {k: float(np.median(v)) for k, v in wall.items()},
        "tfcompress_mask_update_seconds_per_epoch": k3_cb.update_seconds / (rounds + 1),
        "tfcompress_mask_updates": k3_cb.updates,
        "epoch_cpu_seconds": {k: v.tolist() for k, v in t.items()},
        "epoch_wall_seconds": {k: v.tolist() for k, v in wall.items()},
    }


def digits_part(epochs, pretrain_epochs, batch, frequency, rounds):
    (x, y), (xt, yt) = tfcompress.load_digits()
    steps = int(np.ceil(len(x) / batch))
    end_step = steps * max(1, (epochs * 2) // 3)
    keras.utils.set_random_seed(0)
    dense = k3_cnn()
    dense.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    dense.fit(x, y, epochs=pretrain_epochs, batch_size=batch, verbose=0)
    dense_weights = dense.get_weights()
    dense_tflite, _ = export_tflite(dense)

    # --- Keras 3 / tfcompress
    def k3_compile(m):
        m.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
        return m

    k3_plain = k3_compile(keras.models.clone_model(dense))
    k3_plain.set_weights(dense_weights)
    schedule = pruning.PolynomialDecay(0.0, TARGET, begin_step=0, end_step=end_step, frequency=frequency)
    k3_pruned = k3_compile(pruning.prune(dense, schedule=schedule))

    # --- tf_keras / tfmot (imported now: it switches tf.keras to tf_keras for the process)
    import tensorflow_model_optimization as tfmot
    import tf_keras as tfk
    import tensorflow as tf

    def tfk_compile(m):
        m.compile(tfk.optimizers.Adam(1e-3), tfk.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
        return m

    tf.random.set_seed(0)
    tfk_dense = tfk_cnn(tfk)
    tfk_dense.set_weights(dense_weights)
    tfk_plain = tfk_compile(tfk.models.clone_model(tfk_dense))
    tfk_plain.set_weights(dense_weights)
    tfmot_schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, TARGET, begin_step=0, end_step=end_step,
                                                          frequency=frequency)
    tfk_pruned = tfk_compile(tfmot.sparsity.keras.prune_low_magnitude(tfk_dense, pruning_schedule=tfmot_schedule))

    timers = {k: EpochTimer(keras.callbacks.Callback) for k in ("k3_plain", "k3_pruned")}
    timers.update({k: EpochTimer(tfk.callbacks.Callback) for k in ("tfk_plain", "tfk_pruned")})
    runs = {
        "k3_plain": (k3_plain, []),
        "k3_pruned": (k3_pruned, [pruning.PruningCallback()]),
        "tfk_plain": (tfk_plain, []),
        "tfk_pruned": (tfk_pruned, [tfmot.sparsity.keras.UpdatePruningStep()]),
    }
    for epoch in range(epochs):
        for name, (model, cbs) in runs.items():
            model.fit(x, y, epochs=1, batch_size=batch, verbose=0, shuffle=True,
                      callbacks=cbs + [timers[name].callback])
        print(f"epoch {epoch + 1}/{epochs} done", flush=True)

    timing = timing_phase(dense_weights, tfk, tfmot, x, y, batch, frequency, rounds)

    k3_stripped = pruning.strip(k3_pruned)
    k3_tflite, _ = export_tflite(k3_pruned)
    parity = verify(k3_pruned, k3_tflite, xt)
    tfk_stripped = tfmot.sparsity.keras.strip_pruning(tfk_pruned)
    tfk_tflite = tf.lite.TFLiteConverter.from_keras_model(tfk_stripped).convert()
    k3_plain_tflite, _ = export_tflite(k3_plain)

    def row(tflite):
        return {"tflite_top1": tflite_top1(tflite, xt, yt), "raw_bytes": len(tflite),
                "gzip_bytes": len(gzip.compress(tflite, 9))}

    dense_row = row(dense_tflite)
    result = {
        "setup": {"data": "sklearn digits 8x8 (1438 train / 359 test)", "architecture":
                  "Conv32-Conv64-Dense128-Dense10", "pretrain_epochs": pretrain_epochs,
                  "pruning_epochs": epochs, "batch_size": batch, "target_sparsity": TARGET,
                  "schedule": f"PolynomialDecay(0 -> {TARGET}, steps 0..{end_step}, frequency {frequency})",
                  "optimizer": "Adam(1e-3)", "steps_per_epoch": steps},
        "dense_pretrained": dense_row,
        "plain_finetuned_keras3": row(k3_plain_tflite),
        "tfcompress": {**row(k3_tflite), "per_layer_sparsity": kernel_sparsity(k3_stripped),
                       "overhead": timing["overhead_paired_median"]["tfcompress"],
                       "keras_vs_tflite_max_abs_error": parity.max_abs_error,
},
        "tfmot": {**row(tfk_tflite), "per_layer_sparsity": kernel_sparsity(tfk_stripped),
                  "overhead": timing["overhead_paired_median"]["tfmot"]},
        "training_time": timing,
    }
    return result


def mobilenet_part(runs):
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), alpha=1.0, classes=10)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial BN statistics so the parity check means something
        if isinstance(layer, keras.layers.BatchNormalization):
            s = [w.shape for w in layer.get_weights()]
            layer.set_weights([rng.uniform(0.5, 1.5, s[0]), rng.normal(0, 0.2, s[1]),
                               rng.normal(0, 0.2, s[2]), rng.uniform(0.5, 1.5, s[3])])
    pruned = pruning.prune(model, schedule=pruning.ConstantSparsity(0.5, frequency=1), pattern=pruning.Channels())
    cb = pruning.PruningCallback()
    cb.set_model(pruned)
    cb.on_train_begin()
    cb.on_train_batch_begin(0)  # magnitude (L1) channel masks at 50 %
    cb.on_train_end()
    small = pruning.shrink(pruned)
    x = rng.random((8, 96, 96, 3)).astype("float32")
    keras_err = float(np.abs(np.asarray(pruned(x)) - np.asarray(small(x))).max())
    dense_tflite, _ = export_tflite(model)
    small_tflite, _ = export_tflite(small)
    tflite_err = verify(pruned, small_tflite, x).max_abs_error
    lat = {"dense": [], "shrunk": []}
    for _ in range(3):  # alternate to share machine load
        lat["dense"].append(benchmark_tflite(dense_tflite, runs=runs, warmup=5, num_threads=1)["median_ms"])
        lat["shrunk"].append(benchmark_tflite(small_tflite, runs=runs, warmup=5, num_threads=1)["median_ms"])
    d, s = float(np.median(lat["dense"])), float(np.median(lat["shrunk"]))
    return {"model": "MobileNetV2(weights=None, 96x96x3, alpha=1.0, classes=10)", "channel_sparsity": 0.5,
            "params_dense": int(model.count_params()), "params_shrunk": int(small.count_params()),
            "dense_bytes": len(dense_tflite), "shrunk_bytes": len(small_tflite),
            "size_ratio": len(small_tflite) / len(dense_tflite),
            "dense_latency_ms": d, "shrunk_latency_ms": s, "latency_ratio": s / d,
            "latency_samples_ms": lat,
            "shrink_vs_masked_keras_max_abs_error": keras_err,
            "shrunk_tflite_vs_masked_keras_max_abs_error": tflite_err}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--pretrain-epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--frequency", type=int, default=100, help="mask update frequency (tfmot's default)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20, help="timing rounds (epochs per run)")
    parser.add_argument("--skip-mobilenet", action="store_true")
    args = parser.parse_args()
    digits = digits_part(args.epochs, args.pretrain_epochs, args.batch_size, args.frequency, args.rounds)
    if args.skip_mobilenet:
        tt = digits["training_time"]
        print(json.dumps({k: tt[k] for k in ("overhead_paired_median", "wall_overhead_paired_median",
                                              "median_epoch_cpu_seconds", "tfcompress_mask_update_seconds_per_epoch")}, indent=1))
        return
    mnv2 = mobilenet_part(args.runs)
    tc, tm = digits["tfcompress"], digits["tfmot"]
    checks = {
        "top1_no_worse_than_tfmot_minus_0.3pt": tc["tflite_top1"] >= tm["tflite_top1"] - 0.003,
        "overhead_no_worse_than_tfmot": tc["overhead"] <= tm["overhead"],
        "overhead_at_most_1.05x": tc["overhead"] <= 1.05,
        "sparsity_within_1pt_every_layer": all(abs(v - TARGET) <= 0.01 for v in tc["per_layer_sparsity"].values()),
        "mobilenet_size_at_most_0.6x": mnv2["size_ratio"] <= 0.6,
        "mobilenet_latency_at_most_0.7x": mnv2["latency_ratio"] <= 0.7,
        "mobilenet_shrink_equals_masked_1e-5": mnv2["shrink_vs_masked_keras_max_abs_error"] < 1e-5,
    }
    out = {"digits_80pct_unstructured": digits, "mobilenet_v2_channels_50pct": mnv2, "checks": checks,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "note": "2 shared cores; ratios only comparable within this run"}}
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(out, f, indent=2)

    d = digits["dense_pretrained"]
    print("\n| digits, 80 % target | TFLite top-1 | raw bytes | gzip bytes | epoch time vs own plain |")
    print("|---|---|---|---|---|")
    print(f"| dense (pretrained) | {d['tflite_top1']:.4f} | {d['raw_bytes']} | {d['gzip_bytes']} | 1.00x |")
    for name, r in (("tfcompress (Keras 3)", tc), ("tfmot 0.8.1 (tf_keras)", tm)):
        print(f"| {name} | {r['tflite_top1']:.4f} | {r['raw_bytes']} | {r['gzip_bytes']} | {r['overhead']:.3f}x |")
    tt = digits["training_time"]
    print(f"\ntraining time per epoch vs own plain, median of {tt['rounds']} paired rounds: tfcompress "
          f"{tt['overhead_paired_median']['tfcompress']:.3f}x (masks frozen: "
          f"{tt['overhead_paired_median']['tfcompress_frozen_masks']:.3f}x; mask updates "
          f"{tt['tfcompress_mask_update_seconds_per_epoch'] * 1e3:.1f} ms/epoch), tfmot "
          f"{tt['overhead_paired_median']['tfmot']:.3f}x")
    print("\nper-layer sparsity tfcompress:", {k: round(v, 4) for k, v in tc["per_layer_sparsity"].items()})
    print("per-layer sparsity tfmot:     ", {k: round(v, 4) for k, v in tm["per_layer_sparsity"].items()})
    print(f"\nMobileNetV2 96x96 50 % channels shrunk: size {mnv2['shrunk_bytes']}/{mnv2['dense_bytes']} = "
          f"{mnv2['size_ratio']:.3f}x, latency {mnv2['shrunk_latency_ms']:.2f}/{mnv2['dense_latency_ms']:.2f} ms = "
          f"{mnv2['latency_ratio']:.3f}x, shrink vs masked max abs err {mnv2['shrink_vs_masked_keras_max_abs_error']:.2e}")
    print("\nchecks:", json.dumps(checks, indent=1))


if __name__ == "__main__":
    main()
