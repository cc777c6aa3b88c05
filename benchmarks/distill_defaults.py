"""Sweep of Distiller's alpha and temperature over training-set sizes, students and seeds (digits).

Chooses `Distiller`'s default `alpha` (weight of the label loss) and `SoftTargetLoss` temperature
from a grid, on a VALIDATION split carved from the training data; the test split is only used for
the figures reported next to the choice.

Setup (per seed): load_digits() gives 1438 train / 359 test images (the test split is the one every
benchmark uses). 288 training images (20 %, stratified, drawn with the seed) are held out as the
validation split; the remaining 1150 form the pool. The teacher CNN (151 k parameters) is trained
on the whole pool; each student is trained on the first n images of a class-balanced shuffle of the
pool (n in SIZES, nested subsets). Every arm of a (size, student, seed) cell starts from the same
initial weights and sees the same batches (Adam 1e-3, batch 32, fixed epochs): the arms are trained
side by side as stacked copies of the student in one Keras layer (its output checked equal to the
Keras student's at start-up), with the sum over arms of

    alpha * SparseCategoricalCrossentropy(y, s) + (1 - alpha) * SoftTargetLoss(T)(teacher(x), s)

which is exactly `Distiller(teacher, student, loss=SoftTargetLoss(T), alpha=alpha)`'s loss (checked
against `Distiller.compute_loss` at start-up; the teacher runs in inference mode and sees no
augmentation, so its logits are computed once). Arm alpha=1 is the student trained alone. After the
sweep, the student alone, the old defaults and the chosen defaults are trained again with the real
`Distiller` (n = 300, the CNN student, every seed) as a check.

    nice -n 19 python benchmarks/distill_defaults.py [--quick]

Prints the tables; writes benchmarks/results/distill_defaults.json (or distill_defaults_quick.json).
"""

import argparse
import itertools
import json
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfcompress.datasets import load_digits  # noqa: E402
from tfcompress.distillation import Distiller, SoftTargetLoss  # noqa: E402

ALPHAS = (0.1, 0.3, 0.5, 0.7, 0.9)
TEMPERATURES = (1.0, 2.0, 4.0, 8.0)
SIZES = (100, 300, 1150)
SEEDS = (0, 1, 2)
OLD_DEFAULT = (0.1, 4.0)
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def teacher_model():
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.3)(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(10)(x), name="teacher")


def cnn_student(prefix="cnn"):
    """The notebook's student CNN, 2,314 parameters."""
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(10)(x), name=prefix)


def mlp_student(prefix="mlp"):
    """A one-hidden-layer MLP (32 units), 2,410 parameters."""
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(32, activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(10)(x), name=prefix)


STUDENTS = {"cnn_2314": cnn_student, "mlp_2410": mlp_student}


def epochs_for(n, quick):
    """Fixed epochs: 100 up to 300 images (the issue's setting), 50 for the whole pool."""
    if quick:
        return 2
    return 100 if n <= 300 else 50


def split(x, y, seed, n_val=288):
    """Stratified validation split of the training data, and a class-balanced order of the rest."""
    rng = np.random.default_rng(1000 + seed)
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in range(10)]
    k = n_val // 10
    val = np.concatenate([p[:k] for p in per_class[:-1]] + [per_class[-1][:n_val - 9 * k]])
    rest = [p[k:] if c < 9 else p[n_val - 9 * k:] for c, p in enumerate(per_class)]
    order = []  # round-robin over classes, so every prefix is (nearly) balanced
    for i in range(max(len(p) for p in rest)):
        order.extend(rng.permutation([p[i] for p in rest if i < len(p)]))
    return np.asarray(order), rng.permutation(val)


class ArmsLoss(keras.losses.Loss):
    """Sum over arms of the Distiller loss, all arms at once; y_true packs [label, teacher logits].

    Per arm: alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T)), batch
    means, i.e. `Distiller(loss=SoftTargetLoss(T), alpha=alpha)` (checked at start-up).
    """

    def __init__(self, arms):
        super().__init__(name="arms_loss")
        self.alpha = np.array([a for a, _ in arms], "float32")
        self.temperature = np.array([t for _, t in arms], "float32")

    def call(self, y_true, y_pred):
        ops = keras.ops
        labels = ops.cast(y_true[:, 0], "int32")
        temp = self.temperature[None, :, None]
        log_s = ops.log_softmax(y_pred, axis=-1)  # (batch, arms, classes)
        hard = -ops.mean(ops.sum(ops.one_hot(labels, 10)[:, None, :] * log_s, -1), 0)
        log_ps = ops.log_softmax(y_pred / temp, axis=-1)
        log_pt = ops.log_softmax(y_true[:, None, 1:] / temp, axis=-1)
        kl = ops.mean(ops.sum(ops.exp(log_pt) * (log_pt - log_ps), -1), 0) * self.temperature ** 2
        return ops.sum(self.alpha * hard + (1.0 - self.alpha) * kl)


class StackedStudent(keras.layers.Layer):
    """`n_arms` copies of a student as one layer with stacked weights (one einsum per layer).

    Computes exactly what the Keras student computes (checked against it at start-up), with each
    weight given a leading arm axis, so one step trains every arm for the cost of a few ops; the
    arms are independent (the loss is a sum over arms and Adam works element-wise).
    """

    def __init__(self, reference, n_arms, kind):
        super().__init__()
        self.kind = kind
        self.n_arms = n_arms
        self.stacked = [self.add_weight(shape=(n_arms, *w.shape), initializer="zeros", name=f"w{i}")
                        for i, w in enumerate(reference.get_weights())]
        for var, w in zip(self.stacked, reference.get_weights()):
            var.assign(np.broadcast_to(w, (n_arms, *w.shape)))

    def call(self, x):
        ops = keras.ops
        if self.kind == "mlp":  # Flatten -> Dense(32, relu) -> Dense(10)
            w1, b1, w2, b2 = self.stacked
            h = ops.relu(ops.einsum("bi,kio->bko", ops.reshape(x, (-1, 64)), w1) + b1)
            return ops.einsum("bki,kio->bko", h, w2) + b2
        # Conv2D(8, 3, same, relu) -> MaxPooling2D(2) -> Flatten -> Dense(16, relu) -> Dense(10)
        kc, bc, w1, b1, w2, b2 = self.stacked
        padded = ops.pad(x[..., 0], ((0, 0), (1, 1), (1, 1)))
        patches = ops.stack([padded[:, dy:dy + 8, dx:dx + 8] for dy in range(3) for dx in range(3)], -1)
        conv = ops.relu(ops.einsum("bhwp,kpc->bkhwc", patches, ops.reshape(kc, (self.n_arms, 9, -1)))
                        + bc[None, :, None, None, :])
        pooled = ops.max(ops.reshape(conv, (-1, self.n_arms, 4, 2, 4, 2, conv.shape[-1])), axis=(3, 5))
        flat = ops.reshape(pooled, (-1, self.n_arms, 16 * conv.shape[-1]))
        h = ops.relu(ops.einsum("bki,kio->bko", flat, w1) + b1)
        return ops.einsum("bki,kio->bko", h, w2) + b2


def arms_model(build, reference, n_arms):
    """One model running n_arms copies of the student (same initial weights) side by side."""
    inp = keras.Input((8, 8, 1))
    kind = "cnn" if build is cnn_student else "mlp"
    return keras.Model(inp, StackedStudent(reference, n_arms, kind)(inp))


def check_loss_matches_distiller(teacher, build, arms, x, y):
    """The sweep's per-arm loss equals Distiller.compute_loss with the same alpha and temperature."""
    student = build()
    model = arms_model(build, student, len(arms))
    stacked = np.asarray(model(x))
    for k in range(len(arms)):  # the stacked copies compute what the Keras student computes
        np.testing.assert_allclose(stacked[:, k], np.asarray(student(x)), rtol=1e-4, atol=1e-5)
    t = np.asarray(teacher(x, training=False))
    for k, (alpha, temp) in enumerate(arms):
        one = ArmsLoss([(alpha, temp)])
        s = model(x)[:, k:k + 1]
        mine = float(one(np.concatenate([y[:, None], t], 1).astype("float32"), s))
        distiller = Distiller(teacher, student, loss=SoftTargetLoss(temp), alpha=alpha)
        ref = float(distiller.compute_loss(x=x, y=y, y_pred=student(x), training=False))
        if not np.isclose(mine, ref, rtol=1e-4, atol=1e-6):
            raise AssertionError(f"sweep loss {mine} != Distiller loss {ref} at alpha={alpha}, T={temp}")


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def accuracy(logits, y):
    return float(np.mean(np.argmax(logits, -1) == y))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, 1 seed, 2 sizes (smoke test)")
    args = parser.parse_args()
    seeds, sizes = ((0,), (100, 300)) if args.quick else (SEEDS, SIZES)
    teacher_epochs = 2 if args.quick else 40
    arms = [(1.0, 1.0)] + list(itertools.product(ALPHAS, TEMPERATURES))
    names = ["alone"] + [f"alpha={a:g} T={t:g}" for a, t in arms[1:]]
    (x_all, y_all), (x_test, y_test) = load_digits()
    t0 = time.time()
    cells, teachers, confirm = [], [], []
    for seed in seeds:
        order, val = split(x_all, y_all, seed)
        x_val, y_val = x_all[val], y_all[val]
        x_pool, y_pool = x_all[order], y_all[order]
        keras.utils.set_random_seed(seed)
        teacher = teacher_model()
        teacher.compile("adam", LOSS)
        teacher.fit(x_pool, y_pool, epochs=teacher_epochs, batch_size=32, verbose=0)
        t_logits = np.asarray(teacher.predict(x_pool, verbose=0, batch_size=512))
        teachers.append({"seed": seed, "val": accuracy(teacher.predict(x_val, verbose=0), y_val),
                         "test": accuracy(teacher.predict(x_test, verbose=0), y_test),
                         # How much the soft targets say beyond the labels on the students' images.
                         "mean_prob_of_label_on_pool": {
                             f"T={t:g}": float(np.mean(_softmax(t_logits / t)[np.arange(len(y_pool)), y_pool]))
                             for t in TEMPERATURES}})
        print(f"[{time.time() - t0:6.0f}s] seed {seed}: teacher on {len(x_pool)} images, "
              f"val {teachers[-1]['val']:.4f} test {teachers[-1]['test']:.4f}, mean probability of "
              f"the label on them {teachers[-1]['mean_prob_of_label_on_pool']}", flush=True)
        if seed == seeds[0]:
            for build in STUDENTS.values():
                check_loss_matches_distiller(teacher, build, arms, x_val[:64], y_val[:64])
        for n in sizes:
            xs, ys, ts = x_pool[:n], y_pool[:n], t_logits[:n]
            for sname, build in STUDENTS.items():
                keras.utils.set_random_seed(100 * seed + n)
                reference = build()
                model = arms_model(build, reference, len(arms))
                model.compile(keras.optimizers.Adam(1e-3), ArmsLoss(arms), steps_per_execution=8)
                targets = np.concatenate([ys[:, None].astype("float32"), ts], 1)
                epochs = epochs_for(n, args.quick)
                model.fit(xs, targets, epochs=epochs, batch_size=32, verbose=0)
                pv = np.asarray(model.predict(x_val, verbose=0, batch_size=512))
                pt = np.asarray(model.predict(x_test, verbose=0, batch_size=512))
                cell = {"seed": seed, "n": n, "student": sname, "epochs": epochs,
                        "val": {name: accuracy(pv[:, k], y_val) for k, name in enumerate(names)},
                        "test": {name: accuracy(pt[:, k], y_test) for k, name in enumerate(names)}}
                cells.append(cell)
                best = max(names[1:], key=lambda m: cell["val"][m])
                old = f"alpha={OLD_DEFAULT[0]:g} T={OLD_DEFAULT[1]:g}"
                print(f"[{time.time() - t0:6.0f}s] seed {seed} n={n:4d} {sname}: val alone "
                      f"{cell['val']['alone']:.4f}, {old} {cell['val'][old]:.4f}, best {best} "
                      f"{cell['val'][best]:.4f}", flush=True)
        confirm.append((seed, teacher, x_pool, y_pool, x_val, y_val))

    # Selection on the validation split only: mean rank of each arm over the cells (1 = best,
    # ties share the mean rank), then mean validation accuracy as the tie-breaker.
    val = np.array([[c["val"][m] for m in names] for c in cells])
    ranks = np.array([_ranks(-row) for row in val])
    summary = {}
    for k, name in enumerate(names):
        gaps = val[:, k] - val[:, 0]
        summary[name] = {
            "mean_rank_val": float(ranks[:, k].mean()),
            "mean_val": float(val[:, k].mean()),
            "mean_test": float(np.mean([c["test"][name] for c in cells])),
            "mean_gap_vs_alone_val": float(gaps.mean()),
            "worst_cell_gap_vs_alone_val": float(gaps.min()),
            "by_size_student": {f"n={n} {s}": {
                "val": float(np.mean([c["val"][name] for c in cells if c["n"] == n and c["student"] == s])),
                "test": float(np.mean([c["test"][name] for c in cells if c["n"] == n and c["student"] == s]))}
                for n in sizes for s in STUDENTS},
        }
    chosen = min(names[1:], key=lambda m: (summary[m]["mean_rank_val"], -summary[m]["mean_val"]))
    alpha, temp = arms[names.index(chosen)]
    print(f"\nchosen on validation (best mean rank over {len(cells)} cells): {chosen}")

    # Check with the real Distiller: alone / old defaults / chosen defaults at n = 300.
    check = []
    n_check = 300 if not args.quick else 100
    for seed, teacher, x_pool, y_pool, x_val, y_val in confirm:
        for sname, build in list(STUDENTS.items())[:1]:
            row = {"seed": seed, "n": n_check, "student": sname}
            for label, setting in (("alone", None), ("old default", OLD_DEFAULT), ("chosen", (alpha, temp))):
                keras.utils.set_random_seed(100 * seed + n_check)
                student = build()
                if setting is None:
                    student.compile(keras.optimizers.Adam(1e-3), LOSS, steps_per_execution=8)
                    student.fit(x_pool[:n_check], y_pool[:n_check], epochs=epochs_for(n_check, args.quick),
                                batch_size=32, verbose=0)
                else:
                    distiller = Distiller(teacher, student, loss=SoftTargetLoss(setting[1]), alpha=setting[0])
                    distiller.compile(keras.optimizers.Adam(1e-3), steps_per_execution=8)
                    distiller.fit(x_pool[:n_check], y_pool[:n_check], epochs=epochs_for(n_check, args.quick),
                                  batch_size=32, verbose=0)
                row[label] = {"val": accuracy(student.predict(x_val, verbose=0), y_val),
                              "test": accuracy(student.predict(x_test, verbose=0), y_test)}
            check.append(row)
            print(f"[{time.time() - t0:6.0f}s] Distiller check seed {seed} n={n_check} {sname}: test "
                  + ", ".join(f"{k} {row[k]['test']:.4f}" for k in ("alone", "old default", "chosen")), flush=True)

    _print_tables(names, summary, sizes, chosen)
    result = {
        "dataset": "sklearn digits 8x8 (tfcompress.load_digits): 1438 train / 359 test; per seed 288 "
                   "train images held out for validation, teacher trained on the other 1150",
        "selection": "arm with the best mean rank of validation accuracy over (size, student, seed) "
                     "cells; the test split never enters the choice",
        "grid": {"alpha": ALPHAS, "temperature": TEMPERATURES, "sizes": sizes, "students": list(STUDENTS),
                 "seeds": seeds},
        "training": "Adam 1e-3, batch 32, epochs 100 (n <= 300) / 50 (n = 1150); arms of a cell share "
                    "initial weights and batch order; teacher 40 epochs on the pool",
        "teachers": teachers,
        "chosen": {"alpha": alpha, "temperature": temp, "name": chosen},
        "old_default": {"alpha": OLD_DEFAULT[0], "temperature": OLD_DEFAULT[1]},
        "summary": summary,
        "distiller_check": check,
        "cells": cells,
        "seconds": time.time() - t0,
        "machine": "2-core x86, shared with other jobs, run under nice -n 19",
    }
    out = RESULTS / ("distill_defaults_quick.json" if args.quick else "distill_defaults.json")
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out} ({result['seconds']:.0f} s)")


def _ranks(values):
    """Ranks of values (1 = smallest), ties sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for v in np.unique(values):
        ranks[values == v] = ranks[values == v].mean()
    return ranks


def _print_tables(names, summary, sizes, chosen):
    cols = [f"n={n} {s}" for n in sizes for s in STUDENTS]
    print(f"\nmean validation accuracy (test in brackets), mean over seeds; rank = mean rank on validation")
    print(f"{'arm':18s} {'rank':>5s} " + " ".join(f"{c:>17s}" for c in cols))
    for name in sorted(names, key=lambda m: summary[m]["mean_rank_val"]):
        row = summary[name]
        mark = " *" if name == chosen else ""
        print(f"{name + mark:18s} {row['mean_rank_val']:5.1f} " + " ".join(
            f"{row['by_size_student'][c]['val']:.3f} ({row['by_size_student'][c]['test']:.3f})" for c in cols))


if __name__ == "__main__":
    main()
