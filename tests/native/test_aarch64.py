"""The sparse kernels built for aarch64 (GCC and Clang) and run under qemu-aarch64.

The fused op (TFC_SPARSE_INVERTED_RESIDUAL, tflite_export/tfc_fused*.c) runs too: whole int8
inverted-residual blocks ("fused/..." cases) whose outputs must EQUAL a numpy emulation of the
dense int8 file's arithmetic (float32 multipliers, XNNPACK's integer ADD); the same case file
passes on the x86 build (test_fused_cases_equal_on_the_x86_build), whose fused op equals the
dense int8 file run by LiteRT (tests/native/test_fused_inverted_residual.py). Float32 blocks
(params flag bit 3, "fused/float32/..." cases) are compared with a float64 numpy reference within
a bound of float32 rounding (make_cases.fused_f32_case).

Every op, layout, pattern, dtype and edge shape of tflite_export/test/make_cases.py runs through the
real Init / Prepare / Invoke / Free of the C kernels in tflite_export/test/tfc_test_driver.c (a
fake TfLiteContext) and is compared with numpy references computed in Python; malformed weights,
options and shapes must be rejected in Prepare with the stated message. Two CPU models: cortex-a53
(ARMv8.0, no dotprod: the plain-NEON paths) and max (ARMv8.2+ with dotprod: the sdot paths).

Needs the Debian cross toolchain and user-mode emulation (.ci/run installs them):
    apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
        qemu-user clang-14 lld-14 llvm-14
"""

import importlib.util
import os
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SRC_DIR = ROOT / "tflite_export"
APT = ("apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross "
       "qemu-user clang-14 lld-14 llvm-14")
CFLAGS = ["-O3", "-std=c11", "-ffp-contract=fast", "-Wall", "-Wno-psabi", "-static",
          "-I", str(SRC_DIR)]
COMPILERS = {
    "gcc": ["aarch64-linux-gnu-gcc"],
    "clang": ["clang-14", "--target=aarch64-linux-gnu", "-fuse-ld=lld"],
}
CPUS = {"cortex-a53": "no", "max": "yes"}  # CPU model -> dotprod reported by getauxval


def _need(tool):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} not found: the aarch64 tests need the Debian cross toolchain and qemu; run "
                    f"`apt-get update && {APT}` (.ci/run does this)", pytrace=False)


def _sources():
    """The library's C files (all of tflite_export/*.c) plus the driver."""
    return [str(p) for p in sorted(SRC_DIR.glob("*.c"))] + [str(SRC_DIR / "test" / "tfc_test_driver.c")]


def _make_cases_module():
    spec = importlib.util.spec_from_file_location("_tfc_make_cases", SRC_DIR / "test" / "make_cases.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{"gcc": binary, "clang": binary} (static aarch64, built in parallel), and the case file."""
    for tool in ("aarch64-linux-gnu-gcc", "clang-14", "ld.lld-14", "qemu-aarch64"):
        _need(tool)
    out = tmp_path_factory.mktemp("aarch64")
    procs = {}
    for name, cc in COMPILERS.items():
        exe = out / f"tfc_test_{name}"
        procs[name] = (exe, subprocess.Popen(cc + CFLAGS + _sources() + ["-lm", "-o", str(exe)],
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    cases = out / "cases.bin"
    names = _make_cases_module().write_cases(cases, seed=1234)
    bins = {}
    for name, (exe, p) in procs.items():
        log, _ = p.communicate(timeout=600)
        assert p.returncode == 0, f"{name} failed to build the aarch64 driver:\n{log}"
        bins[name] = exe
    return bins, cases, names


def _f32_kernel(rows, cap, block4):
    if cap == "0":
        return "portable_rows_f32" if rows < 4 else "portable_tiled_f32"
    return "neon_csr_f32" if rows >= 16 else ("neon_block4_f32" if block4 else "neon_tbl_f32")


def _int8_kernel(rows, cap, cpu):
    if cap == "0":
        return "portable_rows_i8" if rows < 4 else "portable_tiled_i8"
    if cap is None and cpu == "max":  # dotprod
        return "sdot_quads_i8" if rows >= 16 else "sdot_tbl_i8"
    return "neon_quads_i8" if rows >= 16 else "neon_tbl_i8"


def _expected_kernel(name, cap, cpu):
    """The kernel Prepare must pick (tfc_pick_aarch64 / tfc_pick_portable) for a case; fused
    blocks: "dw=<depthwise>,expand=<1x1 plan>,project=<1x1 plan>" for the row counts of their
    strips (in the case name, from make_cases.fused_strips)."""
    if name.startswith("malformed/"):
        return "-"
    if name.startswith("fused/"):
        re_, rp = (int(v) for v in re.search(r"/rowsE(\d+)/rowsP(\d+)", name).groups())
        if name.startswith("fused/float32/"):  # one float32 depthwise at every level; float 1x1 plans
            b4 = "/B4/" in name
            expand = "stem_f32" if "/stem_" in name else _f32_kernel(re_, cap, b4) if re_ else "none"
            return f"dw=dw_f32,expand={expand},project={_f32_kernel(rp, cap, b4)}"
        if cap == "0":
            dw = "dw_portable"
        elif cap is None and cpu == "max":  # dotprod: one sdot per kernel column, -128 weights included
            dw = "dw_sdot"
        else:
            dw = "dw_neon_w128" if "dwmin128" in name else "dw_neon"
        expand = _int8_kernel(re_, cap, cpu) if re_ else "none"
        if "/stem_" in name and cap is None and cpu == "max":  # the stem straight from the image
            expand = "stem_sdot"
        return f"dw={dw},expand={expand},project={_int8_kernel(rp, cap, cpu)}"
    rows = int(re.search(r"/rows(\d+)/", name).group(1))
    f32 = name.startswith("float32/")
    if cap == "0":
        return ("portable_rows_" if rows < 4 else "portable_tiled_") + ("f32" if f32 else "i8")
    if f32:
        block4 = "/B4/" in name or "/u32index/" in name  # packed in 1x4 blocks
        return "neon_csr_f32" if rows >= 16 else ("neon_block4_f32" if block4 else "neon_tbl_f32")
    return _int8_kernel(rows, cap, cpu)


@pytest.mark.parametrize("cpu", list(CPUS))
@pytest.mark.parametrize("compiler", list(COMPILERS))
def test_kernels_match_numpy_under_qemu(built, compiler, cpu):
    """Every case on every path: portable (cap 0), NEON (cap 1), the best the CPU has (sdot on max)."""
    bins, cases, names = built
    for cap in ("0", "1", None):
        env = dict(os.environ)
        env.pop("TFCOMPRESS_ISA_CAP", None)
        if cap is not None:
            env["TFCOMPRESS_ISA_CAP"] = cap
        cmd = ["qemu-aarch64", "-cpu", cpu, str(bins[compiler]), str(cases)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        lines = r.stdout.splitlines()
        failed = [ln for ln in lines if ln.startswith("FAIL")]
        assert not failed, (cap, "\n".join(failed[:20]))
        assert r.returncode == 0, (cap, r.returncode, r.stdout[-2000:], r.stderr[-2000:])
        assert f"cpu: aarch64, dotprod {CPUS[cpu]}" in lines
        ran = [re.match(r"PASS (.*) max_err=\S+ kernel=(\S+)$", ln).groups() for ln in lines
               if ln.startswith("PASS ")]
        assert [n for n, _ in ran] == names  # every case ran, in order, none silently dropped
        wrong = [(n, k, _expected_kernel(n, cap, cpu)) for n, k in ran if k != _expected_kernel(n, cap, cpu)]
        assert not wrong, (cap, wrong[:10])
        assert lines[-1] == f"{len(names)} passed, 0 failed"


def test_kernels_on_three_threads_match_numpy_under_qemu(built, tmp_path):
    """The same cases with the interpreter's thread count at 3 and every layer split (the pool of
    tfc_threads.c and the work ranges of tfc_op.c), on the sdot and the plain-NEON CPU models."""
    _, cases, names = built
    exe = tmp_path / "tfc_test_threads"
    subprocess.run(COMPILERS["gcc"] + CFLAGS + ["-DTFC_PAR_MIN_NS=0", "-pthread"] + _sources()
                   + ["-lm", "-o", str(exe)], check=True, timeout=600)
    env = dict(os.environ, TFC_TEST_THREADS="3", TFCOMPRESS_THREADS_OVERSUBSCRIBE="1")
    env.pop("TFCOMPRESS_ISA_CAP", None)
    for cpu in CPUS:
        r = subprocess.run(["qemu-aarch64", "-cpu", cpu, str(exe), str(cases)], capture_output=True,
                           text=True, timeout=600, env=env)
        failed = [ln for ln in r.stdout.splitlines() if ln.startswith("FAIL")]
        assert not failed, (cpu, "\n".join(failed[:20]))
        assert r.returncode == 0 and r.stdout.splitlines()[-1] == f"{len(names)} passed, 0 failed", (
            cpu, r.stdout[-2000:], r.stderr[-2000:])


def _objdump(compiler, tmp_path, source="tfc_kernels_aarch64.c"):
    """Disassembly of an aarch64 kernel file built as in the driver, by aarch64 objdump."""
    obj = tmp_path / f"k_{compiler}_{source}.o"
    src = SRC_DIR / source
    flags = [f for f in CFLAGS if f != "-static"]
    subprocess.run(COMPILERS[compiler] + flags + ["-c", str(src), "-o", str(obj)], check=True)
    out = subprocess.run(["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", str(obj)],
                         check=True, capture_output=True, text=True).stdout
    funcs, cur = {}, None
    for ln in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.+)>:", ln)
        if m:
            cur = funcs.setdefault(m.group(1), [])
            continue
        m = re.match(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$", ln)
        if m and cur is not None:
            cur.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return funcs


def _inner_loops(ins):
    """Innermost loops (backward branch ranges containing no other one) as instruction lists."""
    spans = []
    for addr, op, args in ins:
        if (op.startswith("b") and op not in ("bl", "blr")) or op in ("cbz", "cbnz", "tbz", "tbnz"):
            m = re.search(r"\b([0-9a-f]+) <", args)
            if m and int(m.group(1), 16) <= addr:
                spans.append((int(m.group(1), 16), addr))
    inner = [s for s in spans if not any(o != s and s[0] <= o[0] and o[1] <= s[1] for o in spans)]
    return [[i for i in ins if a <= i[0] <= b] for a, b in inner]


@pytest.mark.parametrize("compiler", list(COMPILERS))
def test_neon_loops_are_vector_code_without_spills(compiler, tmp_path):
    """Both compilers: the hot loops are NEON (tbl + fmla / sdot / smull+sadalp, fmla by element)
    and touch no stack slot (no register spills)."""
    for tool in ("aarch64-linux-gnu-gcc", "clang-14", "aarch64-linux-gnu-objdump"):
        _need(tool)
    funcs = _objdump(compiler, tmp_path)
    found = {}
    for fname, ins in funcs.items():
        for loop in _inner_loops(ins):
            ops = [op for _, op, _ in loop]
            if not {"fmla", "sdot", "tbl", "sadalp"} & set(ops):
                continue
            spills = [f"{op} {args}" for _, op, args in loop
                      if op in ("ldr", "str", "ldp", "stp", "ldur", "stur") and "[sp" in args]
            assert not spills, (compiler, fname, spills)
            key = fname.split(".")[0]
            found.setdefault(key, []).append(ops)
    def has(fn, need):
        return any(all(ops.count(op) >= n for op, n in need.items()) for ops in found.get(fn, []))
    # float32 batch 1-15 rows (top-level asm, the same code from both compilers): 16 steps
    # unrolled, each one ld1 of indices + weights, tbl + fmla per quad and row, nothing else; a
    # window head is ldp (entry) + ld1 per row (table) + br into the steps
    for r, step, head in ((1, ["ld1"] + ["tbl"] * 2 + ["fmla"] * 2, ["ldp", "ld1", "br"]),
                          (2, ["ld1"] + ["tbl"] * 4 + ["fmla"] * 4, ["ldp", "ld1", "ld1", "br"])):
        body = [op for _, op, _ in funcs[f"tfc_arm_f32j_r{r}"]]
        assert body[body.index("b") + 1:] == step * 16, (compiler, r, body)
        assert [op for _, op, _ in funcs[f"tfc_arm_f32j_r{r}_head"]] == head, (compiler, r)
    assert has("tfc_arm_rows_i8_dot", {"tbl": 2, "sdot": 2}), found.get("tfc_arm_rows_i8_dot")
    assert has("tfc_arm_rows_i8_neon", {"tbl": 1, "smull": 1, "smull2": 1, "sadalp": 2})
    assert has("tfc_arm_block4_f32_u16", {"fmla": 16, "ldr": 16, "ld1": 4})
    # many rows: one channel x 64 rows per stored weight (float32) / quad (int8), two per
    # iteration: 4 ld1 of 4 registers and 16 fmla / sdot each, one ldp of the two tile offsets,
    # the weights; no other memory access
    for fn, mac in (("tfc_arm_rows_f32_csr", "fmla"), ("tfc_arm_rows_i8_quads_dot", "sdot")):
        assert has(fn, {mac: 32, "ld1": 8, "ldp": 1}), (fn, found.get(fn))
        for ops in found[fn]:
            assert set(ops) <= {"ld1", "ld1r", "ldp", "add", mac, "subs", "b.ne"}, (fn, ops)
    # ARMv8.0 int8, many rows: 32 rows per stored quad with smull / smull2 + sadalp; without a
    # weight -128, two quads' products summed in int16 (smlal / smlal2) before each sadalp
    allowed = {"ld1", "ld1r", "ldp", "add", "smull", "smull2", "smlal", "smlal2", "sadalp", "subs", "b.ne"}
    fn = "tfc_arm_rows_i8_quads_neon"
    assert has(fn, {"smull": 16, "smull2": 16, "sadalp": 32, "ld1": 4, "ldp": 1}), found.get(fn)
    fn2 = "tfc_arm_rows_i8_quads_neon2"
    assert has(fn2, {"smull": 8, "smull2": 8, "smlal": 8, "smlal2": 8, "sadalp": 16, "ld1": 4, "ldp": 1}), found.get(fn2)
    for ops in found[fn] + found[fn2]:
        assert set(ops) <= allowed, ops
    # no scalar gathers: the tbl step loops load only indices + weights, with one ld1 / ldp
    for fn in ("tfc_arm_rows_i8_dot", "tfc_arm_rows_i8_neon"):
        for ops in found[fn]:
            assert set(ops) <= {"ld1", "ldp", "tbl", "fmla", "sdot", "smull", "smull2", "sadalp", "subs", "b.ne"}, ops


@pytest.mark.parametrize("compiler", list(COMPILERS))
def test_neon_depthwise_is_vector_code(compiler, tmp_path):
    """tfc_fused_aarch64.c (the fused op's int8 3x3 depthwise), both compilers: the interior-column
    loop (one output pixel x 16 channels per iteration) is NEON: 9 tap loads, smull / smull2
    (+ smlal / smlal2 for tap pairs) and saddw / saddw2 into int32, fcvtns requantization, one
    16-byte store; no scalar per-tap address selection (csel) and at most one stack reload
    (GCC 12 reloads one weight half per pixel, Clang 14 none)."""
    for tool in ("aarch64-linux-gnu-gcc", "clang-14", "aarch64-linux-gnu-objdump"):
        _need(tool)
    funcs = _objdump(compiler, tmp_path, "tfc_fused_aarch64.c")
    for fn, need in (("tfc_dw_row_neon", {"smull": 5, "smull2": 5, "smlal": 4, "smlal2": 4, "saddw": 10,
                                          "saddw2": 10, "fcvtns": 4, "str": 1}),
                     ("tfc_dw_row_neon_w128", {"smull": 9, "smull2": 9, "saddw": 18, "saddw2": 18, "fcvtns": 4,
                                               "str": 1})):
        loops = [lp for lp in _inner_loops(funcs[fn]) if "smull" in [op for _, op, _ in lp]]
        full = [lp for lp in loops if all([op for _, op, _ in lp].count(k) >= v for k, v in need.items())]
        assert full, (compiler, fn, [[op for _, op, _ in lp] for lp in loops])
        for lp in [min(full, key=len)]:  # the interior loop (the border loop picks tap addresses)
            ops = [op for _, op, _ in lp]
            assert len(ops) <= 110, (compiler, fn, len(ops), ops)
            stack = [f"{op} {a}" for _, op, a in lp if "[sp" in a]
            assert len(stack) <= 1, (compiler, fn, stack)
            scalar = [op for op in ops if op in ("ldrb", "ldrsb", "strb", "madd", "mul", "csel")]
            assert not scalar, (compiler, fn, scalar)


def test_case_generator_covers_the_matrix():
    """The case list spans every pattern x dtype x op and the edge shapes the brief asks for."""
    names = [n for n, _ in _make_cases_module().build_cases(np.random.default_rng(0))]
    for dtype in ("float32", "int8"):
        for pattern in ("unstructured", "2:4", "1x4/B4", "1x4/B1", "4x1"):
            ours = [n for n in names if n.startswith(f"{dtype}/{pattern}")]
            rows = {int(re.search(r"/rows(\d+)/", n).group(1)) for n in ours}
            assert {1, 2, 3, 5, 15, 16, 40, 49, 64, 70, 114, 150} <= rows, (dtype, pattern, rows)
            assert any("/conv/" in n for n in ours) and any("/fc/" in n for n in ours)
            for act in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
                assert any(n.endswith("/" + act) for n in ours), (dtype, pattern, act)
    assert sum(n.startswith("malformed/") for n in names) >= 20
    # fused inverted-residual blocks: strides 1 and 2, residual, no expand, odd sizes, both
    # many-row (quads) and < 16-row (tbl) 1x1 plans, malformed params
    mod = _make_cases_module()
    fused = mod.FUSED
    assert {f[5] for f in fused} == {1, 2}
    assert any(f[6].get("residual") for f in fused) and any(f[6].get("expand") is False for f in fused)
    assert any(f[1][0] % 2 and f[1][1] % 2 for f in fused) and any(f[3] % 2 for f in fused)
    strips = [mod.fused_strips(f[1], f[5], f[6].get("same", True)) for f in fused]
    assert any(min(s) < 16 for s in strips) and any(min(s) >= 16 for s in strips)
    # float32 blocks: the same spread, a partial 16-lane depthwise group, several strips
    f32 = mod.FUSED_F32
    assert {f[5] for f in f32} == {1, 2} and any(f[6].get("same") is False for f in f32)
    assert any(f[6].get("residual") for f in f32) and any(f[6].get("expand") is False for f in f32)
    assert any(f[3] % 16 for f in f32) and any(f[1][0] % 2 and f[1][1] % 2 for f in f32)
    f32_strips = [mod.fused_strips(f[1], f[5], f[6].get("same", True)) for f in f32]
    assert any(min(s) < 16 for s in f32_strips) and any(min(s) >= 16 for s in f32_strips)
    assert sum(n.startswith("fused/float32/") for n in names) == len(f32)
    assert sum(n.startswith("fused/") for n in names) == len(fused) + len(f32)
    assert sum(n.startswith("malformed/fused") for n in names) >= 4
    assert sum(n.startswith("malformed/fused f32") for n in names) >= 1


def test_fused_cases_equal_on_the_x86_build(built, tmp_path):
    """The same case file through the x86 build of the same sources (AVX-512 / AVX2 / portable
    kernels, native): the fused blocks' expected outputs are what the x86 fused op computes, which
    tests/native/test_fused_inverted_residual.py shows equal to the dense int8 file on LiteRT."""
    _, cases, names = built
    exe = tmp_path / "tfc_test_x86"
    subprocess.run(["gcc", "-O2", "-std=c11", "-ffp-contract=fast", "-Wno-psabi", "-DTFC_X86_DISPATCH", "-pthread",
                    "-I", str(SRC_DIR)] + _sources() + ["-lm", "-o", str(exe)], check=True, timeout=600)
    for cap in ("0", None):
        env = dict(os.environ)
        env.pop("TFCOMPRESS_ISA_CAP", None)
        if cap is not None:
            env["TFCOMPRESS_ISA_CAP"] = cap
        r = subprocess.run([str(exe), str(cases)], capture_output=True, text=True, timeout=600, env=env)
        failed = [ln for ln in r.stdout.splitlines() if ln.startswith("FAIL")]
        assert not failed, (cap, "\n".join(failed[:20]))
        fused = [ln for ln in r.stdout.splitlines() if ln.startswith("PASS fused/")]
        assert len(fused) == sum(n.startswith("fused/") for n in names)
        # int8 blocks exactly; float32 ones ran within their tolerance (the driver checks it)
        assert all("max_err=0 " in ln for ln in fused if not ln.startswith("PASS fused/float32/"))
        assert r.returncode == 0 and r.stdout.splitlines()[-1] == f"{len(names)} passed, 0 failed"


def test_x86_build_clean_under_asan_and_ubsan(built, tmp_path):
    """The x86 build under AddressSanitizer and UndefinedBehaviorSanitizer: every case at every
    dispatch level (portable, AVX-512F, AVX-512 VNNI, the AVX2 / AVX-VNNI kernels).  In ASan builds
    tfc_alloc64 puts checked guard bytes around every kernel buffer, so a store ASan does not see
    (masked AVX-512 stores are builtins) past a strip or a scratch row still aborts the run."""
    _, cases, names = built
    exe = tmp_path / "tfc_test_x86_asan"
    subprocess.run(["gcc", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-std=c11",
                    "-ffp-contract=fast", "-Wno-psabi", "-DTFC_X86_DISPATCH", "-pthread", "-I", str(SRC_DIR)]
                   + _sources() + ["-lm", "-o", str(exe)], check=True, timeout=600)
    for cap, no512 in (("0", "0"), ("1", "0"), ("2", "0"), (None, "0"), (None, "1")):
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0", TFCOMPRESS_NO_AVX512=no512)
        env.pop("TFCOMPRESS_ISA_CAP", None)
        if cap is not None:
            env["TFCOMPRESS_ISA_CAP"] = cap
        r = subprocess.run([str(exe), str(cases)], capture_output=True, text=True, timeout=600, env=env)
        assert r.returncode == 0 and "ERROR" not in r.stderr and "runtime error" not in r.stderr, \
            (cap, no512, r.stderr[-3000:])
        assert r.stdout.splitlines()[-1] == f"{len(names)} passed, 0 failed", (cap, no512)


def test_kernels_clean_under_asan_and_ubsan(built, tmp_path):
    """The C parts (Prepare, re-layouts, epilogues, portable kernels) under AddressSanitizer and
    UndefinedBehaviorSanitizer on aarch64: every case, the NEON and sdot paths.  (The asm step
    loops are not instrumented; their reads stay inside the windows / blocks that Prepare sized.)"""
    _, cases, names = built
    exe = tmp_path / "tfc_test_asan"
    flags = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-std=c11",
             "-I", str(SRC_DIR)]
    subprocess.run(["aarch64-linux-gnu-gcc"] + flags + _sources() + ["-lm", "-o", str(exe)], check=True)
    for cpu in CPUS:
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")  # LeakSanitizer does not run under qemu
        env.pop("TFCOMPRESS_ISA_CAP", None)
        r = subprocess.run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", "-cpu", cpu, str(exe), str(cases)],
                           capture_output=True, text=True, timeout=600, env=env)
        assert r.returncode == 0 and "ERROR" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-3000:]
        assert r.stdout.splitlines()[-1] == f"{len(names)} passed, 0 failed"


def test_fc_float32_batch1_edge_cases_under_qemu(built, tmp_path):
    """The float32 1-15 row kernel (neon_tbl_f32: per-group windows chosen in Prepare, unrolled
    steps entered by a jump) on its corners, from tflite_export/test/make_cases_fc_f32.py: K and N
    not multiples of 4 / 8 / 16, K < 16, empty channels and groups, one non-zero, a fully dense
    16-column window (16 steps), non-zeros only in the last columns, long empty runs; 1, 2, 3 and 7
    rows; both compilers, both CPU models, against numpy (and the portable kernel at cap 0)."""
    bins, _, _ = built
    spec = importlib.util.spec_from_file_location("_tfc_make_cases_fc_f32",
                                                  SRC_DIR / "test" / "make_cases_fc_f32.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cases = tmp_path / "fc_f32_cases.bin"
    names = mod.write_cases(cases, seed=4321)
    assert len(names) >= 40
    runs = [(c, cpu, None) for c in COMPILERS for cpu in CPUS] + [("gcc", "max", "0")]
    for compiler, cpu, cap in runs:
        env = dict(os.environ)
        env.pop("TFCOMPRESS_ISA_CAP", None)
        if cap is not None:
            env["TFCOMPRESS_ISA_CAP"] = cap
        r = subprocess.run(["qemu-aarch64", "-cpu", cpu, str(bins[compiler]), str(cases)], capture_output=True,
                           text=True, timeout=600, env=env)
        lines = r.stdout.splitlines()
        failed = [ln for ln in lines if ln.startswith("FAIL")]
        assert not failed, (compiler, cpu, cap, "\n".join(failed[:20]))
        assert r.returncode == 0 and lines[-1] == f"{len(names)} passed, 0 failed", (compiler, cpu, r.stderr[-2000:])
        ran = [re.match(r"PASS (.*) max_err=\S+ kernel=(\S+)$", ln).groups() for ln in lines if ln.startswith("PASS ")]
        assert [n for n, _ in ran] == names
        for n, k in ran:
            rows = int(re.search(r"/rows(\d+)/", n).group(1))
            want = "neon_tbl_f32" if cap is None else ("portable_rows_f32" if rows < 4 else "portable_tiled_f32")
            assert k == want, (n, k, want)


@pytest.mark.parametrize("compiler", list(COMPILERS))
def test_sdot_depthwise_is_vector_code(compiler, tmp_path):
    """tfc_dw_row_sdot (dotprod CPUs), both compilers: the stride-1 interior loop handles 3 output
    pixels x 16 channels per iteration with 36 `sdot` (3 per channel quad and pixel, one per
    kernel column), 3 interleaved input columns (24 zip1 / zip2), 12 fcvtns, 3 16-byte stores, no
    stack slot and no scalar byte work, in at most 160 instructions (50 per pixel without the
    clamp, 52 with it, + the loop; the widening NEON loop takes 83-86 per pixel, i.e. about 255
    for 3, and the intrinsics version this asm replaced took 170-199 with GCC 12 spills)."""
    for tool in ("aarch64-linux-gnu-gcc", "clang-14", "aarch64-linux-gnu-objdump"):
        _need(tool)
    funcs = _objdump(compiler, tmp_path, "tfc_fused_aarch64.c")
    loops = [[op for _, op, _ in lp] for lp in _inner_loops(funcs["tfc_dw_row_sdot"])]
    need = {"sdot": 36, "zip1": 12, "zip2": 12, "fcvtns": 12, "st1": 3}
    full = [lp for lp in loops if all(lp.count(k) >= v for k, v in need.items())]
    assert full, (compiler, [len(lp) for lp in loops])
    ops = min(full, key=len)
    assert len(ops) <= 160, (compiler, len(ops), ops)
    assert not [op for op in ops if op in ("ldrb", "ldrsb", "strb", "madd", "mul", "csel")], (compiler, ops)
    lp = [lp for lp in _inner_loops(funcs["tfc_dw_row_sdot"]) if [op for _, op, _ in lp] == ops][0]
    assert not [a for _, _, a in lp if "[sp" in a], (compiler, lp)
