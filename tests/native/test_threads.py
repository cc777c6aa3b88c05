"""The tfcompress thread pool (tflite_export/tfc_threads.c) and the sparse kernels on threads.

The pool is tested by a standalone C program (tests/native/c/test_tfc_threads.c), built here
with the system compiler, also under ThreadSanitizer and with the condition-variable wait path
(the one iOS / macOS use) forced on Linux.
"""

import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SRC = os.path.join(ROOT, "tflite_export")
CC = os.environ.get("CC", "cc")


def _build(tmp_path, name, *flags):
    exe = str(tmp_path / name)
    cmd = [CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", f"-I{SRC}", *flags,
           os.path.join(HERE, "c", "test_tfc_threads.c"), os.path.join(SRC, "tfc_threads.c"), "-o", exe]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


def _tsan_works(tmp_path):
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    r = subprocess.run([CC, "-fsanitize=thread", str(probe), "-o", str(tmp_path / "probe")],
                       capture_output=True)
    return r.returncode == 0 and subprocess.run([str(tmp_path / "probe")]).returncode == 0


@pytest.mark.parametrize("variant,env", [("futex", {}), ("condvar", {}),
                                         ("futex", {"TFC_POOL_YIELD": "1"}),
                                         ("futex", {"TFC_POOL_TRACE": "1", "TFC_POOL_SPIN_US": "0"})])
def test_pool_c_unit(tmp_path, variant, env):
    """Every task runs exactly once with the right result, over 20k+ jobs of 1..64 tasks; the
    workers take part; max_threads bounds the worker index; two pools and two callers on one
    pool at once; the last release joins every tfc-pool-* thread (counted in /proc). Also with
    the previous sched_yield() waiting (TFC_POOL_YIELD=1) and with the job trace on and no spin
    (every job wakes sleeping workers)."""
    flags = ["-O2"] + (["-DTFC_POOL_NO_FUTEX"] if variant == "condvar" else [])
    exe = _build(tmp_path, f"t_{variant}", *flags)
    r = subprocess.run([exe], capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stderr


@pytest.mark.parametrize("variant", ["futex", "condvar"])
def test_pool_c_unit_thread_sanitizer(tmp_path, variant):
    """The same program under ThreadSanitizer: no data race in the pool."""
    if shutil.which(CC) is None or not _tsan_works(tmp_path):
        pytest.skip("this compiler has no working -fsanitize=thread")
    flags = ["-O1", "-g", "-fsanitize=thread"] + (["-DTFC_POOL_NO_FUTEX"] if variant == "condvar" else [])
    exe = _build(tmp_path, f"tsan_{variant}", *flags)
    r = subprocess.run([exe, "quick"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "TSAN_OPTIONS": "halt_on_error=1"})
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stderr[-3000:]


# ---------------------------------------------------------------------------------------------
# The sparse ops on threads, in the real LiteRT interpreter (through the tfcompress delegate).

import gc  # noqa: E402
import glob  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfcompress.export import export_tflite, load_interpreter  # noqa: E402
from tfcompress.export.sparse import rewrite_tflite  # noqa: E402
from tfcompress.export.sparse_native import custom_ops_in  # noqa: E402
from tfcompress.pruning import Block, Unstructured  # noqa: E402
from tests.native.test_fused_inverted_residual import _block  # noqa: E402

THREADS = (1, 2, 3, 4)


@pytest.fixture(autouse=True)
def _oversubscribe(monkeypatch):
    """The kernels use at most as many threads as CPUs are online; CI machines have 2, and the
    3- and 4-way splits are tested too (test_threads_capped_at_online_cpus checks the cap)."""
    monkeypatch.setenv("TFCOMPRESS_THREADS_OVERSUBSCRIBE", "1")


def _last_kernel_name():
    import ctypes

    from tfcompress.export.sparse_native import library_path

    lib = ctypes.CDLL(library_path())
    lib.TfcLastKernelName.restype = ctypes.c_char_p
    return lib.TfcLastKernelName().decode()


def _pool_threads_settle(want, base):
    """_pool_threads() - base, polled up to 2 s until it equals `want` (a thread that was just
    joined can stay listed in /proc/self/task for a moment)."""
    import time

    got = _pool_threads() - base
    for _ in range(200):
        if got == want:
            break
        time.sleep(0.01)
        got = _pool_threads() - base
    return got


def _pool_threads():
    """Live threads of this process named tfc-pool-* (the sparse kernels' workers)."""
    n = 0
    for comm in glob.glob("/proc/self/task/*/comm"):
        try:
            with open(comm) as f:
                n += f.read().startswith("tfc-pool")
        except OSError:  # the thread ended meanwhile
            pass
    return n


def _conv_chain(hw, channels, pattern, rng, activation="relu"):
    """1x1 convs channels[0] -> channels[1] -> ..., pruned 80 % with a tfcompress pattern."""
    inp = keras.Input((hw, hw, channels[0]))
    h = inp
    for i, c in enumerate(channels[1:]):
        h = keras.layers.Conv2D(c, 1, activation=activation if i + 2 < len(channels) else None)(h)
    model = keras.Model(inp, h)
    for layer in model.layers[1:]:
        w = layer.kernel.numpy()
        mask = pattern.compute_mask(np.abs(w.reshape(1, *w.shape[2:])), 0.8)
        layer.kernel.assign(w * mask.reshape(w.shape))
        layer.bias.assign(rng.standard_normal(layer.bias.shape).astype("float32") * 0.1)
    return model


def _dense_chain(k, n, rng):
    model = keras.Sequential([keras.Input((k,)), keras.layers.Dense(n, activation="relu"), keras.layers.Dense(96)])
    for layer in model.layers:
        w = layer.kernel.numpy()
        w[rng.random(w.shape) < 0.8] = 0
        layer.kernel.assign(w)
        layer.bias.assign(rng.standard_normal(layer.bias.shape).astype("float32") * 0.1)
    return model


def _numpy_reference(model, x):
    """float64 numpy forward pass of a chain of 1x1 convs / Dense layers (relu / linear)."""
    h = x.astype(np.float64)
    for layer in model.layers:
        if not hasattr(layer, "kernel"):
            continue
        w = layer.kernel.numpy().astype(np.float64)
        h = h @ w.reshape(-1, w.shape[-1]) + layer.bias.numpy()
        if layer.get_config()["activation"] == "relu":
            h = np.maximum(h, 0)
    return h


def _run(interp, x):
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    if list(inp["shape"]) != list(x.shape):
        interp.resize_tensor_input(inp["index"], x.shape)
        interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    return interp.get_tensor(out["index"]).copy()


# (model, input): CSR kernel with many 64-row tiles, with one tile (units split by channel
# groups), 4x1 output blocks (quads); FC at 3 and 9 rows (output-slice units, balanced by slots).
# Every model has a layer above the one-thread threshold (tfc_op.c: ~15 us estimated).
CASES = {
    "conv_24x24_unstructured": (lambda rng: _conv_chain(24, (64, 192, 40), Unstructured(), rng), (1, 24, 24, 64)),
    "conv_7x7_unstructured": (lambda rng: _conv_chain(7, (320, 960, 160), Unstructured(), rng), (1, 7, 7, 320)),
    "conv_14x14_block4x1": (lambda rng: _conv_chain(14, (192, 576, 96), Block((4, 1)), rng), (1, 14, 14, 192)),
    "fc_3_rows": (lambda rng: _dense_chain(2048, 1536, rng), (3, 2048)),
    "fc_9_rows": (lambda rng: _dense_chain(1024, 1024, rng), (9, 1024)),
}
# int8 kernels are ~2x faster per multiply-add: larger layers
CASES_INT8 = {
    "conv_28x28": (lambda rng: _conv_chain(28, (96, 576, 96), Unstructured(), rng), (1, 28, 28, 96)),
    "conv_7x7": CASES["conv_7x7_unstructured"],
    "fc_9_rows": (lambda rng: _dense_chain(2048, 1536, rng), (9, 2048)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_threads_bitwise_equal_and_match_numpy(case, rng):
    """1, 2, 3, 4 threads give bit-identical outputs (each output's reduction order does not
    depend on the split) that match a float64 numpy forward pass; 20 invokes in a row with
    changing inputs stay identical; the interpreter's thread count reaches the kernels."""
    build, shape = CASES[case]
    model = build(rng)
    dense, _ = export_tflite(model)
    sparse = rewrite_tflite(dense, "custom")
    assert len(custom_ops_in(sparse)) == 1, custom_ops_in(sparse)
    xs = [rng.standard_normal(shape).astype("float32") for _ in range(3)]
    gc.collect()
    base = _pool_threads()
    outs = {}
    for t in THREADS:
        interp = load_interpreter(sparse, num_threads=t)
        outs[t] = [_run(interp, x) for x in xs]
        # the pool of this interpreter: t - 1 workers (each interpreter has its own pool)
        assert _pool_threads_settle(t - 1, base) == t - 1, (t, _pool_threads() - base)
        for r in range(20):
            i = r % len(xs)
            assert np.array_equal(_run(interp, xs[i]), outs[t][i]), (t, r)
        del interp
        gc.collect()
        assert _pool_threads_settle(0, base) == 0
    for t in THREADS[1:]:
        for i in range(len(xs)):
            assert np.array_equal(outs[t][i], outs[1][i]), (t, i, np.abs(outs[t][i] - outs[1][i]).max())
    for i, x in enumerate(xs):
        ref = _numpy_reference(model, x)
        scale = np.abs(ref).max()
        assert np.abs(outs[1][i] - ref).max() <= 1e-5 * scale, (np.abs(outs[1][i] - ref).max(), scale)


def test_two_interpreters_with_different_threads_alive_at_once(rng):
    """Two interpreters (2 and 4 threads) of one model, invoked alternately, give the 1-thread
    output; each has its own pool (1 + 3 workers); destroying both ends every worker."""
    model = _conv_chain(24, (64, 192, 40), Unstructured(), rng)
    sparse = rewrite_tflite(export_tflite(model)[0], "custom")
    x = rng.standard_normal((1, 24, 24, 64)).astype("float32")
    ref = _run(load_interpreter(sparse, num_threads=1), x)
    gc.collect()
    base = _pool_threads()
    a = load_interpreter(sparse, num_threads=2)
    b = load_interpreter(sparse, num_threads=4)
    for _ in range(10):
        assert np.array_equal(_run(a, x), ref)
        assert np.array_equal(_run(b, x), ref)
    assert _pool_threads_settle(1 + 3, base) == 1 + 3
    del a
    gc.collect()
    assert _pool_threads_settle(3, base) == 3
    assert np.array_equal(_run(b, x), ref)
    del b
    gc.collect()
    assert _pool_threads_settle(0, base) == 0


def test_resize_between_invokes_keeps_threads_consistent(rng):
    """Re-Prepare with another batch (more tiles, new split) on a 3-thread interpreter."""
    model = _conv_chain(7, (320, 960, 160), Unstructured(), rng)
    sparse = rewrite_tflite(export_tflite(model)[0], "custom")
    one, three = load_interpreter(sparse, num_threads=1), load_interpreter(sparse, num_threads=3)
    for batch in (1, 5, 2):
        x = rng.standard_normal((batch, 7, 7, 320)).astype("float32")
        assert np.array_equal(_run(three, x), _run(one, x)), batch


def test_small_layer_stays_on_one_thread(rng):
    """A layer too small for threads to pay (8x8 map, 32 -> 32 channels, ~1 us) runs on the
    calling thread: no worker is started even with num_threads=4."""
    model = _conv_chain(8, (32, 32), Unstructured(), rng)
    sparse = rewrite_tflite(export_tflite(model)[0], "custom")
    assert custom_ops_in(sparse)
    x = rng.standard_normal((1, 8, 8, 32)).astype("float32")
    gc.collect()
    base = _pool_threads()
    interp = load_interpreter(sparse, num_threads=4)
    y = _run(interp, x)
    assert _pool_threads_settle(0, base) == 0
    ref = _numpy_reference(model, x)
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("case", sorted(CASES_INT8))
def test_int8_threads_bitwise_equal_and_within_one_step_of_tflite(case, rng):
    """int8: 1, 2, 3, 4 threads bit-identical, and within one quantization step of TFLite's own
    int8 kernels on the dense file of the same weights; the pool has t - 1 workers."""
    build, shape = CASES_INT8[case]
    model = build(rng)
    calib = rng.standard_normal((32,) + shape[1:]).astype("float32")
    dense, _ = export_tflite(model, quantize="int8", representative_data=calib)
    sparse = rewrite_tflite(dense, "custom")
    assert custom_ops_in(sparse)
    scale, zero = load_interpreter(dense).get_input_details()[0]["quantization"]
    x = rng.standard_normal(shape).astype("float32")
    xq = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    y_dense = _run(load_interpreter(dense, num_threads=1), xq)
    gc.collect()
    base = _pool_threads()
    outs = {}
    for t in THREADS:
        interp = load_interpreter(sparse, num_threads=t)
        outs[t] = _run(interp, xq)
        assert _pool_threads_settle(t - 1, base) == t - 1, (t, _pool_threads() - base)
        del interp
        gc.collect()
    for t in THREADS[1:]:
        assert np.array_equal(outs[t], outs[1]), t
    assert np.abs(outs[1].astype(int) - y_dense.astype(int)).max() <= 1


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_portable_kernels_on_threads(dtype, rng, monkeypatch):
    """The portable C kernels (TFCOMPRESS_ISA_CAP=0: what ARM and other CPUs run without the
    SIMD files) split over threads give the same bits as on one thread."""
    monkeypatch.setenv("TFCOMPRESS_ISA_CAP", "0")
    model = _conv_chain(24, (64, 576, 40), Unstructured(), rng)
    x = rng.standard_normal((1, 24, 24, 64)).astype("float32")
    if dtype == "int8":
        calib = rng.standard_normal((32, 24, 24, 64)).astype("float32")
        dense, _ = export_tflite(model, quantize="int8", representative_data=calib)
        scale, zero = load_interpreter(dense).get_input_details()[0]["quantization"]
        x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    else:
        dense, _ = export_tflite(model)
    sparse = rewrite_tflite(dense, "custom")
    gc.collect()
    base = _pool_threads()
    interps = {t: load_interpreter(sparse, num_threads=t) for t in (1, 2, 3)}
    outs = {t: _run(it, x) for t, it in interps.items()}
    assert _last_kernel_name().startswith("portable_"), _last_kernel_name()
    assert _pool_threads_settle(1 + 2, base) == 1 + 2  # the 2- and 3-thread interpreters split the work
    assert np.array_equal(outs[2], outs[1]) and np.array_equal(outs[3], outs[1])
    if dtype == "float32":
        ref = _numpy_reference(model, x)
        assert np.abs(outs[1] - ref).max() <= 1e-5 * np.abs(ref).max()
    else:
        y_dense = _run(load_interpreter(dense, num_threads=1), x)
        assert np.abs(outs[1].astype(int) - y_dense.astype(int)).max() <= 1


def test_threads_capped_at_online_cpus(rng, monkeypatch):
    """More threads than CPUs online: the kernels use one per CPU (XNNPACK's ops still get
    num_threads), and the result is the 1-thread result."""
    monkeypatch.delenv("TFCOMPRESS_THREADS_OVERSUBSCRIBE")
    cpus = os.sysconf("SC_NPROCESSORS_ONLN")
    model = _conv_chain(24, (64, 192, 40), Unstructured(), rng)
    sparse = rewrite_tflite(export_tflite(model)[0], "custom")
    x = rng.standard_normal((1, 24, 24, 64)).astype("float32")
    ref = _run(load_interpreter(sparse, num_threads=1), x)
    gc.collect()
    base = _pool_threads()
    interp = load_interpreter(sparse, num_threads=cpus + 2)
    assert np.array_equal(_run(interp, x), ref)
    assert _pool_threads_settle(min(cpus, 8) - 1, base) == min(cpus, 8) - 1


# ---------------------------------------------------------------------------------------------
# TFC_SPARSE_INVERTED_RESIDUAL on threads: row ranges and the phased split of small maps.

def _fused_block(hw, cin, ce, co, stride, expand, residual, seed):
    """(dense int8 bytes, fused bytes) of one inverted-residual block, 1x1s 80 % zero in 1x4 blocks."""
    dense = _block(hw, cin, ce, co, stride, expand, residual, False, seed)
    fused = rewrite_tflite(dense, "custom")
    assert custom_ops_in(fused) == ["TFC_SPARSE_INVERTED_RESIDUAL"], custom_ops_in(fused)
    return dense, fused


# (H, W), Cin, Ce, Co, stride, expand, residual; odd sizes and channel counts
FUSED_CASES = {
    "7x7_residual": ((7, 7), 40, 96, 40, 1, True, True),   # phased: one-tile project as channel parts
    "12x10": ((12, 10), 16, 136, 24, 1, True, False),      # phased: project by pixel ranges
    "odd_s2": ((11, 9), 12, 72, 20, 2, True, False),       # 6 output rows: phased
    "tall_s1": ((53, 5), 8, 44, 8, 1, True, True),         # 53 rows: row ranges at 2 and 3 threads
    "no_expand_odd": ((9, 13), 80, 80, 16, 1, False, False),
    "no_expand_tall": ((37, 6), 16, 16, 8, 1, False, False),  # row ranges, 8 per thread
}


@pytest.fixture(scope="module")
def fused_files():
    return {name: _fused_block(*case, seed=300 + i) for i, (name, case) in enumerate(FUSED_CASES.items())}


def _pool_jobs_of_one_invoke(interp, xq):
    """Jobs the pool ran for one invoke (the env-gated trace, TFC_POOL_TRACE=1 at pool creation)."""
    import ctypes

    from tfcompress.export.sparse_native import library_path

    lib = ctypes.CDLL(library_path())
    buf = ctypes.create_string_buffer(64 * 64)  # TfcTraceRec: 64 bytes
    lib.tfc_pool_trace(buf, ctypes.c_longlong(64))  # drop older records
    _run_q(interp, xq)
    n = lib.tfc_pool_trace(buf, ctypes.c_longlong(64))
    rec = [np.frombuffer(buf.raw[64 * i: 64 * i + 64], np.int32) for i in range(n)]
    return [(int(r[6]), int(r[7])) for r in rec]  # (tasks, of them run by workers); tasks < 0: run serially


def _kernel_names():
    """"dw=<name> expand=<name> project=<name>" of the last fused Prepare (one thread at a time)."""
    import ctypes

    from tfcompress.export.sparse_native import library_path

    lib = ctypes.CDLL(library_path())
    lib.TfcFusedLastKernelNames.restype = ctypes.c_char_p
    return lib.TfcFusedLastKernelNames().decode()


def _run_q(interp, xq):
    interp.set_tensor(interp.get_input_details()[0]["index"], xq)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"]).astype(np.int64)


@pytest.mark.parametrize("name", sorted(FUSED_CASES))
def test_fused_block_on_1_2_3_threads_equals_dense_int8(name, fused_files, rng, monkeypatch):
    """The fused block at 1, 2 and 3 threads, with the automatic split, forced row ranges
    (TFCOMPRESS_FUSED_PHASED=0) and forced phases (=1), with the previous sched_yield() pool
    waiting, and at 2 threads on every ISA cap (the channel parts of one-tile 1x1s exist only
    for the int8 quad kernels), gives exactly the dense int8 file's output (XNNPACK, separate
    ops), on several inputs and repeated invokes."""
    dense, fused = fused_files[name]
    d = load_interpreter(dense).get_input_details()[0]
    xs = [rng.integers(-128, 128, tuple(d["shape"])).astype(np.int8) for _ in range(2)]
    want = [_run_q(load_interpreter(dense), x) for x in xs]
    combos = [(t, p, None, None) for t in (1, 2, 3) for p in (None, "0", "1")]
    combos += [(2, None, "1", None)] + [(2, None, None, cap) for cap in ("0", "1")]
    for threads, phased, yield_, cap in combos:
        for var, val in (("TFCOMPRESS_FUSED_PHASED", phased), ("TFC_POOL_YIELD", yield_), ("TFCOMPRESS_ISA_CAP", cap)):
            if val is None:
                monkeypatch.delenv(var, raising=False)
            else:
                monkeypatch.setenv(var, val)
        interp = load_interpreter(fused, num_threads=threads)
        for r in range(4):
            got = _run_q(interp, xs[r % 2])
            np.testing.assert_array_equal(got, want[r % 2], err_msg=f"{threads} threads, phased={phased}, "
                                                                    f"yield={yield_}, cap={cap}, invoke {r}")


# channels per group of each depthwise kernel (tfc_fused_*.c: dw_gw); the expand + depthwise phase
# splits whole groups
DW_GROUP = {"dw_avx512vnni": 64, "dw_avxvnni": 32, "dw_avx512": 32, "dw_avx2": 16, "dw_portable": 16, "dw_neon": 16,
            "dw_neon_w128": 16, "dw_sdot": 16}


@pytest.mark.parametrize("name,threads,phased,want_jobs,want_tasks", [
    ("7x7_residual", 2, None, 2, None),  # < 4 rows per range, stride 1: phased (expand + depthwise
    ("7x7_residual", 3, None, 2, None),  # by channel parts, then the project)
    ("12x10", 4, None, 2, None),
    ("no_expand_odd", 3, None, 2, None),
    ("12x10", 2, None, 1, 2),            # >= 4 rows per range: row ranges, one per thread
    ("odd_s2", 3, None, 1, 3),           # stride 2: row ranges
    ("odd_s2", 3, "1", 2, None),         # ... unless forced (< 8 rows per range)
    ("12x10", 2, "1", 2, None),
    ("7x7_residual", 3, "0", 1, 3),      # forced row ranges
    ("tall_s1", 2, None, 1, 2),          # 53 rows >= 8 per range: row ranges
    ("tall_s1", 3, None, 1, 3),
    ("no_expand_tall", 2, None, 1, 16),  # no halo to recompute: 8 row ranges per thread
    ("no_expand_tall", 3, None, 1, 24),
])
def test_fused_split_seen_from_the_pool(name, threads, phased, want_jobs, want_tasks, fused_files, rng,
                                        monkeypatch):
    """Which split the op chose, seen from the pool's job trace: stride-1 maps of < 4 output rows
    per thread (< 8 with TFCOMPRESS_FUSED_PHASED=1) run as 2 jobs per invoke (expand + depthwise
    by channel parts of whole depthwise groups, balanced by predicted work: 2 .. min(threads,
    groups) tasks; then the project, one task per thread or fewer channel parts); the others (or
    TFCOMPRESS_FUSED_PHASED=0) as one job of row ranges (one per thread; 8 per thread without
    expand, where ranges recompute nothing).  A job the pool ran on the caller after a stall is
    traced with -tasks."""
    monkeypatch.setenv("TFC_POOL_TRACE", "1")
    if phased is None:
        monkeypatch.delenv("TFCOMPRESS_FUSED_PHASED", raising=False)
    else:
        monkeypatch.setenv("TFCOMPRESS_FUSED_PHASED", phased)
    dense, fused = fused_files[name]
    d = load_interpreter(dense).get_input_details()[0]
    xq = rng.integers(-128, 128, tuple(d["shape"])).astype(np.int8)
    interp = load_interpreter(fused, num_threads=threads)
    dw = _kernel_names().split()[0].split("=")[1]
    ce = FUSED_CASES[name][2]
    _run_q(interp, xq)
    jobs = [_pool_jobs_of_one_invoke(interp, xq) for _ in range(20)]
    assert all(len(j) == want_jobs for j in jobs), jobs[:3]
    if want_tasks is not None:
        assert all(abs(j[0][0]) == want_tasks for j in jobs), jobs[:3]
    else:  # channel parts of whole depthwise groups
        groups = -(-ce // DW_GROUP[dw])
        assert all(2 <= abs(j[0][0]) <= min(threads, groups) for j in jobs), (dw, jobs[:3])
    # later phases: one task per thread, or fewer channel parts (at most one per 16 output channels)
    assert all(2 <= abs(tasks) <= threads for j in jobs for tasks, _ in j[1:]), jobs[:3]
    assert all(0 <= w <= abs(tasks) for j in jobs for tasks, w in j), jobs[:3]
    np.testing.assert_array_equal(_run_q(interp, xq), _run_q(load_interpreter(dense), xq))
