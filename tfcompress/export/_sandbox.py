"""Runs LiteRT's native code on untrusted model bytes in a child process.

The LiteRT interpreter verifies the flatbuffer structure before building a model, but its GPU
analyzer and some kernels' Prepare do not check every field: a 2-byte change of a valid file can
make them read out of bounds and kill the process with SIGSEGV. `inspect_tflite` and the
`tfcompress` command therefore do their native work (interpreter load + allocate + one invoke on
zeros, the GPU analyzer, the benchmark) here, in a child Python process that gets the bytes on
stdin and answers with one JSON line. A child killed by a signal becomes a `ValueError` naming
the signal, so the caller's process never crashes on a bad file.

The child imports neither TensorFlow nor Keras (only `ai_edge_litert` and `tfcompress.export`'s
light modules), so one call costs about 0.2-0.5 s.

Internal module.
"""

import json
import os
import signal
import subprocess
import sys

# Jobs the child runs; each takes (bytes, options dict) and returns a JSON-able dict.
JOBS = ("probe", "bench", "compare")
DEFAULT_TIMEOUT_S = 600


def _package_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run(job, data, options=None, timeout=DEFAULT_TIMEOUT_S):
    """Runs `job` on model bytes `data` in a child process and returns its result dict.

    Raises:
        ValueError: the child reported an error (message kept), crashed (the signal is named) or
            took longer than `timeout` seconds.
    """
    if job not in JOBS:
        raise ValueError(f"job must be one of {JOBS}, got {job!r}.")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (_package_root(), env.get("PYTHONPATH", "")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["TFCOMPRESS_SANDBOX_CHILD"] = "1"
    cmd = [sys.executable, "-m", "tfcompress.export._sandbox", job, json.dumps(options or {})]
    try:
        proc = subprocess.run(cmd, input=bytes(data), capture_output=True, env=env,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ValueError(f"LiteRT took more than {timeout} s on this model ({job}); the file "
                         "may be corrupt.") from None
    if proc.returncode < 0:
        raise ValueError(
            f"LiteRT crashed ({_signal_name(-proc.returncode)}) on this model "
            f"({len(data)} bytes): the file is corrupt or uses a layout the runtime cannot "
            "handle; re-export it (tfcompress.export.export_tflite).")
    lines = proc.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = " ".join(proc.stderr.decode("utf-8", "replace").split())[-300:]
        raise ValueError(f"the LiteRT child process failed (exit {proc.returncode}) on this "
                         f"model: {tail or 'no output'}") from None
    if "error" in answer:
        raise ValueError(answer["error"])
    return answer


def _probe(data, options):
    """Loads the model as load_interpreter does (allocate + one invoke on zeros)."""
    from tfcompress.export.interpreter import load_interpreter

    result = {}
    kwargs = {}
    if options.get("ops"):
        kwargs["experimental_disable_delegate_node_fusion"] = True
    try:
        interp = load_interpreter(data, num_threads=int(options.get("num_threads", 1)), **kwargs)
    except ValueError as e:
        if not options.get("ops") or "not a valid Flatbuffer" in str(e):
            raise  # unverifiable bytes: nothing else may look at them
        result["ops_error"] = str(e)  # verified, but LiteRT cannot run it: still reportable
        interp = None
    if interp is not None and options.get("ops"):
        result["ops"] = [{"op_name": n["op_name"], "outputs": [int(t) for t in n["outputs"]]}
                         for n in interp._get_ops_details()]
    if options.get("gpu_analysis"):
        from tfcompress.export.targets import run_gpu_analyzer

        result["gpu_analysis"] = run_gpu_analyzer(data)
    return result


def _bench(data, options):
    from tfcompress.export.interpreter import benchmark_tflite, load_interpreter

    interp = load_interpreter(data, num_threads=int(options.get("num_threads", 1)))
    return benchmark_tflite(interp, **options)


def _compare(data, options):
    from tfcompress.export._auto_guard import compare_child

    return compare_child(data, options)


def _child(argv):
    job, options = argv[0], json.loads(argv[1])
    data = sys.stdin.buffer.read()
    try:
        result = {"probe": _probe, "bench": _bench, "compare": _compare}[job](data, options)
    except UnicodeDecodeError:  # op or tensor names LiteRT hands over as text
        result = {"error": "Corrupt TFLite flatbuffer: it holds names that are not valid UTF-8."}
    except (ValueError, TypeError, RuntimeError) as e:
        result = {"error": " ".join(str(e).split()) or type(e).__name__}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    # Skip interpreter teardown: the answer is out, and a destructor must not change it.
    os._exit(0)


if __name__ == "__main__":
    _child(sys.argv[1:])
