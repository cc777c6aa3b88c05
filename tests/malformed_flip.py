"""Seeded byte-flip loop: corrupted .tflite files through `tfcompress inspect` and `bench`.

Exports a few small models (float32, float16, dynamic-range, full int8, and one with the
tfcompress sparse custom op), then writes N corrupted copies (1-4 random bytes changed, or a
random truncation, seeded) and runs `tfcompress inspect FILE` and `tfcompress bench FILE --runs 2`
on each. The CLI runs in this process (its `main()`), so a crash of the CLI process would kill
this script; LiteRT's native code runs in the CLI's child process, as in real use. Every run must
end with exit 0, or exit 2 with exactly one `tfcompress: error:` line and no traceback.

Usage:
    python tests/malformed_flip.py --files 240 --seed 0     # the full loop, prints JSON figures
(`tests/test_malformed_inputs.py::test_byte_flip_script` runs it with fewer files in CI.)
"""

import argparse
import collections
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def make_models(folder):
    """Writes the base .tflite files into `folder`; returns their paths."""
    import keras
    import numpy as np

    from tfcompress.export import export_tflite

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).uniform(0, 1, (64, 8, 8, 1)).astype("float32")
    cnn = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                            keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    paths = []
    for name, kwargs in [("float32", {}), ("float16", {"quantize": "float16"}),
                         ("dynamic", {"quantize": "dynamic"}),
                         ("int8", {"quantize": "int8", "representative_data": x})]:
        path = os.path.join(folder, f"{name}.tflite")
        export_tflite(cnn, path, **kwargs)
        paths.append(path)
    # A Dense layer with 80 % zeros exported with the tfcompress sparse custom op.
    mlp = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32), keras.layers.Dense(4)])
    w, b = mlp.layers[0].get_weights()
    w[np.random.default_rng(1).random(w.shape) < 0.8] = 0.0
    mlp.layers[0].set_weights([w, b])
    path = os.path.join(folder, "sparse.tflite")
    try:
        export_tflite(mlp, path, sparse_kernels="custom")
        paths.append(path)
    except (ValueError, ImportError) as e:  # a build without the native kernels
        print(f"no sparse-kernel file: {e}", file=sys.stderr)
    return paths


def corrupt(data, rng):
    """A corrupted copy of `data`: 1-4 random bytes replaced (90 %) or a random truncation."""
    data = bytearray(data)
    if rng.random() < 0.1:
        return bytes(data[: int(rng.integers(8, len(data)))])
    for _ in range(int(rng.integers(1, 5))):
        data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
    return bytes(data)


def _children_cpu():
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cli(argv):
    """Runs tfcompress's main() here; returns (exit code, stdout, stderr lines)."""
    from tfcompress.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), [ln for ln in err.getvalue().splitlines() if ln.strip()]


def flip_loop(paths, n_files, seed, folder):
    """Runs inspect and bench on `n_files` corrupted files; returns the figures as a dict."""
    import numpy as np

    rng = np.random.default_rng(seed)
    originals = {p: open(p, "rb").read() for p in paths}
    counts = collections.Counter()
    bad = []
    messages = collections.Counter()
    started = time.process_time(), time.perf_counter(), _children_cpu()
    for k in range(n_files):
        base = paths[k % len(paths)]
        path = os.path.join(folder, f"corrupt_{k}.tflite")
        with open(path, "wb") as f:
            f.write(corrupt(originals[base], rng))
        for argv in (["inspect", path], ["bench", path, "--runs", "2", "--warmup", "1"]):
            code, out, err = run_cli(argv)
            counts[f"{argv[0]} exit {code}"] += 1
            ok = (code == 0 and not err) or (
                code == 2 and len(err) == 1 and err[0].startswith("tfcompress: error: "))
            if "Traceback" in out or any("Traceback" in ln for ln in err):
                ok = False
            if code == 2 and err:
                text = err[0]
                key = re.sub(r"\d+", "N", err[0].replace(path, "FILE"))[19:90]
                messages[f"{argv[0]}: {key}"] += 1
            if not ok:
                bad.append({"file": base, "k": k, "argv": argv[0], "code": code, "err": err[:3]})
        os.unlink(path)
    cpu, wall = time.process_time() - started[0], time.perf_counter() - started[1]
    child_cpu = _children_cpu() - started[2]
    return {"files": n_files, "runs": 2 * n_files, "seed": seed,
            "bases": [os.path.basename(p) for p in paths], "exit_counts": dict(counts),
            "error_kinds": dict(messages.most_common()), "bad": bad,
            "parent_cpu_s": round(cpu, 1), "children_cpu_s": round(child_cpu, 1),
            "wall_s": round(wall, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tfcompress_flip_") as folder:
        paths = make_models(folder)
        result = flip_loop(paths, args.files, args.seed, folder)
    print(json.dumps(result, indent=1))
    return 0 if not result["bad"] else 1


if __name__ == "__main__":
    sys.exit(main())
