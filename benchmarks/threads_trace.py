"""Where the 2-thread time of the sparse MobileNetV2 files goes: per tfcompress op, 1 vs 2 threads.

The thread pool records every job when `TFC_POOL_TRACE=1` is set before the interpreters are made
(tflite_export/tfc_threads.h, `tfc_pool_trace`; off it costs one branch per job): when the job was
published, when a worker first claimed a task (the wake-up latency), when the caller found no task
left (its own share), when all tasks were done (the tail), how many tasks the workers ran, and the
time spent inside the tasks summed over the threads (thread-time: at 2 threads it should be about the
op's 1-thread time; more means each thread ran slower while both ran). Serial runs of the ops
(1 thread) are recorded too. From these, per invoke: the time inside the tfcompress ops and the rest
(XNNPACK's partitions and the interpreter), at 1 and 2 threads. Per (file, threads) also the CPU time
and the run-queue wait (runnable, not running) per invoke of the calling thread, the tfcompress pool
workers and the other threads (XNNPACK's workers), from /proc/self/task/*/schedstat (Linux): a
worker waiting in the run queue shares its CPU with another runnable thread. The caller's CPU time
includes this script's per-invoke reading of the trace.

Files as in `sparse_threads.py` (MobileNetV2 224, every 1x1 80 % zero; float32 Block((8, 1)) one
TFC_SPARSE_CONV_1X1 per 1x1; int8 Block((1, 4)) fused blocks and one node per layer), each at 1
and 2 threads, plus `--variants` (name=ENV=V+ENV=V) at 2 threads; blocks of 20 invokes in
shuffled order, medians over invokes.

    python benchmarks/threads_trace.py --invokes 600
    python benchmarks/threads_trace.py --variants before=TFC_POOL_YIELD=1+TFCOMPRESS_FUSED_PHASED=0

Writes benchmarks/results/threads_trace.json (or --out).
"""

import argparse
import ctypes
import json
import os
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ["TFC_POOL_TRACE"] = "1"  # read when each interpreter's pool is created

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import sparse_threads  # noqa: E402

from tfcompress.export import load_interpreter  # noqa: E402
from tfcompress.export.sparse_native import library_path  # noqa: E402


class TraceRec(ctypes.Structure):
    """TfcTraceRec of tfc_threads.h."""

    _fields_ = [("start", ctypes.c_longlong), ("fn", ctypes.c_void_p), ("tag", ctypes.c_void_p),
                ("n_tasks", ctypes.c_int), ("worker_tasks", ctypes.c_int), ("sleepers", ctypes.c_int),
                ("busy", ctypes.c_int), ("first", ctypes.c_longlong), ("caller_done", ctypes.c_longlong),
                ("end", ctypes.c_longlong)]


def _interpreter(tfl, threads, env):
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    it = load_interpreter(tfl, num_threads=threads)
    inp = it.get_input_details()[0]
    x = np.random.default_rng(0).random((1, 224, 224, 3)).astype("float32")
    if inp["dtype"] == np.int8:
        scale, zero = inp["quantization"]
        x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    it.set_tensor(inp["index"], x)
    for _ in range(10):
        it.invoke()  # every Prepare (XNNPACK's lazy one too) saw the settings
    for k, v in old.items():
        if v is None:
            os.environ.pop(k)
        else:
            os.environ[k] = v
    return it


def _thread_times():
    """{tid: (name, ns on a CPU, ns runnable but waiting for one)} of this process' threads, from
    /proc/self/task/*/schedstat (Linux; {} elsewhere)."""
    out = {}
    for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ():
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                on_cpu, waiting = (int(v) for v in f.read().split()[:2])
        except (OSError, ValueError):
            continue
        out[int(tid)] = (name, on_cpu, waiting)
    return out


def _add_thread_deltas(acc, before, after, caller):
    """Adds the CPU and run-queue time each kind of thread used between two `_thread_times`:
    the calling thread, the tfcompress pool workers (tfc-pool-*), the others (XNNPACK's workers)."""
    for tid, (name, cpu, wait) in after.items():
        if tid not in before:
            continue
        kind = "caller" if tid == caller else "tfc_workers" if name.startswith("tfc-pool") else "other_threads"
        acc[kind + "_cpu"] = acc.get(kind + "_cpu", 0) + cpu - before[tid][1]
        acc[kind + "_runqueue"] = acc.get(kind + "_runqueue", 0) + wait - before[tid][2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--invokes", type=int, default=600, help="invokes per (file, threads)")
    ap.add_argument("--variants", default="", help="comma-separated name=ENV=V+ENV=V, run at 2 threads")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "threads_trace.json"))
    args = ap.parse_args()
    lib = ctypes.CDLL(library_path())
    buf = (TraceRec * 32768)()
    files, _ = sparse_threads.build_files(["float32", "int8"], 0.8, np.random.default_rng(0))
    variants = {}
    for v in filter(None, args.variants.split(",")):
        name, spec = v.split("=", 1)
        variants[name] = dict(kv.split("=", 1) for kv in spec.split("+"))
    specs = {}
    for dtype, pair in files.items():
        for kind, tfl in pair.items():
            if kind == "dense":
                continue
            for t in (1, 2):
                specs[(dtype, kind, t, "")] = (tfl, t, {})
            for name, env in variants.items():
                specs[(dtype, kind, 2, name)] = (tfl, 2, env)
    its = {k: _interpreter(*v) for k, v in specs.items()}
    data = {k: [] for k in its}
    keys = list(its)
    rng = np.random.default_rng(1)
    lib.tfc_pool_trace(buf, 32768)
    load_before = os.getloadavg()
    caller = threading.get_native_id()
    cpu = {k: {} for k in keys}  # per (file, threads): ns of CPU / run-queue time by kind of thread
    for _ in range(max(1, args.invokes // 20)):
        for i in rng.permutation(len(keys)):
            k = keys[i]
            t_before = _thread_times()
            for _ in range(20):
                a = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
                its[k].invoke()
                b = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
                m = lib.tfc_pool_trace(buf, 32768)
                ops = {}  # per node (the job's tag), in execution order; phased ops have 2-3 jobs
                for r in (buf[j] for j in range(m)):
                    o = ops.setdefault(r.tag, [0, 0, 0, 0, 0, 0])
                    o[0] += r.end
                    o[1] += max(0, r.end - r.caller_done)          # tail: the caller waited
                    o[2] = max(o[2], r.first if r.first >= 0 else -1)  # wake-up of the first job
                    o[3] += r.worker_tasks
                    o[4] += abs(r.n_tasks)
                    o[5] += r.busy                                      # time inside its tasks, all threads
                data[k].append((b - a, list(ops.values())))
            _add_thread_deltas(cpu[k], t_before, _thread_times(), caller)
    out = {"setup": "MobileNetV2 224, 1x1s 80 % zero; per (file, threads) one interpreter; blocks of 20 invokes "
                    "in shuffled order; tfcompress op times from the pool's job trace (TFC_POOL_TRACE=1)",
           "machine": {"cores": os.cpu_count(), "load_avg_before": load_before, "load_avg_after": os.getloadavg()},
           "results": {}}
    try:
        with open("/proc/self/autogroup") as f:
            out["machine"]["autogroup"] = f.read().strip()
    except OSError:
        pass
    for k in keys:
        inv = np.array([d[0] for d in data[k]]) / 1e3
        n_ops = max(len(d[1]) for d in data[k])
        full = [d for d in data[k] if len(d[1]) == n_ops]
        ops = np.array([d[1] for d in full], dtype=np.float64)  # [invoke][op][field]
        ours = ops[:, :, 0].sum(1) / 1e3
        inv_full = np.array([d[0] for d in full]) / 1e3
        name = "/".join(str(x) for x in k if x != "")
        out["results"][name] = {
            "invoke_us_median": float(np.median(inv)), "invoke_us_p10_p90": [float(np.percentile(inv, 10)),
                                                                           float(np.percentile(inv, 90))],
            "tfcompress_ops_us_median": float(np.median(ours)),
            "rest_us_median": float(np.median(inv_full - ours)),  # XNNPACK's partitions + the interpreter
            "complete_traces": len(full),
            # per invoke (means): CPU time and time runnable but not running, by kind of thread
            "threads_us_per_invoke": {kk: v / 1e3 / len(inv) for kk, v in sorted(cpu[k].items())},
            "per_op": [{"us": float(np.median(ops[:, j, 0]) / 1e3),
                        "tail_us_mean": float(np.mean(ops[:, j, 1]) / 1e3),
                        "first_worker_claim_us_median": float(np.median(ops[:, j, 2]) / 1e3),
                        "worker_task_share": float(ops[:, j, 3].sum() / max(1.0, ops[:, j, 4].sum())),
                        "thread_time_us_median": float(np.median(ops[:, j, 5]) / 1e3)}
                       for j in range(n_ops)]}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}; {out['machine'].get('autogroup')}")
    for name, r in out["results"].items():
        th = r["threads_us_per_invoke"]
        print(f"{name:>36}: invoke {r['invoke_us_median']:7.1f} us | tfcompress ops {r['tfcompress_ops_us_median']:7.1f} us "
              f"| rest {r['rest_us_median']:6.1f} us | per invoke, CPU (run-queue wait): caller "
              f"{th.get('caller_cpu', 0):6.0f} ({th.get('caller_runqueue', 0):3.0f}), tfc workers "
              f"{th.get('tfc_workers_cpu', 0):6.0f} ({th.get('tfc_workers_runqueue', 0):3.0f}), other threads "
              f"{th.get('other_threads_cpu', 0):6.0f} ({th.get('other_threads_runqueue', 0):3.0f}) us")
    for dtype, pair in files.items():
        for kind in pair:
            if kind == "dense":
                continue
            one, two = out["results"][f"{dtype}/{kind}/1"], out["results"][f"{dtype}/{kind}/2"]
            if len(one["per_op"]) != len(two["per_op"]):
                continue
            print(f"{dtype}/{kind}: op  1t us  2t us  speed-up  first worker claim  tail  worker share  "
                  f"2t thread-time  / 1t")
            for j, (a, b) in enumerate(zip(one["per_op"], two["per_op"])):
                print(f"  {j:2d} {a['us']:7.1f} {b['us']:7.1f}  {a['us'] / b['us']:5.2f}x  {b['first_worker_claim_us_median']:7.1f}"
                      f"  {b['tail_us_mean']:5.1f}  {b['worker_task_share']:4.0%}  {b['thread_time_us_median']:7.1f}"
                      f"  {b['thread_time_us_median'] / a['us']:5.2f}")
            busy1 = sum(o["us"] for o in one["per_op"])
            busy2 = sum(o["thread_time_us_median"] for o in two["per_op"])
            print(f"{dtype}/{kind}: time inside the tasks at 2 threads (both threads) {busy2:.0f} us vs the ops' "
                  f"{busy1:.0f} us at 1 thread: x{busy2 / busy1:.2f}")


if __name__ == "__main__":
    main()
