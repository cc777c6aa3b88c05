"""Where the executed instructions of one arm_proxy job went, block by block, in our library.

`benchmarks/arm_proxy.py --keep` leaves its work directory: per job and CPU a `.tbprof` (one line
per translated block: guest address, instructions, executions) and a `.bases.json` (where each
library was loaded).  This prints, for the functions of our aarch64 library, the hottest blocks
with their share of the job and their disassembly, so a change to a kernel can be aimed at the
instructions that really run (a proxy: executed instructions under qemu, not cycles).

Example (after `arm_proxy.py --keep --only mobilenetv2_int8_block1x4_tfcompress_fused ...`):

    python benchmarks/arm_blocks.py ~/.cache/tfcompress/arm_proxy/arm_proxy_XXXX \\
        mobilenetv2_int8_block1x4_tfcompress_fused_cortex-a76 \\
        ~/.cache/tfcompress/arm_proxy/libtfc_sparse_ops_aarch64_gcc_XXXX.so --top 12
"""
import argparse
import bisect
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from arm_proxy import load_symbols  # noqa: E402


def disassembly(lib, lo, hi):
    out = subprocess.run(["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", f"--start-address={lo:#x}",
                          f"--stop-address={hi:#x}", lib], capture_output=True, text=True, check=True).stdout
    return [l for l in out.splitlines() if l.startswith(" ") and ":" in l]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("work", help="work directory kept by arm_proxy.py --keep")
    ap.add_argument("job", help="<job name>_<cpu>, e.g. mobilenetv2_int8_block1x4_tfcompress_fused_cortex-a76")
    ap.add_argument("lib", help="our aarch64 library the job loaded (arm_proxy.py prints it)")
    ap.add_argument("--top", type=int, default=10, help="blocks to disassemble")
    ap.add_argument("--function", default="", help="only blocks of functions whose name contains this")
    args = ap.parse_args(argv)
    with open(os.path.join(args.work, args.job + ".bases.json")) as f:
        base = json.load(f)[os.path.basename(args.lib)]
    syms = load_symbols(args.lib)
    los = [s[0] for s in syms]
    total, blocks, per_fn = 0, {}, {}
    with open(os.path.join(args.work, args.job + ".tbprof")) as f:
        for line in f:
            a, e, k = line.split()  # address, instructions of the block, executions
            a, w = int(a, 16) - base, int(k) * int(e)
            total += w
            i = bisect.bisect_right(los, a) - 1
            if a < 0 or i < 0 or a >= syms[i][0] + syms[i][1]:
                continue
            name = syms[i][2]
            per_fn[name] = per_fn.get(name, 0) + w
            if args.function in name:
                b = blocks.setdefault(a, [name, 0, int(e), 0])
                b[1] += int(k)
                b[3] += w
    print(f"{args.job}: {total / 1e6:.3f} M instructions in the profiled region")
    for name, w in sorted(per_fn.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {w / 1e6:8.3f} M  {100 * w / total:5.1f} %  {name}")
    for a, (name, k, e, w) in sorted(blocks.items(), key=lambda kv: -kv[1][3])[:args.top]:
        print(f"\n{name}+{a - syms[bisect.bisect_right(los, a) - 1][0]:#x}: {w / 1e6:.3f} M "
              f"({100 * w / total:.1f} %), {k} executions x {e} instructions")
        for l in disassembly(args.lib, a, a + 4 * e):
            print("   ", l.strip())


if __name__ == "__main__":
    main()
