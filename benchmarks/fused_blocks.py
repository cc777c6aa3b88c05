"""Per-block timing of the fused inverted-residual op against the same block as separate nodes.

Each MobileNetV2 224 block shape (input size, channels, expansion 6, stride, residual) is built as
its own Keras model, its 1x1 convs pruned 80 % in 1x4 blocks (`pruning.Block((1, 4))`'s pattern),
random weights, int8 by post-training calibration; with `--dtype float32`, pruned in 8x1 blocks
(`pruning.Block((8, 1))`, the float32 pattern; `--fblock 4`: 4x1) and exported float32. Three files per block, the
same weights:

* dense: XNNPACK runs every op;
* custom: `rewrite_tflite(dense, "custom", fuse_blocks=False)`: the 1x1s as TFC_SPARSE_CONV_1X1,
  the depthwise / pad / add on XNNPACK;
* fused: `rewrite_tflite(dense, "custom")`: the whole block as TFC_SPARSE_INVERTED_RESIDUAL.

Timed in interleaved rounds (every file and thread count once per round, shuffled), median of the
round medians and min-max; the fused output is checked equal to the dense file's (float32: within
1e-4 of its magnitude).

    python benchmarks/fused_blocks.py [--rounds 15] [--tag _run1] [--dtype float32]

Writes benchmarks/results/fused_blocks<tag>.json. x86 figures; only comparable within one run.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mobile_pipeline import summary, time_interleaved  # noqa: E402
from sparse_threads import _pool_stats  # noqa: E402

from tfcompress.export import export_tflite, load_interpreter  # noqa: E402
from tfcompress.export.sparse import rewrite_tflite  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
# (name, input H=W, Cin, Ce, Co, stride, residual): MobileNetV2 224 blocks (Ce = Cin without expand)
BLOCKS = [
    ("b0 112x112 32->16 (no expand)", 112, 32, 32, 16, 1, False),
    ("b1 112x112 16->96->24 s2", 112, 16, 96, 24, 2, False),
    ("b2 56x56 24->144->24 res", 56, 24, 144, 24, 1, True),
    ("b4 28x28 32->192->32 res", 28, 32, 192, 32, 1, True),
    ("b7 14x14 64->384->64 res", 14, 64, 384, 64, 1, True),
    ("b11 14x14 96->576->96 res", 14, 96, 576, 96, 1, True),
    ("b13 14x14 96->576->160 s2", 14, 96, 576, 160, 2, False),
    ("b14 7x7 160->960->160 res", 7, 160, 960, 160, 1, True),
]


def block_model(hw, cin, ce, co, stride, residual, rng, dtype="int8", fblock=8):
    inp = keras.Input((hw, hw, cin))
    x = inp
    if ce != cin or stride == 2 or residual:
        x = keras.layers.Conv2D(ce, 1, activation=keras.activations.relu6)(x)
    if stride == 2:  # as keras.applications.MobileNetV2
        x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)))(x)
        x = keras.layers.DepthwiseConv2D(3, strides=2, padding="valid", activation=keras.activations.relu6)(x)
    else:
        x = keras.layers.DepthwiseConv2D(3, padding="same", activation=keras.activations.relu6)(x)
    x = keras.layers.Conv2D(co, 1)(x)
    if residual:
        x = keras.layers.Add()([inp, x])
    model = keras.Model(inp, x)
    for layer in model.layers:
        if type(layer) is keras.layers.Conv2D:
            k = layer.kernel.numpy()[0, 0]  # [K, N]: 1x4 = 4 inputs of one output, 4x1 = 4 outputs
            if dtype == "int8":
                mask = np.repeat(rng.random((-(-k.shape[0] // 4), k.shape[1])) < 0.8, 4, axis=0)[: k.shape[0]]
            else:
                mask = np.repeat(rng.random((k.shape[0], -(-k.shape[1] // fblock))) < 0.8, fblock, axis=1)[:, : k.shape[1]]
            layer.kernel.assign(np.where(mask, 0.0, k)[None, None].astype("float32"))
    if dtype == "float32":
        return export_tflite(model)[0]
    calib = (rng.standard_normal((8, hw, hw, cin)) * 0.5 + 0.5).astype("float32")
    return export_tflite(model, quantize="int8", representative_data=calib)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--runs", type=int, default=30, help="invokes per round")
    ap.add_argument("--tag", default="", help="suffix of the result file: results/fused_blocks<tag>.json")
    ap.add_argument("--dtype", choices=("int8", "float32"), default="int8")
    ap.add_argument("--fblock", type=int, choices=(4, 8), default=8,
                    help="float32: zeros in blocks of this many output channels (Block((fblock, 1)))")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    files = {}
    for name, hw, cin, ce, co, st, res in BLOCKS:
        dense = block_model(hw, cin, ce, co, st, res, rng, args.dtype, args.fblock)
        files[name] = {"dense": dense, "custom": rewrite_tflite(dense, "custom", fuse_blocks=False),
                       "fused": rewrite_tflite(dense, "custom")}
        if args.dtype == "float32":
            x = rng.standard_normal((1, hw, hw, cin)).astype(np.float32)
        else:
            x = rng.integers(-128, 128, (1, hw, hw, cin)).astype(np.int8)
        outs = []
        for variant in ("dense", "fused"):
            it = load_interpreter(files[name][variant])
            it.set_tensor(it.get_input_details()[0]["index"], x)
            it.invoke()
            outs.append(it.get_tensor(it.get_output_details()[0]["index"]))
        if args.dtype == "float32":
            assert np.abs(outs[0] - outs[1]).max() <= 1e-4 * max(1.0, np.abs(outs[0]).max()), name
        else:
            assert np.array_equal(outs[0], outs[1]), name
        keras.backend.clear_session()
    flat = {f"{b} | {v}": blob for b, d in files.items() for v, blob in d.items()}
    before = _pool_stats()
    samples = time_interleaved(flat, [1, 2], args.rounds, args.runs)
    # tfcompress pool jobs while timing: parallel, of them stalled (the caller waited on a descheduled
    # worker), run on the caller in the backoff after a stall (a one-node file: 64+ invokes serial)
    jobs = [b - a for a, b in zip(before, _pool_stats())]
    out = {"load_avg": os.getloadavg(), "rounds": args.rounds, "runs": args.runs, "dtype": args.dtype, "fblock": args.fblock,
           "pool_jobs": dict(zip(("parallel", "stalled", "backoff"), jobs)), "blocks": {}}
    lines = ["| block | thr | dense us | custom us | fused us | fused vs dense | fused vs custom |",
             "|---|---|---|---|---|---|---|"]
    for name in files:
        out["blocks"][name] = {}
        for t in (1, 2):
            s = {v: summary(samples[(f"{name} | {v}", t)]) for v in ("dense", "custom", "fused")}
            out["blocks"][name][str(t)] = s
            m = {v: s[v]["median_ms"] * 1e3 for v in s}
            lines.append(f"| {name} | {t} | {m['dense']:.0f} | {m['custom']:.0f} | {m['fused']:.0f} "
                         f"({s['fused']['min_ms'] * 1e3:.0f}-{s['fused']['max_ms'] * 1e3:.0f}) | "
                         f"{m['dense'] / m['fused']:.2f}x | {m['custom'] / m['fused']:.2f}x |")
    lines.append(f"\npool jobs while timing: {jobs[0]} parallel, {jobs[1]} stalled, {jobs[2]} run on the caller "
                 "after a stall (2-thread figures of a file include such serial invokes)")
    out["markdown"] = "\n".join(lines)
    print(out["markdown"])
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"fused_blocks{args.tag}.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"{time.time() - t0:.0f} s")
