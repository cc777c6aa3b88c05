"""ExportReport: what is inside a TFLite model and which targets it suits."""

import collections
import re

from tfcompress.export._flatbuffer import FLOAT_TYPES

_BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")


def _keras_order(items, pattern):
    """Sorts I/O entries by the Keras position in their names (see interpreter._ordered)."""
    found = [re.search(pattern, item["name"]) for item in items]
    if len(items) > 1 and all(found):
        return [item for _, item in sorted(zip([int(m.group(1)) for m in found], items),
                                           key=lambda pair: pair[0])]
    return items


class ExportReport:
    """Size, op histogram, tensor dtypes, float fallbacks, weight sparsity and target verdicts.

    Built by `export_tflite` and `inspect_tflite` from the flatbuffer itself (not from what the
    converter was asked to do), so it describes the file that ships.

    Attributes:
        size_bytes: Size of the .tflite file.
        op_histogram: `{op name: count}` over all subgraphs, most frequent first.
        tensor_dtypes: `{dtype: count}` over all tensors.
        weight_dtypes: `{dtype: count}` over constant tensors (weights, biases, shapes).
        inputs, outputs: Lists of `{"name", "dtype", "shape"}` in the Keras model's order (`-1`
            marks a dynamic dimension).
        float_ops: Ops that compute on float activations (`"OP (op #i)"`); QUANTIZE/DEQUANTIZE
            at the boundaries and DEQUANTIZE of constant float16 weights are not counted.
        sparsity: `{tensor name: fraction of exact zeros}` for constant tensors of 16+ values.
        weight_sparsity: Fraction of exact zeros over all those constant tensors.
        custom_ops: Sorted names of custom ops (e.g. tfcompress sparse kernels).
        targets: `{"cpu"|"gpu"|"edgetpu": TargetReport}`.
        target: The target the model was exported for (`compatible` refers to it).
        quantize: The quantize mode used by `export_tflite` (None when inspecting a file).

    Example:
        >>> tflite, report = export_tflite(model, quantize="int8", representative_data=x)  # doctest: +SKIP
        >>> report.op_histogram  # doctest: +SKIP
        {'CONV_2D': 2, 'FULLY_CONNECTED': 1, 'SOFTMAX': 1}
        >>> print(report.to_markdown())  # doctest: +SKIP
    """

    def __init__(self, parsed, targets, target="cpu", quantize=None):
        if target not in ("cpu", "gpu", "edgetpu"):
            raise ValueError(f"target must be one of 'cpu', 'gpu', 'edgetpu', got {target!r}.")
        tensors, ops = parsed["tensors"], parsed["ops"]
        self.size_bytes = int(parsed["size"])
        counts = collections.Counter(op["name"] for op in ops)
        self.op_histogram = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        self.tensor_dtypes = dict(sorted(collections.Counter(t["dtype"] for t in tensors).items()))
        self.weight_dtypes = dict(sorted(
            collections.Counter(t["dtype"] for t in tensors if t["constant"]).items()))
        self.inputs = _keras_order([self._io(tensors[i]) for i in parsed["inputs"]],
                                   r"input_(\d+)")
        self.outputs = _keras_order([self._io(tensors[i]) for i in parsed["outputs"]],
                                    r":(\d+)$")
        self.float_ops = []
        for op in ops:
            if op["name"] in _BOUNDARY_OPS:
                continue
            activations = [tensors[i] for i in op["inputs"] + op["outputs"]
                           if not tensors[i]["constant"]]
            if any(t["dtype"] in FLOAT_TYPES for t in activations):
                prefix = f"subgraph {op['subgraph']} " if op["subgraph"] else ""
                self.float_ops.append(f"{op['name']} ({prefix}op #{op['index']})")
        weights = [t for t in tensors if t["constant"] and t["size"] >= 16]
        self.sparsity = {t["name"]: t["zeros"] / t["size"] for t in weights}
        total = sum(t["size"] for t in weights)
        self.weight_sparsity = sum(t["zeros"] for t in weights) / total if total else 0.0
        self.custom_ops = sorted({op["name"] for op in ops if op["custom"]})
        self.targets = dict(targets)
        self.target = target
        self.quantize = quantize

    @staticmethod
    def _io(t):
        return {"name": t["name"], "dtype": t["dtype"], "shape": list(t["shape_signature"])}

    @property
    def compatible(self):
        """The verdict (True/False/None) for `self.target`."""
        report = self.targets.get(self.target)
        return None if report is None else report.compatible

    @property
    def is_full_integer(self):
        """True when no op computes on float activations and the model I/O is integer."""
        return not self.float_ops and all(
            t["dtype"] not in FLOAT_TYPES for t in self.inputs + self.outputs)

    def to_markdown(self):
        """The report as Markdown (what `tfcompress inspect` prints)."""
        kb = self.size_bytes / 1024
        lines = [f"**Size:** {self.size_bytes:,} bytes ({kb:.1f} KiB)"]
        if self.quantize is not None:
            lines.append(f"**Quantization:** {self.quantize}")
        io = lambda ts: ", ".join(f"{t['name']} {t['dtype']}{t['shape']}" for t in ts)  # noqa: E731
        lines += [f"**Inputs:** {io(self.inputs)}", f"**Outputs:** {io(self.outputs)}", "",
                  "| op | count |", "|---|---:|"]
        lines += [f"| {name} | {n} |" for name, n in self.op_histogram.items()]
        lines += ["", "**Tensor dtypes:** " + ", ".join(
            f"{k} x{v}" for k, v in self.tensor_dtypes.items())]
        lines.append("**Weight dtypes:** " + ", ".join(
            f"{k} x{v}" for k, v in self.weight_dtypes.items()))
        if self.float_ops:
            shown = ", ".join(self.float_ops[:10])
            more = f" and {len(self.float_ops) - 10} more" if len(self.float_ops) > 10 else ""
            lines.append(f"**Float ops ({len(self.float_ops)}):** {shown}{more}")
        else:
            lines.append("**Float ops:** none (integer-only compute)")
        lines.append(f"**Weight sparsity:** {self.weight_sparsity:.1%} exact zeros")
        sparse = {k: v for k, v in self.sparsity.items() if v >= 0.05}
        if sparse:
            lines += ["", "| tensor | zeros |", "|---|---:|"]
            lines += [f"| {k} | {v:.1%} |" for k, v in sorted(sparse.items(), key=lambda kv: -kv[1])]
        lines.append("**Custom ops:** " + (", ".join(self.custom_ops) if self.custom_ops else "none"))
        lines += ["", "| target | verdict | not on the accelerated path |", "|---|---|---|"]
        for name, rep in self.targets.items():
            mark = " (export target)" if name == self.target else ""
            off = "; ".join(rep.offending_ops[:6])
            if len(rep.offending_ops) > 6:
                off += f"; and {len(rep.offending_ops) - 6} more"
            if not off and rep.compatible is None:
                off = "; ".join(rep.notes[:1])
            lines.append(f"| {name}{mark} | {rep.verdict} | {off or '-'} |")
        return "\n".join(lines)

    def __str__(self):
        return self.to_markdown()

    def __repr__(self):
        verdicts = ", ".join(f"{k}={v.verdict}" for k, v in self.targets.items())
        return (f"ExportReport(size_bytes={self.size_bytes}, ops={sum(self.op_histogram.values())}, "
                f"float_ops={len(self.float_ops)}, {verdicts})")
