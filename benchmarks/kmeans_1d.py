"""1-D k-means of clustering: scikit-learn KMeans + sorted-search assignment vs the former hand-written
numpy k-means (N x k distance array per iteration), on 1 M normal weights, k = 16 and 64.

Each variant runs in its own subprocess (peak memory = the child's max RSS minus its RSS after the
imports), rounds interleaved; prints the median and spread of the time, peak memory, and the
clustering error (sum of squared distances to the assigned centroid). Also the assignment step
alone: `argmin |x - c|` over an N x k array vs `np.searchsorted` on the centroid midpoints.

    python benchmarks/kmeans_1d.py [--rounds 3] [--n 1000000]

Writes benchmarks/results/kmeans_1d.json.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def handwritten_kmeans_1d(values, n, seed=0, iterations=30):
    """The former tfcompress/clustering/_kmeans.py (kmeans++ seeding + Lloyd), the baseline."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype="float64").ravel()
    centroids = [values[rng.integers(values.size)]]
    dist = (values - centroids[0]) ** 2
    for _ in range(1, n):
        total = dist.sum()
        pick = rng.integers(values.size) if total <= 0 else rng.choice(values.size, p=dist / total)
        centroids.append(values[pick])
        dist = np.minimum(dist, (values - values[pick]) ** 2)
    centroids = np.sort(np.asarray(centroids))

    def assign(c):
        return np.argmin(np.abs(values[:, None] - c[None, :]), axis=1)

    for _ in range(iterations):
        idx = assign(centroids)
        sums = np.bincount(idx, weights=values, minlength=n)
        counts = np.bincount(idx, minlength=n)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(new, centroids, rtol=0, atol=1e-10):
            break
        centroids = new
    return centroids, assign(centroids)


def _child(variant, n, k):
    values = np.random.default_rng(0).normal(0, 0.05, n)
    if variant == "sklearn":
        from tfcompress.clustering._kmeans import kmeans_1d
        import sklearn.cluster  # noqa: F401  (import cost outside the measurement)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    if variant == "sklearn":
        c, idx = kmeans_1d(values, k)
    else:
        c, idx = handwritten_kmeans_1d(values, k)
    seconds = time.perf_counter() - t
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    sse = float(np.sum((values - c[idx]) ** 2))
    # the assignment step alone, on the same centroids
    from tfcompress.clustering._kmeans import assign
    t = time.perf_counter()
    a = np.argmin(np.abs(values[:, None] - c[None, :]), axis=1)
    t_argmin = time.perf_counter() - t
    t = time.perf_counter()
    b = assign(values, c)
    t_search = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "sse": sse, "same_labels": bool((a == b).all()),
                      "assign_argmin_s": t_argmin, "assign_searchsorted_s": t_search}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    results = {}
    for k in (16, 64):
        runs = {"handwritten": [], "sklearn": []}
        for _ in range(args.rounds):
            for variant in runs:
                out = subprocess.run([sys.executable, __file__, "--child", variant, str(args.n), str(k)],
                                     capture_output=True, text=True, env=env, check=True).stdout
                runs[variant].append(json.loads(out.strip().splitlines()[-1]))
        results[k] = runs
        for variant, rs in runs.items():
            ts = [r["seconds"] for r in rs]
            print(f"k={k:3d} {variant:12s} time median {statistics.median(ts):6.2f} s "
                  f"(min {min(ts):.2f}, max {max(ts):.2f})  peak {statistics.median(r['peak_mib'] for r in rs):6.0f} MiB"
                  f"  SSE {rs[0]['sse']:.4f}")
        a = [r["assign_argmin_s"] for rs in runs.values() for r in rs]
        b = [r["assign_searchsorted_s"] for rs in runs.values() for r in rs]
        same = all(r["same_labels"] for rs in runs.values() for r in rs)
        print(f"k={k:3d} assignment: argmin N x k {statistics.median(a):.3f} s, searchsorted "
              f"{statistics.median(b):.3f} s (x{statistics.median(a) / statistics.median(b):.0f}), same labels: {same}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "kmeans_1d.json"), "w") as f:
        json.dump({"n": args.n, "rounds": args.rounds, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
