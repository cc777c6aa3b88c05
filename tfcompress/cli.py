"""The `tfcompress` command line: demo, inspect, bench, convert.

Every failure (missing, truncated, corrupt or foreign file, bad flag value, unwritable output,
a model the runtime rejects, an unexpected error) ends with one line `tfcompress: error: ...` on
stderr and exit status 2, never a traceback (set TFCOMPRESS_DEBUG=1 to see the runtime logging
and get tracebacks). Ctrl-C exits 130, SIGTERM/SIGHUP 128 + the signal, after cleaning up.
`inspect` and `bench` reject most corrupt files in pure Python before TensorFlow or LiteRT is
loaded, and run LiteRT's native code on the file in a child process, so a file that crashes the
runtime is reported as an error instead of killing the command.

A model with the user's own layers converts after `--import MODULE` (repeatable): a module name on
the Python path (the current folder first) or the path of a .py file. Its top-level classes are
also given to Keras as `custom_objects`, so layers not decorated with
`@keras.saving.register_keras_serializable()` load too. Without it, the error names the unknown
class and the module it was saved from; a module that fails to import is named with its own error
(`ZeroDivisionError: division by zero (my_layers.py:3)`).

Example:
    $ tfcompress demo --out demo_out
    $ tfcompress convert model.keras -o model.tflite --quantize int8 --calibration x.npy
    $ tfcompress convert custom.keras -o custom.tflite --import my_layers  # or --import layers.py
    $ tfcompress inspect model.tflite --target edgetpu
    $ tfcompress bench model.tflite --threads 2 --runs 100
"""

import argparse
import contextlib
import importlib
import importlib.util
import os
import re
import signal
import sys
import tempfile
import warnings
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # only the one-line errors reach stderr
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

PROG = "tfcompress"
QUANTIZE_CHOICES = ("none", "float16", "dynamic", "int8")
TARGET_CHOICES = ("cpu", "gpu", "edgetpu")
MAX_THREADS = 256  # keep in sync with tfcompress.export.interpreter.MAX_THREADS


class _Terminated(BaseException):
    """SIGTERM/SIGHUP turned into an exception, so `finally` blocks clean up temp files."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


_RECEIVED = []  # signals received: library code may swallow or rewrap the exception raised


def _on_signal(signum, frame):
    _RECEIVED.append(signum)
    raise _Terminated(signum)


def _stop_if_signalled():
    """Raises _Terminated if a signal came in and was swallowed on the way: Python runs the
    handler wherever the main thread is, and an exception raised inside a finalizer (`__del__`,
    e.g. TensorFlow's while the converter runs) is printed and dropped."""
    if _RECEIVED:
        raise _Terminated(_RECEIVED[0])


@contextlib.contextmanager
def _cleanup_on_signals():
    """Raises _Terminated on SIGTERM/SIGHUP (main thread only) while the command runs."""
    saved = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) == signal.SIG_DFL:
                saved[sig] = signal.signal(sig, _on_signal)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class UsageError(Exception):
    """A bad input from the user: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _debug():
    return os.environ.get("TFCOMPRESS_DEBUG", "") not in ("", "0")


@contextlib.contextmanager
def _quiet_stderr():
    """Sends the C++ runtime logging on fd 2 to a temp file for the duration (unless debugging).

    Python warnings (``warnings.warn``, e.g. tfcompress's own) still reach the real stderr.
    """
    if _debug():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    real_stderr = os.fdopen(os.dup(saved), "w", buffering=1)
    show = warnings.showwarning

    def show_on_real_stderr(message, category, filename, lineno, file=None, line=None):
        real_stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        warnings.showwarning = show_on_real_stderr
        try:
            yield
        finally:
            warnings.showwarning = show
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            real_stderr.close()


def _progress(message):
    print(f"[{PROG}] {message}", flush=True)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _threads(text):
    value = _positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_THREADS} threads, got {text!r} "
                                         "(more threads than cores only slows LiteRT down)")
    return value


def _thread_counts(text):
    """--sparse-threads: "1,2" -> (1, 2); "none" -> None (no measurement)."""
    if text.strip().lower() == "none":
        return None
    try:
        return tuple(_threads(t) for t in text.split(","))
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"expected thread counts such as 1,2 (or none), got {text!r}: {e}") from None


def _check_output(path, flag="-o", shown=None):
    """The output path is a file name in an existing folder we can write to (before any work)."""
    from tfcompress.export.converter import _check_path

    try:
        _check_path(path)
    except (OSError, ValueError, TypeError) as e:
        raise UsageError(f"{flag} {shown or path}: {_one_line(e)}") from None


def _existing_file(path, what):
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory, expected {what}")
    if os.path.getsize(path) == 0:
        raise UsageError(f"{path} is empty, expected {what}")


def _read_tflite(path):
    """The file's bytes after the pure-Python checks (no TensorFlow, no native LiteRT code)."""
    _existing_file(path, "a .tflite file")
    from tfcompress.export._flatbuffer import read_bytes, read_model
    from tfcompress.export.analysis import _check_indices

    try:
        data = read_bytes(path)
    except (ValueError, OSError) as e:
        raise UsageError(_one_line(e)) from None
    try:
        _check_indices(read_model(data))  # truncated/corrupt flatbuffers, before LiteRT
    except (ValueError, OSError) as e:
        text = _one_line(e)
        raise UsageError(f"{path}: {text}" if "orrupt" in text else
                         f"{path}: corrupt TFLite flatbuffer: {text}") from None
    return data


def _cmd_inspect(args):
    data = _read_tflite(args.model)
    from tfcompress.export.analysis import report_for_bytes

    try:  # LiteRT's native code runs in a child process: a crash there is a clean error
        report = report_for_bytes(data, args.target, None, trusted=False)
    except ValueError as e:
        raise UsageError(f"{args.model}: {_one_line(e)}") from None
    print(f"# {args.model}\n")
    print(report.to_markdown())
    return 0


def _cmd_bench(args):
    data = _read_tflite(args.model)
    from tfcompress.export import _sandbox

    _progress(f"benchmarking {args.model}: {args.runs} runs, {args.threads} thread(s)")
    try:  # load + one invoke on zeros + the timed runs, all in a child process
        stats = _sandbox.run("bench", data, {"runs": args.runs, "warmup": args.warmup,
                                             "num_threads": args.threads})
    except ValueError as e:
        raise UsageError(f"{args.model}: {_one_line(e)}") from None
    print(f"median {stats['median_ms']:.3f} ms, p90 {stats['p90_ms']:.3f} ms "
          f"(mean {stats['mean_ms']:.3f} ms, min {stats['min_ms']:.3f} ms; "
          f"{stats['runs']} runs, {stats['num_threads']} thread(s), batch {stats['batch_size']})")
    return 0


def _import_user_module(spec):
    """Imports `spec` (a dotted module name, or the path of a .py file) for its custom layers.

    A module name is looked up on the Python path with the current folder first (as `python -m`
    does); a file is imported under its file name (`layers.py` -> module `layers`), which is the
    module name Keras records in a `.keras` file for classes defined there.
    """
    is_path = spec.endswith(".py") or os.sep in spec or (os.altsep or os.sep) in spec
    if is_path:
        if not os.path.isfile(spec):
            raise UsageError(f"--import {spec}: no such file (give a module name such as my_layers, "
                             "or the path of the .py file that defines the custom layers)")
        name = os.path.splitext(os.path.basename(spec))[0]
        if not name.isidentifier():
            raise UsageError(f"--import {spec}: {name!r} is not a valid module name; rename the file "
                             "(letters, digits and underscores, e.g. my_layers.py)")
        folder = os.path.dirname(os.path.abspath(spec))
        if folder not in sys.path:  # so the module's own sibling imports resolve
            sys.path.insert(0, folder)
        module_spec = importlib.util.spec_from_file_location(name, spec)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException as e:
            sys.modules.pop(name, None)
            if isinstance(e, (KeyboardInterrupt, _Terminated)):
                raise
            raise UsageError(f"--import {spec}: importing it failed: {_root_cause(e)}") from None
        return module
    if not all(part.isidentifier() for part in spec.split(".")):
        raise UsageError(f"--import {spec!r}: not a module name or a .py file")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name and (spec == e.name or spec.startswith(e.name + ".")):
            raise UsageError(f"--import {spec}: no module named {e.name!r} on the Python path (run from "
                             "the folder that holds it, set PYTHONPATH, or give the path of the .py "
                             "file)") from None
        raise UsageError(f"--import {spec}: importing it failed: {_root_cause(e)}") from None
    except (KeyboardInterrupt, _Terminated):
        raise
    except BaseException as e:  # SystemExit, SyntaxError, any error the module raises
        raise UsageError(f"--import {spec}: importing it failed: {_root_cause(e)}") from None


def _defined_in(module):
    """`{name: object}` of the classes and functions defined at the top level of `module`.

    Given to `load_model` as `custom_objects`, so classes the user did not decorate with
    `@keras.saving.register_keras_serializable()` load too (Keras 3 never imports a module named
    in a file by itself).
    """
    return {name: obj for name, obj in vars(module).items()
            if callable(obj) and getattr(obj, "__module__", None) == module.__name__}


def _root_cause(error):
    """`Type: message (file:line)` of the innermost cause of `error`, on one line."""
    while error.__cause__ is not None or (error.__context__ is not None and not error.__suppress_context__):
        error = error.__cause__ or error.__context__
    where = ""
    if isinstance(error, SyntaxError) and error.filename:
        where = f" ({os.path.basename(error.filename)}:{error.lineno})"
    else:
        tb = error.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where = f" ({os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno})"
    return f"{type(error).__name__}: {_one_line(error)}{where}"


def _classes_in_config(obj, out):
    """`{class_name: module}` of every serialized object in a `.keras` config."""
    if isinstance(obj, dict):
        if isinstance(obj.get("class_name"), str) and "config" in obj:
            out.setdefault(obj["class_name"], obj.get("module"))
        if isinstance(obj.get("base"), dict) and "class_name" in obj["base"]:  # tfcompress RebuiltModel
            out.setdefault(obj["base"]["class_name"], obj["base"].get("module"))
        for value in obj.values():
            _classes_in_config(value, out)
    elif isinstance(obj, list):
        for value in obj:
            _classes_in_config(value, out)
    return out


def _load_error(path, error, config):
    """The root cause of a failed `load_model`: the missing class and its module, or the innermost error."""
    text = " ".join(str(error).split())
    missing = re.search(r"Could not locate class '([^']+)'", text) or re.search(
        r"its class '([^']+)' \(registered as", text)
    if missing:
        name = missing.group(1)
        module = _classes_in_config(config, {}).get(name)
        where = f" (module '{module}')" if module and not module.startswith("keras") else ""
        hint = f"--import {module}" if where else "--import MODULE"
        if module == "__main__":
            where, hint = " (defined in the saving script)", "--import FILE.py"
        return (f"cannot load {path}: custom class '{name}'{where} is unknown: pass {hint} "
                "(the module or .py file defining it)")
    cause = text.rsplit("Exception encountered: ", 1)[-1].split(" Full object config:")[0]
    return f"cannot load {path} as a Keras model: {_one_line(cause)}"


def _load_keras(path, imports=()):
    _existing_file(path, "a .keras model")
    if not path.endswith(".keras"):
        raise UsageError(f"{path}: expected a Keras v3 model file ending in .keras "
                         "(save with model.save('model.keras'))")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path} is not a .keras model (not a zip archive; truncated or another "
                         "format)")
    import json

    with zipfile.ZipFile(path) as z:
        if "config.json" not in z.namelist():
            raise UsageError(f"{path} is not a .keras model (no config.json inside)")
        try:
            config = json.loads(z.read("config.json"))
        except (ValueError, zipfile.BadZipFile, OSError) as e:
            raise UsageError(f"{path} is not a .keras model (unreadable config.json: {_one_line(e)})") from None
    import keras

    import tfcompress  # noqa: F401  registers every tfcompress class for deserialization

    custom_objects = {}
    for spec in imports:  # the user's custom layers (registered when their module is imported)
        custom_objects.update(_defined_in(_import_user_module(spec)))
    try:
        return keras.saving.load_model(path, custom_objects=custom_objects or None)
    except Exception as e:  # a corrupt archive surfaces as many exception types
        raise UsageError(_load_error(path, e, config)) from None


def _load_calibration(path):
    import numpy as np

    _existing_file(path, "a .npy array")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:
        raise UsageError(f"{path} is not a readable .npy array: {_one_line(e)}") from None
    if not isinstance(data, np.ndarray) or data.ndim < 2 or len(data) == 0:
        raise UsageError(f"{path}: expected an array of inputs of shape (n, ...), got "
                         f"{getattr(data, 'shape', type(data).__name__)}")
    if np.iscomplexobj(data):
        raise UsageError(f"{path}: complex values ({data.dtype}); the model takes real inputs: "
                         "save the real-valued inputs (e.g. np.real(x))")
    if not np.issubdtype(data.dtype, np.number):
        raise UsageError(f"{path}: expected a numeric array, got dtype {data.dtype}")
    return data.astype("float32") if np.issubdtype(data.dtype, np.floating) else data


def _cmd_convert(args):
    _check_output(args.output)
    quantize = {"none": "float32", None: None}.get(args.quantize, args.quantize)
    int8 = quantize == "int8" or (quantize is None and args.target == "edgetpu")
    if args.calibration and not int8:
        raise UsageError("--calibration is only used for full int8 (--quantize int8 or --target "
                         "edgetpu); drop it or add --quantize int8")
    calibration = _load_calibration(args.calibration) if args.calibration else None
    if calibration is not None:  # before loading TensorFlow: NaN/inf/1e30 fail in a second
        from tfcompress.export.converter import check_representative_samples

        try:
            check_representative_samples([[calibration]])
        except ValueError as e:
            text = _one_line(e).replace("representative_data", "the calibration data")
            raise UsageError(f"{args.calibration}: {text}") from None
    _progress(f"loading {args.model}")
    model = _load_keras(args.model, args.imports or ())
    from tfcompress.export import export_tflite, prepare_for_export
    from tfcompress.export.converter import _atomic_write
    from tfcompress.export.prepare import needs_calibration

    if calibration is not None and len(model.inputs) == 1:
        expected = tuple(model.inputs[0].shape[1:])
        if len(expected) != calibration.ndim - 1 or any(
                e is not None and e != got for e, got in zip(expected, calibration.shape[1:])):
            raise UsageError(f"{args.calibration} holds inputs of shape {calibration.shape[1:]}, but "
                             f"{args.model} takes {expected}; save samples of the model's input shape")
    if int8 and calibration is None and needs_calibration(prepare_for_export(model)):
        raise UsageError("full int8 (--quantize int8 or --target edgetpu) needs --calibration "
                         "DATA.npy: a few hundred typical inputs saved with numpy.save")
    _progress(f"converting to TFLite (quantize={quantize or 'target default'}, "
              f"target={args.target})")
    try:
        tflite, report = export_tflite(model, None, quantize=quantize,
                                       representative_data=calibration, target=args.target,
                                       input_type=args.input_type, output_type=args.output_type,
                                       batch_size=args.batch_size, sparse_kernels=args.sparse_kernels,
                                       num_threads=args.sparse_threads)
        _stop_if_signalled()  # a SIGTERM during the conversion: write nothing
        _atomic_write(args.output, tflite)
    except (ValueError, TypeError, OSError) as e:
        raise UsageError(_one_line(e)) from None
    _progress(f"wrote {args.output} ({report.size_bytes:,} bytes)")
    print(report.to_markdown())
    if args.sparse_kernels:
        from tfcompress.export.sparse import sparse_kernel_markdown

        with open(args.output, "rb") as f:
            print("\n" + sparse_kernel_markdown(f.read()))
    return 0


def _cmd_demo(args):
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out} is a file; give a directory (created if missing)")
    # A writable folder (or one that can be created) before the minutes of training: probe the
    # nearest folder that exists (run_demo creates the missing ones).
    existing = os.path.abspath(args.out)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"--out {args.out}: {existing} is a file, not a folder")
    _check_output(os.path.join(existing, "model.tflite"), flag="--out", shown=args.out)
    from tfcompress.demo import run_demo

    run_demo(out_dir=args.out, epochs=args.epochs, quick=args.quick, progress=_progress)
    return 0


def build_parser():
    """The argparse parser of the `tfcompress` command (errors raise UsageError)."""
    parser = _Parser(prog=PROG, description="Compress Keras 3 models and lower them to TFLite.")
    sub = parser.add_subparsers(dest="command", metavar="{demo,inspect,bench,convert}")
    sub.required = True

    demo = sub.add_parser("demo", help="train the digits CNN, export, verify, benchmark, report")
    demo.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    demo.add_argument("--epochs", type=_positive_int, default=None,
                      help="training epochs (default: 12, or 3 with --quick)")
    demo.add_argument("--quick", action="store_true", help="fewer epochs and runs (for tests)")
    demo.set_defaults(func=_cmd_demo)

    insp = sub.add_parser("inspect", help="report ops, dtypes, sparsity and target verdicts")
    insp.add_argument("model", help="a .tflite file")
    insp.add_argument("--target", choices=TARGET_CHOICES, default="cpu")
    insp.set_defaults(func=_cmd_inspect)

    bench = sub.add_parser("bench", help="median and p90 latency in the LiteRT interpreter")
    bench.add_argument("model", help="a .tflite file")
    bench.add_argument("--threads", type=_threads, default=1, help=f"1 to {MAX_THREADS}")
    bench.add_argument("--runs", type=_positive_int, default=50)
    bench.add_argument("--warmup", type=_positive_int, default=5)
    bench.set_defaults(func=_cmd_bench)

    conv = sub.add_parser("convert", help="convert a .keras model to .tflite")
    conv.add_argument("model", help="a .keras file")
    conv.add_argument("-o", "--output", required=True, help="the .tflite file to write")
    conv.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=None,
                      help="default: float16 for gpu, int8 for edgetpu, none for cpu")
    conv.add_argument("--calibration", help=".npy array of inputs (n, ...) for int8")
    conv.add_argument("--target", choices=TARGET_CHOICES, default="cpu")
    conv.add_argument("--input-type", choices=("float32", "int8", "uint8"), default=None)
    conv.add_argument("--output-type", choices=("float32", "int8", "uint8"), default=None)
    conv.add_argument("--batch-size", type=_positive_int, default=None,
                      help="fixed batch size (e.g. 1 for apps): static shapes, every op on the delegate")
    conv.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                      help="import MODULE (a module name or a .py file) before loading, so the "
                           "model's custom layers are known; repeatable")
    conv.add_argument("--sparse-kernels", choices=("auto", "custom", "builtin"), default=None,
                      help="tfcompress sparse kernels for pruned layers (auto: per layer by cost, checked "
                           "by timing on this host)")
    conv.add_argument("--sparse-threads", type=_thread_counts, default=(1, 2),
                      help="with --sparse-kernels auto: the thread counts the app runs at; the file is timed "
                           "against dense on this host at each (default 1,2; none: cost model only, e.g. "
                           "for an ARM app: time both files on the device)")
    conv.set_defaults(func=_cmd_convert)
    return parser


def _one_line(error):
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def main(argv=None):
    """Entry point of the `tfcompress` console script; returns the exit status."""
    parser = build_parser()
    del _RECEIVED[:]
    try:
        with _cleanup_on_signals():
            args = parser.parse_args(argv)
            with _quiet_stderr():
                status = args.func(args)
            _stop_if_signalled()
            return status
    except (Exception, _Terminated) as e:
        if not _RECEIVED:
            return _report_failure(e)
        print(f"{PROG}: error: terminated by {signal.Signals(_RECEIVED[0]).name}",
              file=sys.stderr)
        return 128 + _RECEIVED[0]
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted", file=sys.stderr)
        return 130


def _report_failure(e):
    """One line on stderr and exit status 2 for any failure (a traceback with TFCOMPRESS_DEBUG)."""
    if isinstance(e, UsageError):
        print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    if _debug():
        raise e
    print(f"{PROG}: error: {type(e).__name__}: {_one_line(e)} "
          "(set TFCOMPRESS_DEBUG=1 for the traceback)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
