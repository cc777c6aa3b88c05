"""Runs TFLite models inside an aarch64 Python under qemu-aarch64 (with the insn_count plugin).

Started by benchmarks/arm_proxy.py, not by hand:
    qemu-aarch64 -L SYSROOT -plugin insn_count.so,out=COUNTS SYSROOT/usr/bin/python3.11 guest_run.py JOB.json

JOB.json: {"model": path, "input_shape": [...], "input_dtype": "float32"|"int8",
           "delegate": path or null, "invokes": n, "ranges": [[cat, lib_basename, lo, hi], ...],
           "mark": base id, "output": path.npy, "seed": int}
Marks (system call 0x7f1c): base+0 before / base+1 after `invokes` timed invokes (one warm-up
invoke first, so XNNPACK's lazy setup and the delegate's Prepare are outside the region).
"""
import ctypes
import json
import os
import sys

import numpy as np

MARK, RANGE = 0x7F1C, 0x7F1D
_libc = ctypes.CDLL(None)
_libc.syscall.restype = ctypes.c_long
_libc.syscall.argtypes = [ctypes.c_long, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def mark(i):
    _libc.syscall(MARK, i, 0, 0)


def load_base(basename):
    """Load address of a mapped shared object (its mapping at file offset 0)."""
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and os.path.basename(parts[5]) == basename and int(parts[2], 16) == 0:
                return int(parts[0].split("-")[0], 16)
    return None


def main():
    job = json.load(open(sys.argv[1]))
    from ai_edge_litert import interpreter as tfl

    delegates = []
    if job.get("delegate"):
        delegates = [tfl.load_delegate(job["delegate"])]
    # XNNPACK lives in libpywrap_litert_common.so (loaded by the import above); ranges are
    # registered before any interpreter runs, so the kernels' blocks are classified.
    bases, missing = {}, set()
    for cat, lib, lo, hi in job.get("ranges", []):
        if lib not in bases:
            bases[lib] = load_base(lib)
        if bases[lib] is None:
            missing.add(lib)
            continue
        _libc.syscall(RANGE, cat, bases[lib] + lo, bases[lib] + hi)
    interp = tfl.Interpreter(model_path=job["model"], experimental_delegates=delegates, num_threads=1)
    inp = interp.get_input_details()[0]
    shape = job["input_shape"]
    if list(inp["shape"]) != list(shape):
        interp.resize_tensor_input(inp["index"], shape)
    interp.allocate_tensors()
    rng = np.random.default_rng(job.get("seed", 0))
    if job["input_dtype"] == "int8":
        x = rng.integers(-128, 128, size=shape).astype(np.int8)
    else:
        x = rng.random(shape).astype(np.float32)
    if job.get("input_npy"):
        x = np.load(job["input_npy"]).astype(x.dtype).reshape(shape)
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    base = job["mark"]
    mark(base)
    for _ in range(job["invokes"]):
        interp.invoke()
    mark(base + 1)
    out = interp.get_output_details()[0]
    np.save(job["output"], interp.get_tensor(out["index"]))
    for lib in job.get("report_bases", []):
        bases.setdefault(lib, load_base(lib))
    print(json.dumps({"ok": True, "missing_libs": sorted(missing), "bases": {k: v for k, v in bases.items() if v}}))


if __name__ == "__main__":
    main()
