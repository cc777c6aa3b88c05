"""A/B of fused-op variants: the fused MobileNetV2 file with environment settings vs as is.

MobileNetV2 224, 1x1 convs 80 % zero in `Block((1, 4))`, post-training int8 (the files of
`sparse_threads.py`): the dense int8 file, the fused file (17 TFC_SPARSE_INVERTED_RESIDUAL blocks)
as is, and the fused file once per variant, each variant's environment set while its interpreter is
made (the op reads it in Prepare), at 1 and 2 threads. All interpreters must give the dense file's
output (`--dtype float32`: the float32 files, Block((8, 1)); outputs within 1e-4 of the dense
file's magnitude). Interleaved rounds (every interpreter once per round in shuffled order, 20 invokes,
median); per round the ratios dense / file and fused / variant, reported as median and p10-p90, and
per file the thread pool's jobs over the timed invokes: run in parallel, of them stalled (the caller
waited for a descheduled worker), and backed off (run on the caller after a stall).

    python benchmarks/fused_variants.py --variants rows=TFCOMPRESS_FUSED_PHASED:0 --rounds 40

`--export-variants` (same syntax) re-exports the fused file from the dense one with the environment
set during `rewrite_tflite` instead (export-time switches), e.g. the float32 stem left to XNNPACK:

    python benchmarks/fused_variants.py --dtype float32 --export-variants xnn_stem=TFCOMPRESS_FUSE_STEM:0

Writes benchmarks/results/fused_variants<tag>.json. x86 figures, comparable only within one run.
"""

import argparse
import contextlib
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import sparse_threads  # noqa: E402
from mobile_pipeline import round_ratios  # noqa: E402

from tfcompress.export import load_interpreter  # noqa: E402
from tfcompress.export.sparse import rewrite_tflite  # noqa: E402


@contextlib.contextmanager
def _env(env):
    """The environment `env` set inside the block, restored after it."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _interpreter(tfl, threads, env, dtype="int8"):
    with _env(env):
        it = load_interpreter(tfl, num_threads=threads)
    d = it.get_input_details()[0]
    rng = np.random.default_rng(0)
    x = rng.random(d["shape"]).astype(np.float32) if dtype == "float32" else rng.integers(-128, 128, d["shape"])
    it.set_tensor(d["index"], x.astype(d["dtype"]))
    it.invoke()
    return it


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="", help="comma-separated name=ENV:V+ENV:V")
    ap.add_argument("--export-variants", default="", help="comma-separated name=ENV:V+ENV:V set while exporting")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--tag", default="", help="suffix of results/fused_variants<tag>.json")
    ap.add_argument("--dtype", choices=("int8", "float32"), default="int8")
    args = ap.parse_args()
    def specs(text):
        return {name: dict(kv.split(":", 1) for kv in spec.split("+"))
                for name, spec in (v.split("=", 1) for v in filter(None, text.split(",")))}

    variants, exported = specs(args.variants), specs(args.export_variants)
    files, _ = sparse_threads.build_files([args.dtype], 0.8, np.random.default_rng(0))
    pair = files[args.dtype]
    tfl = {name: pair["sparse"] for name in variants}
    for name, env in exported.items():
        with _env(env):
            tfl[name] = rewrite_tflite(pair["dense"], "custom")
        variants[name] = {}
    its = {}
    for t in (1, 2):
        its[("dense", t)] = _interpreter(pair["dense"], t, {}, args.dtype)
        its[("fused", t)] = _interpreter(pair["sparse"], t, {}, args.dtype)
        for name, env in variants.items():
            its[(name, t)] = _interpreter(tfl[name], t, env, args.dtype)
    want = its[("dense", 1)].get_tensor(its[("dense", 1)].get_output_details()[0]["index"])
    for k, it in its.items():
        got = it.get_tensor(it.get_output_details()[0]["index"])
        if args.dtype == "float32":
            assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max()), f"{k} differs from the dense file"
        else:
            assert np.array_equal(got, want), f"{k} differs from the dense int8 file"
    times = {k: [] for k in its}
    keys, rng = list(its), np.random.default_rng(1)
    load_before = os.getloadavg()
    jobs = {k: [0, 0, 0] for k in its}  # the pool's [parallel, stalled, backed-off] jobs per interpreter
    for _ in range(args.rounds):
        for i in rng.permutation(len(keys)):
            it, ts = its[keys[i]], []
            before = sparse_threads._pool_stats()
            for _ in range(20):
                a = time.perf_counter_ns()
                it.invoke()
                ts.append(time.perf_counter_ns() - a)
            times[keys[i]].append(float(np.median(ts)) / 1e3)
            jobs[keys[i]] = [j + b - a for j, a, b in zip(jobs[keys[i]], before, sparse_threads._pool_stats())]
    out = {"machine": {"cores": os.cpu_count(), "load_avg_before": load_before, "load_avg_after": os.getloadavg()},
           "dtype": args.dtype, "variants": variants, "export_variants": exported, "rounds": args.rounds, "us_per_round": {f"{k[0]}/{k[1]}": v for k, v in times.items()},
           "pool_jobs_parallel_stalled_backedoff": {f"{k[0]}/{k[1]}": v for k, v in jobs.items() if k[0] != "dense"},
           "summary": {}}

    for t in (1, 2):
        dense = np.array(times[("dense", t)])
        for name in ["fused"] + list(variants):
            x = np.array(times[(name, t)])
            s = {"median_us": float(np.median(x)), "vs_dense": round_ratios(dense, x), "pool_jobs": jobs[(name, t)]}
            if name != "fused":
                s["fused_over_variant"] = round_ratios(times[("fused", t)], x)
            out["summary"][f"{name}/{t}"] = s
            extra = (f"  fused / {name} {s['fused_over_variant']['median']:.3f} "
                     f"({s['fused_over_variant']['p10']:.3f}-{s['fused_over_variant']['p90']:.3f})"
                     if name != "fused" else "")
            print(f"{t} thread(s) {name:>10}: {s['median_us']:8.1f} us, dense {np.median(dense):8.1f} us, "
                  f"{s['vs_dense']['median']:.3f}x dense ({s['vs_dense']['p10']:.3f}-{s['vs_dense']['p90']:.3f}){extra}"
                  + (f"; pool jobs {jobs[(name, t)][0]} parallel, {jobs[(name, t)][1]} stalled, "
                     f"{jobs[(name, t)][2]} backed off" if t > 1 else ""))
    path = os.path.join(HERE, "results", f"fused_variants{args.tag}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}; load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
