"""ARM proxy benchmark: executed aarch64 instructions under qemu-aarch64, no phone needed.

The same TFLite files (made here on x86 with the real converter and tfcompress' export) run in an
aarch64 CPython (Debian arm64 packages) with the aarch64 `ai-edge-litert` wheel under
`qemu-aarch64`; a TCG plugin (benchmarks/arm/insn_count.c) counts the guest instructions executed
per `invoke()` and attributes them to code ranges (XNNPACK micro-kernels by symbol, our library).
Variants, each for float32 and int8, 1 interpreter thread:

* XNNPACK dense (the stock interpreter; XNNPACK applied by default),
* tfcompress sparse (TFC_* custom ops run by our library, cross-compiled for aarch64 from the C
  sources of `--tree`, loaded with `load_delegate` as tfcompress/export/sparse_native.py does),
* XNNPACK's own sparse inference (float32; Elsen et al. "Fast Sparse ConvNets"): the converter's
  EXPERIMENTAL_SPARSITY stores the 1x1-conv weights sparse (DENSIFY); the run checks that
  xnn_f32_spmm kernels really executed.

Models: FC 2048x2048 float32 90 % unstructured zeros at 1 and 64 rows; MobileNetV2 224 (a faithful
MobileNetV2 whose 3x3 convs use explicit symmetric zero padding, so it meets XNNPACK's sparse rules:
3x3 stride-2 stem with padding 1 and 3 input channels, only supported ops, spatial MEAN at the end)
with 80 % of every 1x1-conv's weights zero (tfcompress.pruning.Unstructured), BatchNorm statistics
re-estimated; for int8 also the same model pruned with tfcompress.pruning.Block((1, 4)) (group
mobilenetv2_int8_block1x4: the int8 pattern tflite_export/README.md recommends), each file (float32
and int8) as one TFC_SPARSE_CONV_1X1 node per 1x1 (tfcompress_custom), as fused inverted-residual blocks
(tfcompress_fused, TFC_SPARSE_INVERTED_RESIDUAL) and as "auto" (cost model only). Plus llvm-mca-14 (-mcpu=cortex-a76) cycle estimates of the innermost loops of our
kernels and of XNNPACK's corresponding micro-kernels (disassembled from the aarch64 wheel).

    python benchmarks/arm_proxy.py                          # kernels of this tree
    python benchmarks/arm_proxy.py --tree /work/wt/neon     # kernels of another checkout
    python benchmarks/arm_proxy.py --ref neon               # a committed branch (git archive)
    python benchmarks/arm_proxy.py --quick                  # FC only, -cpu max only
    python benchmarks/arm_proxy.py --only mobilenetv2_int8 --out benchmarks/results/arm_proxy_int8.json

Needs (Debian bookworm): qemu-user, gcc-aarch64-linux-gnu, clang-14, llvm-14 (llvm-mca), binutils
for aarch64, gcc, network for the first run (benchmarks/arm/setup_sysroot.sh fills a cache).
Not part of the test suite / CI. Writes benchmarks/results/arm_proxy.json (or --out).

What the proxy cannot see: caches and memory bandwidth (a weight byte read from DRAM costs the
same as one in L1 here), out-of-order overlap and latency chains (qemu counts instructions, not
cycles; llvm-mca models one core's pipeline for one loop with all loads hitting L1),
big.LITTLE scheduling and frequencies, thermal throttling, multi-threading.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ARM = os.path.join(HERE, "arm")
MARK_SYSCALL = 0x7F1C

# Code categories (index = plugin counter); the first match wins.
CATEGORIES = [
    ("tfcompress", None),  # all code of our library
    ("xnn_f32_spmm", r"^xnn_f32_spmm"),
    ("kleidiai", r"^kai_"),  # Arm KleidiAI micro-kernels inside XNNPACK (SME ones on -cpu max)
    ("xnn_chw", r"^xnn_f32_(conv_hwc2chw|dwconv2d_chw|gavgpool_cw)"),
    ("xnn_f32_gemm", r"^xnn_f32_(gemm|igemm|ppmm|gemminc)"),
    ("xnn_int8_gemm", r"^xnn_(qs8|qd8|qu8|qc8|qp8|qs8_qc8w)\w*(gemm|igemm)"),
    ("xnn_dwconv", r"^xnn_\w*dwconv"),
    ("xnn_other", r"^xnn_"),
    ("litert_other", r""),  # the rest of libpywrap_litert_common.so (TFLite runtime, kernels)
]
XNN_LIB = "libpywrap_litert_common.so"


def log(*a):
    print(*a, flush=True)


def run(cmd, **kw):
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


# ----------------------------------------------------------------------------- setup

def ensure_sysroot(cache):
    root = os.path.join(cache, "sysroot")
    env = dict(os.environ, PIP=f"{sys.executable} -m pip")
    run(["bash", os.path.join(ARM, "setup_sysroot.sh"), root], env=env)
    return os.path.join(root, "root")


CPU_MODELS = {  # qemu -cpu -> what the guest's /proc/cpuinfo says (MIDR fields, features)
    "cortex-a76": ("0x41", "0x4", "0xd0b", "1", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
                   "asimdhp cpuid asimdrdm lrcpc dcpop asimddp"),  # ARMv8.2 + dotprod, no SVE/SME
    "max": ("0x41", "0x4", "0xd0b", "1", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp "
            "cpuid asimdrdm lrcpc dcpop asimddp"),  # MIDR of a Cortex-A76, but qemu's max also has SVE/SME
    "cortex-a53": ("0x41", "0x0", "0xd03", "4", "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"),
}


def cpu_view(cache, sysroot, cpu):
    """A per-cpu view of the sysroot (symlinks) with an aarch64 /proc/cpuinfo.

    qemu-user 7.2 passes the host's (x86) /proc/cpuinfo through; XNNPACK's cpuinfo library then
    finds no ARM processor and crashes (NULL dereference) when the interpreter is created. qemu
    opens absolute paths under the -L prefix first, so a prefix holding proc/cpuinfo fixes it and
    also tells XNNPACK which micro-architecture to tune for (its kernel choice depends on it).
    """
    impl, var, part, rev, feats = CPU_MODELS[cpu]
    view = os.path.join(cache, f"view_{cpu}")
    os.makedirs(os.path.join(view, "proc"), exist_ok=True)
    for e in os.listdir(sysroot):
        link = os.path.join(view, e)
        if e != "proc" and not os.path.lexists(link):
            os.symlink(os.path.join(sysroot, e), link)
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            last = int(f.read().strip().split(",")[-1].split("-")[-1])
    except (OSError, ValueError):
        last = (os.cpu_count() or 1) - 1
    with open(os.path.join(view, "proc", "cpuinfo"), "w") as f:
        for i in range(last + 1):
            f.write(f"processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: {feats}\nCPU implementer\t: {impl}\n"
                    f"CPU architecture: 8\nCPU variant\t: {var}\nCPU part\t: {part}\nCPU revision\t: {rev}\n\n")
    return view


def build_plugin(cache):
    out = os.path.join(cache, "insn_count.so")
    tmp = f"{out}.{os.getpid()}.tmp"
    run(["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-o", tmp, os.path.join(ARM, "insn_count.c")])
    os.replace(tmp, out)
    return out


def compiler(cc):
    if cc == "clang":
        return ["clang-14", "--target=aarch64-linux-gnu", "-fuse-ld=lld"]
    return ["aarch64-linux-gnu-gcc"]


def kernel_sources(tree):
    src = sorted(glob.glob(os.path.join(tree, "tflite_export", "*.c")))
    if not src:
        raise SystemExit(f"no tflite_export/*.c under {tree}")
    return src


def build_tfc_library(tree, cache, cc, cflags):
    """Our kernels + delegate cross-compiled for aarch64 (shared library for load_delegate)."""
    src = kernel_sources(tree)
    flags = ["-O3", "-std=c11", "-ffp-contract=fast", "-Wno-psabi", "-fPIC", "-shared", *cflags]
    digest = hashlib.sha256(" ".join([cc, *flags]).encode())
    for path in src + sorted(glob.glob(os.path.join(tree, "tflite_export", "*.h"))):
        with open(path, "rb") as f:
            digest.update(f.read())
    out = os.path.join(cache, f"libtfc_sparse_ops_aarch64_{cc}_{digest.hexdigest()[:12]}.so")
    tmp = f"{out}.{os.getpid()}.tmp"
    run([*compiler(cc), *flags, "-I", os.path.join(tree, "tflite_export"), "-o", tmp, *src, "-lm"])
    os.replace(tmp, out)  # atomic: a concurrent run never loads a half-written library
    return out, src, flags


def symbol_ranges(lib, cat_index):
    """[(category, lo, hi)] for the function symbols of an aarch64 shared object."""
    txt = run(["aarch64-linux-gnu-nm", "-S", "--defined-only", lib], capture_output=True, text=True).stdout
    out = []
    for line in txt.splitlines():
        p = line.split()
        if len(p) != 4 or p[2] not in "tTwW":
            continue
        lo, size, name = int(p[0], 16), int(p[1], 16), p[3]
        if size == 0:
            continue
        c = cat_index(name)
        if c is not None:
            out.append((c, lo, lo + size))
    return out


def xnn_category(name):
    for i, (_, rx) in enumerate(CATEGORIES):
        if rx is None:
            continue
        if re.search(rx, name):
            return i
    return None


# ----------------------------------------------------------------------------- models (host, x86)

def _setup_tf(tree):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.path.insert(0, tree)


def _convert(model, dtype, calib=None, sparsity_opt=False):
    """The x86 benchmark's converter settings (benchmarks/sparse_kernels.py), one place for both."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from sparse_kernels import convert

    return convert(model, dtype, calib, sparsity_opt)


def fc_keras(k, n, sparsity, rng):
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((k,)), keras.layers.Dense(n)])
    w = rng.standard_normal((k, n)).astype("float32") / np.sqrt(k)
    w[np.abs(w) < np.quantile(np.abs(w), sparsity)] = 0
    model.layers[0].kernel.assign(w)
    model.layers[0].bias.assign(rng.standard_normal(n).astype("float32") * 0.1)
    return model


def mobilenet_v2_sparse_rules(sparsity, rng, pattern="unstructured"):
    """MobileNetV2 224 (random weights) laid out for XNNPACK's sparse-inference rules.

    Same layers and shapes as keras.applications.MobileNetV2(alpha=1), but every 3x3 conv
    (stem and depthwise) takes explicit ZeroPadding2D(1) + 'valid' instead of TF 'same' padding
    (asymmetric for stride 2), 1x1 convs are 'valid'. Every 1x1 conv is pruned by magnitude with
    tfcompress.pruning.Unstructured (`pattern="unstructured"`) or tfcompress.pruning.Block((1, 4))
    (`pattern="block1x4"`: 4 consecutive input channels of one output share their zeros, the
    pattern the README recommends for int8), then the BatchNorm statistics are re-estimated on
    random images (with an untrained model's statistics the activations vanish layer after layer).
    Same seed for both patterns: the same weights before pruning.
    """
    import keras
    import numpy as np
    from keras import layers as L

    from tfcompress.pruning import Block, Unstructured

    prune = {"unstructured": Unstructured(), "block1x4": Block((1, 4))}[pattern]

    keras.utils.set_random_seed(0)

    def bn_relu(h, act=True):
        h = L.BatchNormalization(epsilon=1e-3, momentum=0.999)(h)
        return L.ReLU(6.0)(h) if act else h

    inp = keras.Input((224, 224, 3))
    h = L.ZeroPadding2D(1)(inp)
    h = bn_relu(L.Conv2D(32, 3, strides=2, padding="valid", use_bias=False)(h))
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
           (6, 320, 1, 1)]
    for t, c, n, s in cfg:
        for i in range(n):
            stride = s if i == 0 else 1
            cin = h.shape[-1]
            x = h
            if t != 1:
                x = bn_relu(L.Conv2D(cin * t, 1, padding="valid", use_bias=False)(x))
            x = L.ZeroPadding2D(1)(x)
            x = bn_relu(L.DepthwiseConv2D(3, strides=stride, padding="valid", use_bias=False)(x))
            x = bn_relu(L.Conv2D(c, 1, padding="valid", use_bias=False)(x), act=False)
            h = L.Add()([h, x]) if (stride == 1 and cin == c) else x
    h = bn_relu(L.Conv2D(1280, 1, padding="valid", use_bias=False)(h))
    h = L.GlobalAveragePooling2D()(h)
    out = L.Dense(1000)(h)
    model = keras.Model(inp, out)
    pruned = 0
    for layer in model.layers:
        if type(layer) is L.Conv2D and tuple(layer.kernel.shape[:2]) == (1, 1):
            w = layer.kernel.numpy()
            mask = prune.compute_mask(np.abs(w.reshape(1, *w.shape[2:])), sparsity)
            layer.kernel.assign(w * np.asarray(mask).reshape(w.shape))
            pruned += 1
    x = rng.random((4, 224, 224, 3)).astype("float32")
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            hh = keras.Model(model.input, layer.input)(x).numpy()
            layer.moving_mean.assign(hh.mean((0, 1, 2)))
            layer.moving_variance.assign(hh.var((0, 1, 2)))
    return model, pruned


def quad_nonzero_fraction(model):
    """Fraction of the 4-input-channel quads (one output channel, inputs 4q..4q+3) of the 1x1 convs
    that hold a non-zero: what an int8 dot-product kernel multiplies (a quad with one non-zero
    costs a whole sdot operand)."""
    import numpy as np

    tot = nz = 0
    for layer in model.layers:
        if type(layer).__name__ == "Conv2D" and tuple(layer.kernel.shape[:2]) == (1, 1):
            w = layer.kernel.numpy()[0, 0]  # [Cin, Cout]
            k = -(-w.shape[0] // 4) * 4
            q = np.pad(w, ((0, k - w.shape[0]), (0, 0))).reshape(k // 4, 4, -1)
            tot += q.shape[0] * q.shape[2]
            nz += int((q != 0).any(axis=1).sum())
    return nz / tot


def one_by_one_zero_fraction(model):
    import numpy as np

    tot = zero = 0
    for layer in model.layers:
        if type(layer).__name__ == "Conv2D" and tuple(layer.kernel.shape[:2]) == (1, 1):
            w = layer.kernel.numpy()
            tot += w.size
            zero += int((w == 0).sum())
    return zero / tot


def build_models(tree, mdir, quick, rng, only=""):
    """Writes the .tflite files + inputs; returns the job list (without cpu)."""
    import numpy as np

    from tfcompress.export import export_tflite
    from tfcompress.export.sparse import rewrite_tflite, sparse_kernel_report

    jobs, info = [], {}

    def save(name, blob):
        path = os.path.join(mdir, name + ".tflite")
        with open(path, "wb") as f:
            f.write(blob)
        return path

    def custom_layers(blob):
        return sum(r["emitted"] == "custom" for r in sparse_kernel_report(blob))

    # trivial model: the per-invoke cost of the Python invoke loop itself
    import keras

    tiny = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    p = save("overhead", _convert(tiny, "float32"))
    jobs.append(dict(name="overhead", group="overhead", model=p, input_shape=[1, 1], input_dtype="float32",
                     invokes=20, variant="python invoke() overhead", dtype="float32", rows=1))

    k = n = 2048
    fc = fc_keras(k, n, 0.9, rng)
    calib = rng.standard_normal((32, k)).astype("float32")
    for dtype in ("float32", "int8"):
        dense = _convert(fc, dtype, calib)
        ours = rewrite_tflite(dense, "custom")
        info[f"fc_{dtype}_custom_layers"] = custom_layers(ours)
        pd, po = save(f"fc_{dtype}_dense", dense), save(f"fc_{dtype}_tfc", ours)
        for rows in (1, 64):
            for variant, path, deleg in (("xnnpack_dense", pd, False), ("tfcompress", po, True)):
                jobs.append(dict(name=f"fc2048_{dtype}_r{rows}_{variant}", group=f"fc2048_{dtype}_r{rows}",
                                 model=path, input_shape=[rows, k], input_dtype=dtype, delegate=deleg,
                                 invokes=10 if rows == 1 else 2, variant=variant, dtype=dtype, rows=rows))
    if quick:
        return jobs, info

    # MobileNetV2 224, 1x1 convs 80 % zero. Groups (job name = group + "_" + variant):
    #   mobilenetv2_float32 / mobilenetv2_int8: unstructured zeros (tfcompress.pruning.Unstructured)
    #   mobilenetv2_int8_block1x4: the int8 pattern the README recommends, Block((1, 4))
    # tfcompress variants (float32 and int8): tfcompress_custom = one TFC_SPARSE_CONV_1X1 node per
    # 1x1 (fuse_blocks=False);
    # tfcompress_fused = rewrite_tflite(..., "custom", fuse_blocks=True): every inverted-residual
    # block one TFC_SPARSE_INVERTED_RESIDUAL node; tfcompress_auto = "auto" with the cost model alone
    # (num_threads=None: the measured guard would time this x86 host, not an ARM CPU).
    groups = [("unstructured", "float32", ["xnnpack_dense", "xnnpack_sparse", "tfcompress_auto", "tfcompress_custom",
                                           "tfcompress_fused"]),
              ("unstructured", "int8", ["xnnpack_dense", "tfcompress_auto", "tfcompress_custom", "tfcompress_fused"]),
              ("block1x4", "int8", ["xnnpack_dense", "tfcompress_auto", "tfcompress_custom", "tfcompress_fused"])]

    def group_name(pattern, dtype):
        return f"mobilenetv2_{dtype}" + ("" if pattern == "unstructured" else f"_{pattern}")

    calib = rng.random((8, 224, 224, 3)).astype("float32")
    for pattern in ("unstructured", "block1x4"):
        todo = [(dt, v) for pat, dt, vs in groups if pat == pattern for v in vs
                if not only or re.search(only, f"{group_name(pat, dt)}_{v}")]
        if not todo:
            continue
        mb, pruned = mobilenet_v2_sparse_rules(0.8, np.random.default_rng(0), pattern)
        info[f"mobilenet_{pattern}_pruned_1x1_convs"] = pruned
        info[f"mobilenet_{pattern}_1x1_zero_fraction"] = one_by_one_zero_fraction(mb)
        info[f"mobilenet_{pattern}_int8_quads_nonzero_fraction"] = quad_nonzero_fraction(mb)
        dense = {}
        if any(dt == "float32" for dt, _ in todo):
            dense["float32"], _ = export_tflite(mb)
        if any(dt == "int8" for dt, _ in todo):
            dense["int8"], _ = export_tflite(mb, quantize="int8", representative_data=calib)
        for dtype, variant in todo:
            d = dense[dtype]
            if variant == "xnnpack_dense":
                blob = d
            elif variant == "xnnpack_sparse":
                blob = _convert(mb, "float32", sparsity_opt=True)
                info["xnnpack_sparse_file_has_densify"] = _has_op(blob, "DENSIFY")
            elif variant == "tfcompress_auto":
                blob = rewrite_tflite(d, "auto", num_threads=None)
            elif variant == "tfcompress_custom":
                blob = rewrite_tflite(d, "custom", fuse_blocks=False)
            else:
                blob = rewrite_tflite(d, "custom", fuse_blocks=True)
            group = group_name(pattern, dtype)
            if variant.startswith("tfcompress"):
                info[f"{group}_{variant}_custom_layers"] = custom_layers(blob)
                info[f"{group}_{variant}_fused_blocks"] = sum(r["emitted"] == "fused" for r in sparse_kernel_report(blob))
            path = save(f"{group}_{variant}", blob)
            jobs.append(dict(name=f"{group}_{variant}", group=group, model=path, input_shape=_input_shape(blob),
                             input_dtype=dtype, delegate=variant.startswith("tfcompress"), invokes=1,
                             variant=variant, dtype=dtype, rows=1, pattern=pattern))
    return jobs, info


def _input_shape(blob):
    from ai_edge_litert.interpreter import Interpreter

    return [int(d) for d in Interpreter(model_content=blob).get_input_details()[0]["shape"]]


def _has_op(blob, opname):
    from ai_edge_litert import schema_py_generated as schema

    m = schema.Model.GetRootAs(blob, 0)
    code = getattr(schema.BuiltinOperator, opname)
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        if max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) == code:
            return True
    return False


def host_reference(job, x):
    """The same file on x86 (tfcompress' load_interpreter adds our host library when needed)."""
    from tfcompress.export import load_interpreter

    with open(job["model"], "rb") as f:
        blob = f.read()
    interp = load_interpreter(blob, num_threads=1)
    inp = interp.get_input_details()[0]
    if list(inp["shape"]) != list(x.shape):
        interp.resize_tensor_input(inp["index"], list(x.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


# ----------------------------------------------------------------------------- guest runs

def run_guest(job, cpu, sysroot, plugin, lib, ranges, work, timeout):
    """One job in a fresh qemu-aarch64 process; sysroot = the per-cpu view."""
    spec = dict(job)
    spec["delegate"] = lib if job.get("delegate") else None
    spec["ranges"] = ranges
    spec["mark"] = 2
    spec["output"] = os.path.join(work, f"{job['name']}_{cpu}.npy")
    jpath = os.path.join(work, f"{job['name']}_{cpu}.json")
    counts = os.path.join(work, f"{job['name']}_{cpu}.counts")
    with open(jpath, "w") as f:
        json.dump(spec, f)
    tbprof = os.path.join(work, f"{job['name']}_{cpu}.tbprof")
    spec["report_bases"] = [XNN_LIB, os.path.basename(lib)]
    with open(jpath, "w") as f:
        json.dump(spec, f)
    cmd = ["qemu-aarch64", "-cpu", cpu, "-L", sysroot, "-plugin", f"{plugin},out={counts},tbprof={tbprof}",
           os.path.join(sysroot, "usr/bin/python3.11"), os.path.join(ARM, "guest_run.py"), jpath]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="0", PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    wall = time.time() - t0
    if p.returncode != 0:
        return dict(ok=False, error=(p.stderr or p.stdout)[-1500:], wall_s=wall)
    marks = {}
    with open(counts) as f:
        for line in f:
            parts = line.split()
            if parts[0] == "mark":
                marks[int(parts[1])] = [int(v) for v in parts[2:]]
    a, b = marks[2], marks[3]
    n = job["invokes"]
    per = [(bb - aa) / n for aa, bb in zip(a, b)]
    cats = {name: per[1 + i] for i, (name, _) in enumerate(CATEGORIES)}
    import numpy as np

    try:
        bases = json.loads(p.stdout.strip().splitlines()[-1])["bases"]
    except (ValueError, IndexError, KeyError):
        bases = {}
    with open(os.path.join(work, f"{job['name']}_{cpu}.bases.json"), "w") as f:
        json.dump(bases, f)
    return dict(ok=True, insns_per_invoke=per[0], by_code=cats, wall_s=wall,
                output=np.load(spec["output"]), log=_interesting_log(p.stderr),
                top_functions=top_functions(tbprof, bases, {XNN_LIB: SYMS[XNN_LIB], os.path.basename(lib): SYMS["ours"]}))


SYMS = {}


def load_symbols(lib):
    txt = run(["aarch64-linux-gnu-nm", "-S", "--defined-only", lib], capture_output=True, text=True).stdout
    syms = []
    for line in txt.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTwW":
            syms.append((int(p[0], 16), int(p[1], 16), p[3]))
    return sorted(syms)


def top_functions(tbprof, bases, symtabs, n=10):
    """Profile of the timed invokes: the functions that executed most instructions in XNNPACK's
    library and ours (evidence of which kernels ran), with their share of the region."""
    import bisect

    if not os.path.exists(tbprof):
        return []
    tabs = []
    for lib, syms in symtabs.items():
        if bases.get(lib):
            tabs.append((lib, bases[lib], syms, [s[0] for s in syms]))
    agg = {}
    with open(tbprof) as f:
        for line in f:
            a, k, e = line.split()
            a, w = int(a, 16), int(k) * int(e)
            name = "<python, libc, other>"
            for lib, base, syms, los in tabs:
                off = a - base
                i = bisect.bisect_right(los, off) - 1
                if off >= 0 and i >= 0 and off < syms[i][0] + max(syms[i][1], 1):
                    name = ("ours:" if lib != XNN_LIB else "") + syms[i][2]
                    break
            if not name.startswith(("xnn_", "kai_", "ours:")):
                name = "<python, libc, TFLite runtime, other>"
            agg[name] = agg.get(name, 0) + w
    tot = sum(agg.values()) or 1
    return [(k[:100], v, round(v / tot, 4)) for k, v in sorted(agg.items(), key=lambda kv: -kv[1])[:n]]


def _interesting_log(stderr):
    keep = [l for l in stderr.splitlines() if "XNNPACK" in l or "delegate" in l.lower() or "sparse" in l.lower()]
    return keep[:8]


# ----------------------------------------------------------------------------- llvm-mca

_BR = re.compile(r"^(b\.?(?:eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al)|cbn?z|tbn?z|b)\s+(.*)$")


def _decode_inst(expr):
    """`.inst` operand (a hex word, or GCC's unevaluated `0x4e809400|(24<<16)|...`) -> the sdot
    it encodes (vector form), else None: the kernels emit sdot as .inst (no +dotprod needed)."""
    if not re.fullmatch(r"[0-9a-fA-Fx|()<> ]+", expr):
        return None
    w = eval(expr, {"__builtins__": {}})  # noqa: S307 - digits, |, << and parentheses only
    if w & 0xFFE0FC00 == 0x4E809400:
        return f"sdot v{w & 31}.4s, v{(w >> 5) & 31}.16b, v{(w >> 16) & 31}.16b"
    return None


def _loops_from_asm(asm):
    """Innermost loops of compiled assembly: (function, label, body lines) for each backward
    branch to a label in the same function whose body holds no other label (a single block).
    Numeric labels of inline asm (`1:` ... `b.ne 1b`) count as labels."""
    loops, func, body, label = [], None, [], None
    for raw in asm.splitlines():
        inst = re.match(r"^\s*\.inst\s+(\S+)", raw)  # raw encodings (sdot without +dotprod)
        if inst and _decode_inst(inst.group(1)):
            raw = "\t" + _decode_inst(inst.group(1))
        line = raw.split("//")[0].split("/*")[0].rstrip()
        if not line.strip():
            continue
        m = re.match(r"^\s*([A-Za-z_.$][\w.$]*|\d+):", line)
        if m:
            name = m.group(1)
            if not name.startswith(".") and not name.isdigit():
                func = name
            label, body = name, []
            continue
        s = line.strip()
        if s.startswith("."):
            continue
        body.append(s)
        bm = _BR.match(s)
        if bm and label is not None:
            target = bm.group(2).split(",")[-1].strip()
            if re.fullmatch(r"\d+b", target):  # numeric local label, backwards
                target = target[:-1]
            if target == label and len(body) > 2:
                loops.append((func, label, list(body)))
    return loops


def _vector_macs(body):
    """MACs per iteration from fmla / sdot / smlal counts (4 lanes f32, 16 per sdot, 8 per smlal)."""
    macs = 0
    for s in body:
        op = s.split()[0]
        if op in ("fmla", "fmadd"):
            macs += 4 if ".4s" in s else (2 if ".2s" in s else 1)
        elif op == "sdot":
            macs += 16 if ".4s" in s else 8
        elif op in ("smlal", "smlal2", "umlal", "umlal2", "smull", "smull2", "mla"):
            dest = s.split()[1].rstrip(",")  # widening: the lanes of the destination
            macs += {"16b": 16, "8b": 8, "8h": 8, "4h": 4, "4s": 4, "2s": 2, "2d": 2}.get(dest.split(".")[-1], 0)
    return macs


def _mca(body, mcpu="cortex-a76", extra=()):
    asm = "\n".join(_sanitize(body[:-1])) + "\n"  # the loop branch itself is dropped
    p = subprocess.run(["llvm-mca-14", "-mtriple=aarch64-linux-gnu", f"-mcpu={mcpu}", *extra,
                        "-iterations=200"], input=asm, capture_output=True, text=True)
    if p.returncode != 0:
        return None, p.stderr.strip()[:300]
    m = re.search(r"Total Cycles:\s+(\d+)", p.stdout)
    return (int(m.group(1)) / 200.0 if m else None), None


def mca_ours(tree, cc, cflags, march, hot=()):
    """Innermost vector loops of our kernels compiled for aarch64 -O3 (only in `hot` functions,
    those that executed >= 1 % of a run's instructions, when given)."""
    out = []
    for src in kernel_sources(tree):
        base = os.path.basename(src)
        if "delegate" in base:
            continue
        cmd = [*compiler(cc), "-O3", "-std=c11", "-ffp-contract=fast", "-Wno-psabi", *([f"-march={march}"] if march else []),
               *cflags, "-I", os.path.dirname(src), "-S", "-o", "-", src]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            out.append(dict(source=base, error=p.stderr[-300:]))
            continue
        for func, label, body in _loops_from_asm(p.stdout):
            macs = _vector_macs(body)
            if macs == 0 or (hot and func.split(".")[0] not in hot):
                continue
            cyc, err = _mca(body)
            out.append(dict(source=base, function=func, loop=label, insns=len(body), macs=macs,
                            cycles=cyc, macs_per_cycle=(macs / cyc if cyc else None), error=err))
    return out


XNN_MCA_KERNELS = [
    "xnn_f32_spmm_minmax_ukernel_32x1__neonfma_pipelined",
    "xnn_f32_spmm_minmax_ukernel_32x4__aarch64_neonfma",
    "xnn_f32_gemm_minmax_ukernel_1x8__asm_aarch64_neonfma_ld128_2",
    "xnn_f32_gemm_minmax_ukernel_6x8__asm_aarch64_neonfma_cortex_a75_prfm",
    "xnn_f32_gemm_minmax_ukernel_4x8__asm_aarch64_neonfma_cortex_a75",
    "xnn_qs8_qc8w_gemm_minmax_fp32_ukernel_4x16c4__asm_aarch64_neondot_ld128",
    "xnn_qs8_qc8w_gemm_minmax_fp32_ukernel_1x16c4__asm_aarch64_neondot_ld128",
    "xnn_qs8_qc8w_igemm_minmax_fp32_ukernel_4x16c4__asm_aarch64_neondot_ld128",
    "xnn_f32_gemv_minmax_ukernel",
]


def mca_xnnpack(lib, executed_syms=()):
    """Innermost loops of XNNPACK micro-kernels, disassembled from the aarch64 wheel."""
    nm = run(["aarch64-linux-gnu-nm", "-S", "--defined-only", lib], capture_output=True, text=True).stdout
    syms = {}
    for line in nm.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tT":
            syms[p[3]] = (int(p[0], 16), int(p[1], 16))
    wanted = []
    for w in list(XNN_MCA_KERNELS) + list(executed_syms):
        hits = [s for s in syms if s == w] or sorted(s for s in syms if s.startswith(w))[:2]
        wanted += [h for h in hits if h not in wanted]
    out = []
    for name in wanted:
        lo, size = syms[name]
        d = run(["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", f"--start-address={lo}",
                 f"--stop-address={lo + size}", lib], capture_output=True, text=True).stdout
        insns = []
        for line in d.splitlines():
            m = re.match(r"^\s+([0-9a-f]+):\s+(\S.*)$", line)
            if m:
                insns.append((int(m.group(1), 16), m.group(2).split("//")[0].split("<")[0].strip()))
        addr_idx = {a: i for i, (a, _) in enumerate(insns)}
        best = None
        for i, (a, ins) in enumerate(insns):
            bm = re.match(r"^(b\.\w+|cbn?z|tbn?z|b)\s+(.*)$", ins)
            if not bm:
                continue
            try:
                tgt = int(bm.group(2).split(",")[-1].strip(), 16)
            except ValueError:
                continue
            if tgt < a and tgt in addr_idx:
                j = addr_idx[tgt]
                body = [x for _, x in insns[j:i + 1]]
                inner = [x for _, x in insns[j:i]]
                # innermost = no other backward branch inside
                if any(re.match(r"^(b\.\w+|cbn?z|tbn?z|b)\s", x) for x in inner):
                    continue
                # the main loop: most MACs per iteration (remainder loops have fewer)
                if _vector_macs(body) and (best is None or _vector_macs(body) > _vector_macs(best)):
                    best = body
        if not best:
            continue
        cyc, err = _mca(best)
        macs = _vector_macs(best)
        out.append(dict(function=name, insns=len(best), macs=macs, cycles=cyc,
                        macs_per_cycle=(macs / cyc if cyc else None), error=err))
    return out


_BRANCH = re.compile(r"^(b\.?(?:eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al)|cbn?z|tbn?z|b|bl)(\s+)(.*?)([.\w$]+)$")


def _sanitize(body):
    """Branch targets (hex addresses from objdump, local labels from the compiler) -> one symbol."""
    return [_BRANCH.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}tgt", s) for s in body]


def llvm_mca_section(results, tree, cc, cflags, xnnlib):
    """llvm-mca estimates for the loops of the functions that ran hot in `results`."""
    mca = {}
    try:
        hot = sorted({f[5:].split(".")[0] for r in results if r.get("ok")
                      for f, _, share in r.get("top_functions", []) if f.startswith("ours:") and share > 0.05})
        mca["ours_hot_functions"] = hot
        mca["ours_compiler"] = cc
        mca["ours_cortex_a76"] = mca_ours(tree, cc, cflags, "", hot)
        ran = sorted({f for r in results if r.get("ok") for f, _, share in r.get("top_functions", [])
                      if f.startswith("xnn_") and share > 0.05 and ("gemm" in f or "spmm" in f or "conv" in f)})
        mca["xnnpack_cortex_a76"] = mca_xnnpack(xnnlib, ran)
    except Exception as e:  # noqa: BLE001 - the estimate is optional
        mca["error"] = repr(e)
    return mca


# ----------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tree", default=REPO, help="checkout whose tflite_export/*.c and tfcompress/ are used")
    ap.add_argument("--ref", default="", help="git ref of this repository to export (git archive) and use "
                                              "as --tree (nothing is checked out)")
    ap.add_argument("--cc", choices=("gcc", "clang"), default="gcc", help="cross compiler for our library")
    ap.add_argument("--cflags", default="", help="extra flags for the aarch64 build of our library")
    ap.add_argument("--cpus", default="cortex-a76,cortex-a53",
                    help=f"qemu -cpu models, from {sorted(CPU_MODELS)}. cortex-a76 = ARMv8.2 with dotprod "
                         "(a 2019-2024 phone big core); max adds SVE/SME, and XNNPACK then runs KleidiAI "
                         "SME kernels, which few phones have; cortex-a53 = ARMv8.0, no dotprod")
    ap.add_argument("--cache", default=os.environ.get("TFC_ARM_CACHE",
                                                      os.path.expanduser("~/.cache/tfcompress/arm_proxy")))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "arm_proxy.json"))
    ap.add_argument("--quick", action="store_true", help="FC 2048 only, first cpu only")
    ap.add_argument("--only", default="", help="regex on job names")
    ap.add_argument("--timeout", type=int, default=3600)
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (models, per-block profiles *.tbprof, library bases) for "
                         "a per-instruction look with benchmarks/arm_blocks.py")
    ap.add_argument("--mca-only", action="store_true",
                    help="recompute only the llvm-mca section of --out (same --tree/--ref, --cc)")
    args = ap.parse_args(argv)
    os.makedirs(args.cache, exist_ok=True)
    tree = os.path.abspath(args.tree)
    if args.ref:
        tree = tempfile.mkdtemp(prefix="tree_", dir=args.cache)
        arch = run(["git", "-C", REPO, "archive", args.ref], capture_output=True).stdout
        run(["tar", "-x", "-C", tree], input=arch)
    cpus = args.cpus.split(",")[:1] if args.quick else args.cpus.split(",")
    cflags = args.cflags.split()

    log(f"tree: {tree}")
    sysroot = ensure_sysroot(args.cache)
    if args.mca_only:
        with open(args.out) as f:
            doc = json.load(f)
        xnnlib = os.path.join(sysroot, "usr/lib/python3/dist-packages/ai_edge_litert", XNN_LIB)
        doc["llvm_mca"] = llvm_mca_section(doc["results"], tree, args.cc, cflags, xnnlib)
        log(mca_table(doc["llvm_mca"]))
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1, default=_jsonable)
        return
    plugin = build_plugin(args.cache)
    lib, srcs, flags = build_tfc_library(tree, args.cache, args.cc, cflags)
    log(f"our library for aarch64: {lib} ({args.cc} {' '.join(flags)}; {len(srcs)} sources)")
    xnnlib = os.path.join(sysroot, "usr/lib/python3/dist-packages/ai_edge_litert", XNN_LIB)
    SYMS[XNN_LIB], SYMS["ours"] = load_symbols(xnnlib), load_symbols(lib)

    ranges = [[0, os.path.basename(lib), lo, hi] for _, lo, hi in symbol_ranges(lib, lambda n: 0)]
    ranges += [[c, XNN_LIB, lo, hi] for c, lo, hi in
               symbol_ranges(xnnlib, xnn_category)]

    _setup_tf(tree)
    import numpy as np

    rng = np.random.default_rng(0)
    work = tempfile.mkdtemp(prefix="arm_proxy_", dir=args.cache)
    t0 = time.time()
    jobs, info = build_models(tree, work, args.quick, rng, args.only)
    log(f"models built in {time.time() - t0:.0f} s: {len(jobs)} files")
    if args.only:
        jobs = [j for j in jobs if j["group"] == "overhead" or re.search(args.only, j["name"])]

    results = []
    for cpu in cpus:
        for job in jobs:
            x_shape = job["input_shape"]
            x = (rng.integers(-128, 128, size=x_shape).astype(np.int8) if job["input_dtype"] == "int8"
                 else rng.random(x_shape).astype(np.float32))
            npy = os.path.join(work, f"{job['name']}_{cpu}_in.npy")
            np.save(npy, x)
            job = dict(job, input_npy=npy)
            r = run_guest(job, cpu, cpu_view(args.cache, sysroot, cpu), plugin, lib, ranges, work, args.timeout)
            row = {k: job[k] for k in ("name", "group", "variant", "dtype", "rows", "invokes")}
            row["pattern"] = job.get("pattern")
            row["cpu"] = cpu
            if r["ok"]:
                ref = host_reference(job, x)
                got = r.pop("output")
                scale = float(np.abs(ref.astype(np.float64)).max()) or 1.0
                row["max_abs_diff_vs_x86"] = float(np.abs(got.astype(np.float64) - ref).max())
                row["rel_diff_vs_x86"] = row["max_abs_diff_vs_x86"] / scale
            row.update(r)
            results.append(row)
            if r["ok"]:
                bc = r["by_code"]
                log(f"[{cpu:>10}] {job['name']:<42} {r['insns_per_invoke'] / 1e6:10.3f} M insns/invoke  "
                    f"(ours {bc['tfcompress'] / 1e6:.2f} M, spmm {bc['xnn_f32_spmm'] / 1e6:.2f} M, "
                    f"f32 gemm {bc['xnn_f32_gemm'] / 1e6:.2f} M, int8 gemm {bc['xnn_int8_gemm'] / 1e6:.2f} M, "
                    f"kleidiai {bc['kleidiai'] / 1e6:.2f} M) "
                    f"diff vs x86 {row['rel_diff_vs_x86']:.1e}  [{r['wall_s']:.0f} s]")
            else:
                log(f"[{cpu:>10}] {job['name']:<42} FAILED: {r['error'][-400:]}")

    summary = summarize(results)
    log("")
    log(table(summary))
    mca = llvm_mca_section(results, tree, args.cc, cflags, xnnlib)
    log(mca_table(mca))
    doc = {
        "what": "executed aarch64 instructions per invoke() under qemu-aarch64 (TCG plugin), 1 thread; "
                "ARM proxy, not a phone measurement",
        "tree": args.ref or tree,
        "tree_commit": _git(REPO, "rev-parse", args.ref) if args.ref else _git(tree, "rev-parse", "HEAD"),
        "tree_dirty": False if args.ref else bool(_git(tree, "status", "--porcelain")),
        "our_library": {"compiler": args.cc, "flags": flags, "sources": [os.path.basename(s) for s in srcs]},
        "host": platform.platform(), "qemu": _first_line(["qemu-aarch64", "--version"]),
        "litert_aarch64_wheel": "ai-edge-litert 2.3.0 manylinux_2_27_aarch64, Debian bookworm python3.11 arm64",
        "models": info, "results": results, "summary": summary, "llvm_mca": mca,
        "cannot_see": ["caches and memory bandwidth (every load costs the same)",
                       "out-of-order overlap, latency chains, dual issue (instructions != cycles)",
                       "big.LITTLE, DVFS and thermal throttling", "multi-threading (1 thread only)",
                       "qemu's -cpu model only changes the features (dotprod, fp16), not a timing model",
                       "llvm-mca: one loop body in steady state with all loads in L1, cortex-a76 model"],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1, default=_jsonable)
    log(f"wrote {args.out}")
    if args.keep:
        log(f"kept {work} (our library: {lib})")
    else:
        shutil.rmtree(work, ignore_errors=True)
    if args.ref:
        shutil.rmtree(tree, ignore_errors=True)


def _jsonable(o):
    try:
        return float(o)
    except Exception:  # noqa: BLE001
        return str(o)


def _git(tree, *a):
    p = subprocess.run(["git", "-C", tree, *a], capture_output=True, text=True)
    return p.stdout.strip()


def _first_line(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    except Exception:  # noqa: BLE001
        return None


TARGETS = {  # issue 13 "Must show": (group, variant, baseline variant, max ratio)
    "fc2048_float32_r1": [("tfcompress", "xnnpack_dense", 0.35)],
    "fc2048_float32_r64": [("tfcompress", "xnnpack_dense", 0.35)],
    "mobilenetv2_float32": [("tfcompress_auto", "xnnpack_dense", 0.6), ("tfcompress_custom", "xnnpack_dense", 0.6),
                            ("tfcompress_fused", "xnnpack_dense", 0.6),
                            ("tfcompress_auto", "xnnpack_sparse", 1.0), ("tfcompress_custom", "xnnpack_sparse", 1.0),
                            ("tfcompress_fused", "xnnpack_sparse", 1.0)],
    "mobilenetv2_int8": [("tfcompress_auto", "xnnpack_dense", 0.6), ("tfcompress_custom", "xnnpack_dense", 0.6),
                         ("tfcompress_fused", "xnnpack_dense", 0.6)],
    "mobilenetv2_int8_block1x4": [("tfcompress_auto", "xnnpack_dense", 0.6), ("tfcompress_custom", "xnnpack_dense", 0.6),
                                  ("tfcompress_fused", "xnnpack_dense", 0.6)],
}


def summarize(results):
    """Per cpu and group: net instructions per invoke (python invoke overhead subtracted) and ratios."""
    out = []
    by = {}
    for r in results:
        if r.get("ok"):
            by.setdefault((r["cpu"], r["group"]), {})[r["variant"]] = r
    for (cpu, group), vs in sorted(by.items()):
        if group == "overhead":
            continue
        ovh = by.get((cpu, "overhead"), {}).get("python invoke() overhead")
        o = ovh["insns_per_invoke"] if ovh else 0.0
        base = vs.get("xnnpack_dense")
        for v, r in vs.items():
            net = r["insns_per_invoke"] - o
            row = dict(cpu=cpu, group=group, variant=v, insns_per_invoke=r["insns_per_invoke"], net_insns=net,
                       in_our_library=r["by_code"]["tfcompress"], in_xnn_spmm=r["by_code"]["xnn_f32_spmm"],
                       rel_diff_vs_x86=r.get("rel_diff_vs_x86"))
            if base:
                row["ratio_vs_xnnpack_dense"] = net / (base["insns_per_invoke"] - o)
            if "xnnpack_sparse" in vs:
                row["ratio_vs_xnnpack_sparse"] = net / (vs["xnnpack_sparse"]["insns_per_invoke"] - o)
            if v == "xnnpack_sparse":
                row["sparse_path_engaged"] = r["by_code"]["xnn_f32_spmm"] > 0
            for tv, tb, lim in TARGETS.get(group, []):
                if tv == v and tb in vs:
                    ratio = net / (vs[tb]["insns_per_invoke"] - o)
                    row.setdefault("targets", []).append(
                        dict(vs=tb, ratio=ratio, limit=lim, met=bool(ratio <= lim if lim < 1 else ratio < lim)))
            out.append(row)
    return out


def table(summary):
    lines = [f"{'cpu':<11} {'model':<22} {'variant':<18} {'M insns/inv':>11} {'vs XNN dense':>12} "
             f"{'vs XNN sparse':>13} {'in ours':>8} {'in spmm':>8}  targets"]
    for r in summary:
        tg = "; ".join(f"<= {t['limit']:.2f}x {t['vs']}: {'MET' if t['met'] else 'not met'}"
                       for t in r.get("targets", []))
        lines.append(f"{r['cpu']:<11} {r['group']:<22} {r['variant']:<18} {r['net_insns'] / 1e6:11.3f} "
                     f"{_fmt(r.get('ratio_vs_xnnpack_dense')):>12} {_fmt(r.get('ratio_vs_xnnpack_sparse')):>13} "
                     f"{r['in_our_library'] / 1e6:8.2f} {r['in_xnn_spmm'] / 1e6:8.2f}  {tg}")
    return "\n".join(lines)


def _fmt(v):
    return "-" if v is None else f"{v:.3f}x"


def mca_table(mca):
    lines = ["llvm-mca-14 -mcpu=cortex-a76, innermost loops (cycles per iteration, MACs per cycle):"]
    for key in ("ours_cortex_a76", "xnnpack_cortex_a76"):
        for r in mca.get(key, []):
            if r.get("cycles"):
                lines.append(f"  {key.split('_')[0]:<8} {r.get('function', '') + ' ' + r.get('loop', ''):<72} "
                             f"{r['insns']:4d} insns "
                             f"{r['cycles']:7.2f} cyc  {r['macs']:3d} MACs  {r['macs_per_cycle']:5.2f} MAC/cyc")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
