"""float32 sparse kernels on x86 CPUs without AVX-512: what MobileNetV2 (every 1x1 conv 80 % zero
in 4x1 output blocks, `pruning.Block((4, 1))`) runs when the AVX-512 kernels are hidden.

On a CPU without AVX-512 the 1x1 convs (>= 16 rows) run the AVX2 + FMA CSR kernel
(tflite_export/tfc_kernels_x86_avx2.c; before it existed: the portable tiled kernel, as the AVX2
bodies of its `target_clones`). Here the pickers are made to act as on such a CPU with
TFCOMPRESS_NO_AVX512=1; the portable clones the loader picks still follow the real CPU (AVX-512
bodies on this machine), unless the library was built for AVX2 only: a copy of the tree whose tfcompress/export/_tfc_sparse_ops*.so was compiled with
-march=x86-64-v3 and without -DTFC_MULTIVERSION (tflite_export/README.md, "x86 without AVX-512
VNNI"). Dense files run on XNNPACK, which uses this CPU's AVX-512 (it cannot be capped).

    python benchmarks/x86_paths_float32.py --rounds 20 [--tag _v3]

One process, batch 1, 1 thread, interleaved rounds of 10 invokes; writes
benchmarks/results/x86_paths_float32<tag>.json.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from sparse_kernels import RESULTS, _last_kernel, _summary, interleaved, mobilenet_v2  # noqa: E402
from tfcompress.export import export_tflite, run_tflite  # noqa: E402
from tfcompress.export.sparse import rewrite_tflite  # noqa: E402
from tfcompress.export.sparse_native import library_path  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--tag", default="", help="suffix of the results file")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    start = time.time()
    model, pruned = mobilenet_v2("block4x1", 0.8, rng)
    dense, _ = export_tflite(model)
    custom = rewrite_tflite(dense, "custom")
    x = rng.random((8, 224, 224, 3)).astype("float32")
    ref = run_tflite(dense, x)
    out = {"setup": "MobileNetV2 224 float32, random weights, BN re-estimated, every 1x1 conv 80 % zero in "
                    "4x1 output blocks; batch 1, 1 thread; x86 AMD EPYC Zen 4 (dense on XNNPACK with "
                    "AVX-512); shared machine", "library": library_path(), "pruned_1x1_convs": pruned,
           "load_average_start": os.getloadavg()}
    paths = {"dense": "best", "custom_best": "best", "custom_no_avx512": "avx2"}
    variants = {"dense": dense, "custom_best": custom, "custom_no_avx512": custom}
    from sparse_kernels import set_path

    for name in ("custom_best", "custom_no_avx512"):
        set_path(paths[name])
        got = run_tflite(custom, x)
        out[f"{name}_kernel_last_layer"] = _last_kernel()
        out[f"{name}_max_rel_err"] = float(np.abs(got - ref).max() / np.abs(ref).max())
    set_path("best")
    t = interleaved(variants, args.rounds, runs=10, paths=paths)
    for name in variants:
        out[name] = _summary(t[name])
    for name in ("custom_best", "custom_no_avx512"):
        out[f"speedup_{name}"] = out["dense"]["median_ms"] / out[name]["median_ms"]
        print(f"{name:>18}: {out[name]['median_ms']:.3f} ms ({out['speedup_' + name]:.2f}x dense "
              f"{out['dense']['median_ms']:.3f} ms), kernel of the last layer {out[name + '_kernel_last_layer']}")
    out["load_average_end"] = os.getloadavg()
    out["seconds"] = round(time.time() - start, 1)
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"x86_paths_float32{args.tag}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
