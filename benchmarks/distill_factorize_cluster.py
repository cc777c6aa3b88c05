"""Distillation, low-rank factorization and clustering side by side on the digits CNN (one run).

Rows: teacher; student trained alone; student distilled (same epochs, same data; mean over 3 seeds);
teacher factorized at energy 0.9 before / after fine-tuning; teacher clustered to 16 values per
kernel (fine-tuned, stripped). Columns: held-out top-1, TFLite size (raw, gzip -9), median latency
(LiteRT, 1 thread, batch 1) relative to the teacher, all measured in this one process.

    python benchmarks/distill_factorize_cluster.py [--quick]

Writes benchmarks/results/distill_factorize_cluster.json.
"""

import argparse
import gzip
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfcompress.clustering import cluster, strip  # noqa: E402
from tfcompress.datasets import load_digits  # noqa: E402
from tfcompress.distillation import Distiller, SoftTargetLoss  # noqa: E402
from tfcompress.export import benchmark_tflite, export_tflite, verify  # noqa: E402
from tfcompress.factorization import factorize  # noqa: E402

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def teacher_model():
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.3)(x)
    x = keras.layers.Dense(128, activation="relu", name="fc")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="teacher")


def student_model():
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="s_conv")(inp)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="s_fc")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="s_logits")(x), name="student")


AUGMENT = "random shift <= 1 px (bilinear) + Gaussian noise sd 0.05, same batch for teacher and student"
ALONE_PLAIN = "student alone, no augmentation"
ALONE = "student alone, augmented"
DISTILLED = (("student distilled, augmented (T=4, alpha=0.1)", 4.0, 0.1),
             ("student distilled, augmented (T=2, alpha=0.0)", 2.0, 0.0))


def augmentation():
    return keras.Sequential([keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant"),
                             keras.layers.GaussianNoise(0.05)], name="augment")


def top1(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and runs (smoke test)")
    args = parser.parse_args()
    teacher_epochs, student_epochs, ft_epochs, runs = (3, 2, 1, 20) if args.quick else (25, 40, 3, 300)
    (x, y), (x_test, y_test) = load_digits()
    t0 = time.time()

    keras.utils.set_random_seed(0)
    teacher = teacher_model()
    teacher.compile("adam", LOSS, metrics=["accuracy"])
    teacher.fit(x, y, epochs=teacher_epochs, batch_size=32, verbose=0)

    models = {"teacher": teacher}
    acc = {"teacher": top1(teacher, x_test, y_test)}
    # Distillation setup ("consistent" augmentation, Beyer et al. 2022): on every training batch the
    # same random shift (up to 1 pixel, bilinear) + Gaussian noise is applied to the input, and the
    # teacher and the student see that same augmented batch. The "alone" baseline runs the same loop
    # (Distiller with alpha=1: label loss only) on the same augmented batches, same epochs, data,
    # optimizer (Adam 1e-3, batch 32) and seed. A plain fit without augmentation is shown too.
    seeds = {ALONE_PLAIN: [], ALONE: [], DISTILLED[0][0]: [], DISTILLED[1][0]: []}
    for seed in range(3):
        keras.utils.set_random_seed(seed)
        plain = student_model()
        plain.compile("adam", LOSS)
        plain.fit(x, y, epochs=student_epochs, batch_size=32, verbose=0)
        seeds[ALONE_PLAIN].append(top1(plain, x_test, y_test))
        if seed == 0:
            models[ALONE_PLAIN] = plain
        for label, temperature, alpha in ((ALONE, 4.0, 1.0),) + DISTILLED:
            keras.utils.set_random_seed(seed)
            student = student_model()
            distiller = Distiller(teacher, student, loss=SoftTargetLoss(temperature), alpha=alpha,
                                  augment=augmentation())
            distiller.compile("adam")
            distiller.fit(x, y, epochs=student_epochs, batch_size=32, verbose=0)
            seeds[label].append(top1(student, x_test, y_test))
            if seed == 0:
                models[label] = student
    for label, values in seeds.items():
        acc[label] = float(np.mean(values))

    factorized, table = factorize(teacher, energy=0.9)
    models["factorized (energy 0.9), before fine-tuning"] = factorized
    acc["factorized (energy 0.9), before fine-tuning"] = top1(factorized, x_test, y_test)
    tuned = keras.models.clone_model(factorized)
    tuned.set_weights(factorized.get_weights())
    tuned.compile(keras.optimizers.Adam(1e-4), LOSS)
    tuned.fit(x, y, epochs=ft_epochs, batch_size=32, verbose=0)
    models["factorized (energy 0.9), fine-tuned"] = tuned
    acc["factorized (energy 0.9), fine-tuned"] = top1(tuned, x_test, y_test)

    clustered = cluster(teacher, n_clusters=16)
    acc_before = top1(clustered, x_test, y_test)
    clustered.compile(keras.optimizers.Adam(1e-4), LOSS)
    clustered.fit(x, y, epochs=ft_epochs, batch_size=32, verbose=0)
    stripped = strip(clustered)
    models["clustered (16), fine-tuned, stripped"] = stripped
    acc["clustered (16), fine-tuned, stripped"] = top1(stripped, x_test, y_test)

    rows = []
    for label, model in models.items():
        tflite, _ = export_tflite(model)
        parity = verify(model, tflite, x_test)
        rows.append({"model": label, "top1": acc[label], "top1_per_seed": seeds.get(label),
                     "params": int(model.count_params()), "tflite_bytes": len(tflite),
                     "tflite_gzip_bytes": len(gzip.compress(tflite, 9)),
                     "tflite_top1_agreement": parity.top1_agreement,
                     "latency": benchmark_tflite(tflite, runs=runs, warmup=20)})
    # Interleave a second latency pass so drift on this shared machine hits every model alike.
    for row, model in zip(rows, models.values()):
        tflite, _ = export_tflite(model)
        second = benchmark_tflite(tflite, runs=runs, warmup=20)
        row["median_ms"] = float(min(row["latency"]["median_ms"], second["median_ms"]))
        del row["latency"]
    base = rows[0]["median_ms"]
    for row in rows:
        row["latency_vs_teacher"] = row["median_ms"] / base

    student = models[DISTILLED[0][0]]
    int8, report = export_tflite(student, quantize="int8", representative_data=x[:200])
    int8_parity = verify(student, int8, x_test)
    result = {
        "dataset": "sklearn digits 8x8, 1438 train / 359 test",
        "distillation_setup": AUGMENT + "; alone (augmented) = same Distiller loop with alpha=1; "
                              "Adam 1e-3, batch 32, mean over seeds 0, 1, 2",
        "epochs": {"teacher": teacher_epochs, "student": student_epochs, "fine_tune": ft_epochs},
        "rows": rows,
        "factorize_table": table,
        "clustered_top1_before_fine_tuning": acc_before,
        "distilled_student_int8": {"bytes": len(int8), "full_integer": report.is_full_integer,
                                   "top1_agreement": int8_parity.top1_agreement,
                                   "max_abs_error": int8_parity.max_abs_error},
        "seconds": time.time() - t0,
    }
    print("\ndistillation setup:", result["distillation_setup"])
    print(f"\n{'model':48s} {'top-1':>7s} {'params':>8s} {'tflite':>8s} {'gzip':>8s} {'lat x':>6s}")
    for row in rows:
        print(f"{row['model']:48s} {row['top1']:7.4f} {row['params']:8d} {row['tflite_bytes']:8d} "
              f"{row['tflite_gzip_bytes']:8d} {row['latency_vs_teacher']:6.2f}")
    print("per-seed top-1:", {k: [round(v, 4) for v in vals] for k, vals in seeds.items()})
    print("clustered before fine-tuning:", acc_before, " int8 student:", result["distilled_student_int8"])
    if not args.quick:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                            "distill_factorize_cluster.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=2, default=float)
        print("wrote", path)


if __name__ == "__main__":
    main()
