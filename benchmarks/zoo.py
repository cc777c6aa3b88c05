"""keras.applications zoo through prune -> strip -> TFLite float32 export, one row per architecture.

Every architecture of `keras.applications` (weights=None, small input) is pruned to 50 % with
`ConstantSparsity` (masks applied once), stripped with `tfcompress.strip`, exported with
`export_tflite`, and the TFLite outputs compared with the stripped Keras model on 2 random images
(cosine; pass above 0.999). A failing step writes which step failed and the error instead.

    python benchmarks/zoo.py [--models MobileNetV3Small EfficientNetB0 ...] [--size 32]

Writes benchmarks/results/zoo.json and prints a Markdown table. The full sweep builds ~40 models
(the largest, ConvNeXtXLarge / EfficientNetV2L, take minutes each on 2 cores).
"""

import argparse
import json
import os
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfcompress  # noqa: E402
from tfcompress.export import export_tflite, run_tflite  # noqa: E402
from tfcompress.pruning import ConstantSparsity, PruningCallback, prune  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# Smallest input each family accepts (NASNet needs 32 multiples; Inception/Xception need >= 75).
MIN_SIZE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71, "NASNetMobile": 32,
            "NASNetLarge": 32}


def architectures():
    """Names of the model constructors in keras.applications."""
    names = []
    for module in dir(keras.applications):
        sub = getattr(keras.applications, module)
        for name in dir(sub):
            if name[0].isupper() and callable(getattr(sub, name)) and name not in names:
                names.append(name)
    return sorted(names)


def _constructor(name):
    for module in dir(keras.applications):
        sub = getattr(keras.applications, module)
        if hasattr(sub, name):
            return getattr(sub, name)
    raise ValueError(name)


def _cosine(a, b):
    a, b = np.ravel(a).astype("float64"), np.ravel(b).astype("float64")
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def run_one(name, size):
    row = {"model": name, "size": size}
    step = "build"
    try:
        t0 = time.perf_counter()
        size = max(size, MIN_SIZE.get(name, 0))
        row["size"] = size
        model = _constructor(name)(input_shape=(size, size, 3), weights=None, classes=10,
                                   classifier_activation=None)
        row["params"] = int(model.count_params())
        step = "prune"
        pruned = prune(model, schedule=ConstantSparsity(0.5, frequency=1))
        cb = PruningCallback()
        cb.set_model(pruned)
        cb.on_train_begin()
        cb.on_train_batch_begin(0)
        row["unpruned_layers"] = len(pruned.unpruned_layers)
        step = "strip"
        plain = tfcompress.strip(pruned)
        step = "export"
        tflite, _ = export_tflite(plain)
        row["tflite_bytes"] = len(tflite)
        step = "compare"
        x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
        row["cosine"] = _cosine(run_tflite(tflite, x), np.asarray(plain(x)))
        row["status"] = "pass" if row["cosine"] > 0.999 else "fail: cosine"
        row["seconds"] = round(time.perf_counter() - t0, 1)
    except Exception as e:  # noqa: BLE001
        row["status"] = f"fail at {step}: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        row["trace"] = traceback.format_exc()[-2000:]
    return row


def markdown(rows):
    lines = ["| model | input | params | TFLite MB | cosine vs Keras | s | status |", "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['size']} | {r.get('params', 0):,} | "
                     f"{r.get('tflite_bytes', 0) / 1e6:.1f} | {r.get('cosine', float('nan')):.5f} | "
                     f"{r.get('seconds', '-')} | {r['status']} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    rows = []
    for name in args.models or architectures():
        rows.append(run_one(name, args.size))
        print(rows[-1]["model"], rows[-1]["status"], rows[-1].get("seconds"), flush=True)
        keras.backend.clear_session()
    print(markdown(rows))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "zoo.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
