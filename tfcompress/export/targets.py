"""Target compatibility checks behind `ExportReport.targets`: XNNPACK (cpu), GPU, Edge TPU.

Methods (each documented in `TargetReport.method`):

* cpu / XNNPACK: the verdict is True when LiteRT loads the model (every op has a CPU kernel);
  `offending_ops` lists the ops XNNPACK does not take. The real LiteRT runtime decides. The model is loaded with
  `ai_edge_litert.interpreter` (XNNPACK is applied by default) with delegate node fusion disabled,
  so each op the XNNPACK delegate claims becomes its own DELEGATE node whose outputs are the
  outputs of that op. Ops with no matching DELEGATE node stay on the built-in reference kernels.
  Dynamic dimensions are resolved to 1 by the interpreter, as at run time.
* gpu: the LiteRT model analyzer (what `tf.lite.experimental.Analyzer.analyze(...,
  gpu_compatibility=True)` calls, here through `ai_edge_litert`'s extension without importing
  TensorFlow), its report parsed: the verdict line and every op flagged "GPU COMPATIBILITY WARNING".
  Cross-checked with `GPU_SUPPORTED_OPS` (the GPU delegate's builtin ops): the analyzer in the
  TF 2.21 / ai-edge-litert 2.3 wheels printed "looks compatible" even for MATRIX_DIAG,
  SEGMENT_SUM or TOPK_V2, which the delegate does not implement, so an op outside the list is
  reported too (it would fall back to the CPU).
* edgetpu: static checks against the public Edge TPU requirements (coral.ai/docs/edgetpu/
  models-intro): every tensor int8/uint8 (int32 only for biases and shapes), every shape static,
  every op in the public supported-op list below. The Edge TPU compiler itself is not run (it
  does not exist for this platform offline); a model that passes here is what the compiler maps
  fully, up to per-op limitations (e.g. tensor rank) that only the compiler checks.
"""

import re

from tfcompress.export._flatbuffer import FLOAT_TYPES
from tfcompress.export.target_report import TargetReport

# Written from the public "Supported operations" table of the Coral Edge TPU documentation,
# in TFLite builtin-operator names.
EDGETPU_SUPPORTED_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "MAXIMUM", "MAX_POOL_2D", "MEAN",
    "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU",
    "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT",
    "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE",
    "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
})
_INTEGER_TYPES = ("int8", "uint8")


def _label(op):
    prefix = f"subgraph {op['subgraph']} " if op["subgraph"] else ""
    return f"{op['name']} ({prefix}op #{op['index']})"


def edgetpu_report(parsed):
    """Edge TPU verdict from the parsed model: full integer, static shapes, supported ops."""
    tensors = parsed["tensors"]
    offending, delegated, notes = [], [], []
    for op in parsed["ops"]:
        reasons = []
        if op["custom"]:
            reasons.append("custom op")
        elif op["name"] not in EDGETPU_SUPPORTED_OPS:
            reasons.append("not in the Edge TPU op list")
        kinds = {tensors[i]["dtype"] for i in op["inputs"] + op["outputs"]}
        float_kinds = sorted(k for k in kinds if k in FLOAT_TYPES)
        if float_kinds:
            reasons.append(f"{'/'.join(float_kinds)} tensors")
        other = sorted(k for k in kinds if k not in _INTEGER_TYPES + FLOAT_TYPES + ("int32",))
        if other:
            reasons.append(f"{'/'.join(other)} tensors")
        dynamic = [i for i in op["inputs"] + op["outputs"] if -1 in tensors[i]["shape_signature"]]
        if dynamic:
            reasons.append("dynamic shape")
        if reasons:
            offending.append(f"{_label(op)}: {', '.join(reasons)}")
        else:
            delegated.append(_label(op))
    io_problems = []
    for i in parsed["inputs"] + parsed["outputs"]:
        t = tensors[i]
        if -1 in t["shape_signature"]:
            io_problems.append(f"tensor '{t['name']}' has a dynamic shape {t['shape_signature']}: "
                         "export with target='edgetpu' to fix the batch to 1")
        if t["dtype"] not in _INTEGER_TYPES:
            io_problems.append(f"model I/O tensor '{t['name']}' is {t['dtype']}: the Edge TPU needs "
                         "int8/uint8 I/O (quantize='int8', input_type/output_type='int8')")
    notes.extend(io_problems)
    if not offending and not io_problems:
        notes.append("full-integer, static shapes, every op in the public Edge TPU op list")
    return TargetReport(
        "edgetpu", not offending and not io_problems,
        offending_ops=offending, delegated_ops=delegated, notes=notes,
        method="static check: full-integer tensors, static shapes, public Edge TPU op list",
    )


_OP_LINE = re.compile(r"^\s*Op#(\d+)\s+([A-Za-z0-9_]+)\(")
_SUBGRAPH_LINE = re.compile(r"^Subgraph#(\d+)")


def run_gpu_analyzer(tflite_bytes):
    """The LiteRT analyzer's printed report with `gpu_compatibility=True`, as text.

    Calls the analyzer extension shipped in `ai_edge_litert` (the one behind
    `tf.lite.experimental.Analyzer`) directly, so TensorFlow is not imported. Native code: run it
    on bytes the interpreter has verified, or in a child process (`_sandbox`).
    """
    from ai_edge_litert import _pywrap_analyzer_wrapper

    return str(_pywrap_analyzer_wrapper.ModelAnalyzer(bytes(tflite_bytes), False, True))


def gpu_report(tflite_bytes, parsed, analysis_text=None):
    """GPU verdict: the LiteRT analyzer's `gpu_compatibility=True` report plus the op list.

    `analysis_text` is the analyzer's output when already computed (e.g. in a child process);
    otherwise the analyzer runs here.
    """
    if analysis_text is None:
        try:
            analysis_text = run_gpu_analyzer(tflite_bytes)
        except Exception as e:  # the analyzer raises on models it cannot read
            return TargetReport("gpu", None, notes=[f"GPU analyzer failed: {e}"],
                                method="LiteRT model analyzer (gpu_compatibility=True)")
    return _gpu_verdict(parsed, parse_gpu_analysis(analysis_text))


def parse_gpu_analysis(text):
    """Parses the analyzer's printed report: ops flagged "GPU COMPATIBILITY WARNING" and verdict.

    Returns:
        `(ops, flagged, notes, looks_compatible)`: every op as `{"subgraph", "index", "name"}`,
        the flagged ones as `{op label: reason}`, summary warnings, and whether the analyzer
        printed its "looks compatible" line.
    """
    ops, flagged, notes = [], {}, []
    subgraph, current = 0, None
    for line in text.splitlines():
        stripped = line.strip()
        m = _SUBGRAPH_LINE.match(stripped)
        if m:
            subgraph, current = int(m.group(1)), None
            continue
        m = _OP_LINE.match(line)
        if m:
            current = {"subgraph": subgraph, "index": int(m.group(1)), "name": m.group(2)}
            ops.append(current)
        if "GPU COMPATIBILITY WARNING:" in line:
            reason = line.split("GPU COMPATIBILITY WARNING:", 1)[1].strip()
            if reason.startswith("Subgraph#") or current is None:
                notes.append(reason)
            else:
                flagged[_label(current)] = reason
        elif not m and stripped:
            current = None  # a warning only belongs to the op line right above it
    return ops, flagged, notes, "looks compatible with GPU delegate" in text


# TFLite builtin ops the LiteRT GPU delegate implements (from its public op support; names only).
# Used to cross-check the analyzer, which in some wheels flags nothing.
GPU_SUPPORTED_OPS = frozenset({
    "ABS", "ADD", "ADD_N", "ATAN2", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CAST", "CEIL",
    "CONCATENATION", "CONV_2D", "COS", "CUMSUM", "DENSIFY", "DEPTHWISE_CONV_2D",
    "DEPTH_TO_SPACE", "DEQUANTIZE", "DIV", "DYNAMIC_UPDATE_SLICE", "ELU", "EMBEDDING_LOOKUP",
    "EQUAL", "EXP", "FLOOR", "FLOOR_DIV", "FLOOR_MOD", "FULLY_CONNECTED", "GATHER", "GELU",
    "GREATER", "GREATER_EQUAL", "HARD_SWISH", "LEAKY_RELU", "LESS", "LESS_EQUAL", "LOG",
    "LOGICAL_AND", "LOGISTIC", "LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM",
    "MIRROR_PAD", "MUL", "NEG", "NOT_EQUAL", "ONE_HOT", "PACK", "PAD", "PADV2", "POW", "PRELU",
    "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "RELU", "RELU6", "RELU_N1_TO_1",
    "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SELECT_V2", "SIGN",
    "SIN", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "SQRT", "SQUARE",
    "SQUARED_DIFFERENCE", "STABLEHLO_CLAMP", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TILE",
    "TRANSPOSE", "TRANSPOSE_CONV",
})
_GPU_CUSTOM_OPS = frozenset({"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D",
                             "MaxUnpooling2D", "Resampler"})


def _gpu_verdict(parsed, analysis):
    ops, flagged, notes, looks_ok = analysis
    offending, delegated = [], []
    for op in parsed["ops"]:
        label = _label(op)
        if label in flagged:
            offending.append(f"{label}: {flagged[label]} (analyzer)")
        elif op["custom"] and op["name"] not in _GPU_CUSTOM_OPS:
            offending.append(f"{label}: custom op the GPU delegate does not implement")
        elif not op["custom"] and op["name"] not in GPU_SUPPORTED_OPS:
            offending.append(f"{label}: not in the GPU delegate op list")
        else:
            delegated.append(label)
    if looks_ok and not flagged and offending:
        notes.append("the LiteRT analyzer printed 'looks compatible' but these ops are not in "
                     "the GPU delegate's op list; they would run on the CPU")
    elif looks_ok and not offending:
        notes.append("the LiteRT analyzer and the GPU delegate op list find every op compatible")
    if not ops and not looks_ok:
        notes.append("the analyzer printed no op listing; verdict from the op list only")
    return TargetReport("gpu", not offending, offending_ops=offending, delegated_ops=delegated,
                        notes=notes, method="tf.lite.experimental.Analyzer (gpu_compatibility="
                        "True), cross-checked against the GPU delegate op list")


def xnnpack_report(tflite_bytes, parsed, nodes=None, load_error=None):
    """CPU verdict: which ops the XNNPACK delegate takes in the real LiteRT interpreter.

    `nodes` are the interpreter's `_get_ops_details()` (with delegate node fusion disabled) and
    `load_error` the message of a failed load, when already computed, e.g. in a child process;
    with neither the model is loaded here.
    """
    from tfcompress.export.interpreter import load_interpreter

    method = ("LiteRT interpreter with XNNPACK (default) and delegate node fusion disabled: one "
              "DELEGATE node per XNNPACK op, matched to ops by output tensors")
    try:
        if load_error is not None:
            raise ValueError(load_error)
        if nodes is None:
            interp = load_interpreter(tflite_bytes, num_threads=1,
                                      experimental_disable_delegate_node_fusion=True)
            nodes = interp._get_ops_details()  # the only per-node view the Python API offers
    except Exception as e:
        return TargetReport("cpu", None, notes=[f"could not load the model in LiteRT: {e}"],
                            method=method)
    claimed = set()
    for node in nodes:
        if node["op_name"] == "DELEGATE":
            claimed.add(tuple(sorted(int(t) for t in node["outputs"])))
    offending, delegated = [], []
    for op in parsed["ops"]:
        if op["subgraph"]:
            continue
        key = tuple(sorted(op["outputs"]))
        if op["custom"]:  # XNNPACK takes no custom op; a DELEGATE node here is another delegate
            offending.append(f"{_label(op)}: custom op (its own kernel or delegate)")
        else:
            (delegated if key in claimed else offending).append(_label(op))
    notes = []
    if any(op["subgraph"] for op in parsed["ops"]):
        notes.append("only the main subgraph is checked")
    if not offending:
        notes.append("XNNPACK delegates every op")
    else:
        notes.append(f"{len(offending)} of {len(offending) + len(delegated)} ops run on the "
                     "built-in (non-XNNPACK) CPU kernels")
    # Every op loaded, so the CPU runs the model; `offending_ops` are the non-XNNPACK ones.
    return TargetReport("cpu", True, offending_ops=offending, delegated_ops=delegated,
                        notes=notes, method=method)
