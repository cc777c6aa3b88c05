"""Per-layer executed instructions of our aarch64 kernels under qemu (no TFLite, no Python guest).

Builds tflite_export/test/tfc_test_driver.c for aarch64, writes the MobileNetV2 1x1-conv cases
(``make_cases.py --mobilenet``: the 34 layers at 80 % unstructured zeros, float32 and int8) or the
FC 2048 cases (``--bench``), runs them under qemu-aarch64 with the counting plugin
(benchmarks/arm/insn_count.c) and prints the instructions of each layer's first Invoke (the
driver brackets it with TFC_MARK system calls). Every case is also checked against numpy.

    python benchmarks/arm/layer_counts.py --cpu cortex-a76 --set mobilenet
    python benchmarks/arm/layer_counts.py --cpu cortex-a53 --set fc --cc clang
    python benchmarks/arm/layer_counts.py --cpu cortex-a76 --pattern 1x4   # int8, 1x4 blocks

Not a test; a tool for kernel work (the whole-model figures come from benchmarks/arm_proxy.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SRC = os.path.join(REPO, "tflite_export")
CC = {"gcc": ["aarch64-linux-gnu-gcc"], "clang": ["clang-14", "--target=aarch64-linux-gnu", "-fuse-ld=lld"]}


def build(work, cc):
    exe = os.path.join(work, f"drv_{cc}")
    srcs = sorted(os.path.join(SRC, f) for f in os.listdir(SRC) if f.endswith(".c"))
    subprocess.run(CC[cc] + ["-O3", "-std=c11", "-ffp-contract=fast", "-static", "-I", SRC] + srcs
                   + [os.path.join(SRC, "test", "tfc_test_driver.c"), "-lm", "-o", exe], check=True)
    plugin = os.path.join(work, "insn_count.so")
    if not os.path.exists(plugin):
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", plugin, os.path.join(HERE, "insn_count.c")],
                       check=True)
    return exe, plugin


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu", default="cortex-a76")
    ap.add_argument("--cc", default="gcc", choices=sorted(CC))
    ap.add_argument("--set", default="mobilenet", choices=("mobilenet", "fc"))
    ap.add_argument("--pattern", default="unstructured", choices=("unstructured", "1x4"),
                    help="MobileNetV2 1x1 zeros: unstructured (float32 + int8) or 1x4 blocks (int8, B = 4)")
    ap.add_argument("--cap", default=None, help="TFCOMPRESS_ISA_CAP")
    ap.add_argument("--json", default="", help="write {case: instructions} here")
    a = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="tfc_layers_")
    exe, plugin = build(work, a.cc)
    sys.path.insert(0, os.path.join(SRC, "test"))
    import make_cases  # noqa: E402

    cases = os.path.join(work, "cases.bin")
    names = make_cases.write_cases(cases, seed=7, bench=a.set == "fc", mobilenet=a.set == "mobilenet",
                                   pattern=a.pattern)
    counts = os.path.join(work, "counts.txt")
    env = dict(os.environ, TFC_MARK="1")
    env.pop("TFCOMPRESS_ISA_CAP", None)
    if a.cap is not None:
        env["TFCOMPRESS_ISA_CAP"] = a.cap
    r = subprocess.run(["qemu-aarch64", "-cpu", a.cpu, "-plugin", f"{plugin},out={counts}", exe, cases],
                       capture_output=True, text=True, env=env)
    kernels = {}
    for ln in r.stdout.splitlines():
        m = re.match(r"(PASS|FAIL) (\S+)(?: max_err=\S+ kernel=(\S+))?", ln)
        if m:
            kernels[m.group(2)] = m.group(3) if m.group(1) == "PASS" else "FAIL " + ln
    marks = {}
    with open(counts) as f:
        for ln in f:
            p = ln.split()
            if p[0] == "mark":
                marks[int(p[1])] = int(p[2])
    res, tot = {}, {}
    for i, name in enumerate(names):
        n = marks.get(2 * i + 1, 0) - marks.get(2 * i, 0)
        res[name] = n
        key = "/".join(name.split("/")[:2])
        tot[key] = tot.get(key, 0) + n
        print(f"{name:55s} {n / 1e6:9.3f} M  {kernels.get(name)}")
    for k, v in tot.items():
        print(f"TOTAL {k:40s} {v / 1e6:9.3f} M")
    print(r.stdout.splitlines()[-1] if r.stdout else r.stderr[-2000:])
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"cpu": a.cpu, "cc": a.cc, "per_case": res, "totals": tot, "kernels": kernels}, f, indent=1)
    return 0 if r.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
