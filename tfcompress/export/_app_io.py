"""Inputs and outputs of exported models as apps see them (internal to tfcompress.export).

Static batch sizes, Keras input/output names as the TFLite signature keys in the Keras order, and
matching a Keras model's outputs (lists, dicts) with a file's outputs by name for `verify`.
"""

import numpy as np

from tfcompress.export.interpreter import _ordered, load_interpreter, run_tflite
from tfcompress.export.verify_report import VerifyReport


def calibration_batches(samples, batch):
    """Single samples regrouped into batches of a static batch size (the last one filled up by
    repeating samples from the start), as a static-shape signature takes them."""
    if not batch or batch == 1:
        return samples
    count = -(-len(samples) // batch) * batch
    ring = [samples[i % len(samples)] for i in range(count)]
    return [[np.concatenate([s[k] for s in ring[i : i + batch]]) for k in range(len(samples[0]))]
            for i in range(0, count, batch)]


def static_batch(batch_size, target):
    """The batch dimension of the exported inputs: None (dynamic) or a fixed size."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be None (dynamic batch) or a positive integer, got {batch_size!r}.")
    if target == "edgetpu":
        if batch_size not in (None, 1):
            raise ValueError(f"target='edgetpu' runs batch 1 only, got batch_size={batch_size!r}; "
                             "use batch_size=1 or leave it None.")
        return 1
    return None if batch_size is None else int(batch_size)


def signature_names(names, default):
    """Signature keys from Keras tensor names: valid identifiers, unique, in the same order."""
    import re

    out = []
    for i, name in enumerate(names):
        key = re.sub(r"[^A-Za-z0-9_]", "_", str(name or "")).strip("_") or f"{default}_{i}"
        if key[0].isdigit():
            key = f"{default}_{key}"
        base, k = key, 1
        while key in out:
            key, k = f"{base}_{k}", k + 1
        out.append(key)
    return out


def output_names(model):
    """Keras output names of a Functional model (the keys of dict outputs), else None."""
    import keras

    try:
        outputs = model.output
        if isinstance(outputs, dict):
            return list(outputs)
        names = list(model.output_names)
    except (AttributeError, ValueError, TypeError):
        return None  # e.g. Sequential: the single output keeps Keras's own name, output_0
    return names if len(names) == len(keras.tree.flatten(outputs)) else None


def pack_inputs(model, xs):
    """Positional signature arguments -> the structure the model takes (tensor, list or dict)."""
    import keras

    if len(xs) == 1:
        return xs[0]
    try:
        structure = model.input
    except (AttributeError, ValueError):
        return list(xs)
    return keras.tree.pack_sequence_as(structure, list(xs)) if isinstance(structure, dict) else list(xs)


def named_outputs(outputs, keras_names, names):
    """The model's outputs as a dict keyed by `names` (the signature keys), Keras order kept."""
    if isinstance(outputs, dict):
        return {key: outputs[k] for key, k in zip(names, keras_names)}
    flat = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    return dict(zip(names, flat))


def keras_io_order(tflite, input_names, output_names):
    """Puts the file's inputs and outputs in the Keras order; returns the (maybe new) bytes.

    The converter sorts signature inputs and outputs by name and numbers output tensors
    `...:<i>` in that sorted order, so a model whose Keras names are not alphabetical would come
    out in another order. Here the subgraph's input/output vectors and the signature's tensor
    maps are permuted into the Keras order (a permutation of index lists: no op or buffer
    changes), and output tensors take their signature names, so positional I/O (run_tflite,
    the interpreter's input/output details) follows the Keras model again.
    """
    from ai_edge_litert import schema_py_generated as schema
    import flatbuffers

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    if len(model.signatureDefs or []) != 1:
        return tflite
    sig = model.signatureDefs[0]
    sub = model.subgraphs[sig.subgraphIndex]

    def key(tensor_map):
        name = tensor_map.name
        return name.decode() if isinstance(name, bytes) else name

    changed = False
    for maps, names, attr in ((sig.inputs, input_names, "inputs"), (sig.outputs, output_names, "outputs")):
        by_name = {key(m): m for m in maps or []}
        if not names or sorted(by_name) != sorted(names):
            continue
        ordered = [by_name[n] for n in names]
        indices = [m.tensorIndex for m in ordered]
        if list(getattr(sub, attr)) == indices and [key(m) for m in maps] == list(names):
            continue
        changed = True
        maps[:] = ordered
        setattr(sub, attr, np.asarray(indices, dtype=np.int32))
        if attr == "outputs":
            for m in ordered:
                sub.tensors[m.tensorIndex].name = key(m)
    if not changed:
        return tflite
    builder = flatbuffers.Builder(max(1024, len(tflite)))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def keras_named(model, predicted):
    """`[(name, array)]` of a Keras prediction (array, list/tuple or dict), in the model's order."""
    if isinstance(predicted, dict):
        try:
            order = [k for k in model.output if k in predicted]
        except (AttributeError, ValueError, TypeError):
            order = []
        order += [k for k in predicted if k not in order]
        return [(k, predicted[k]) for k in order]
    flat = list(predicted) if isinstance(predicted, (list, tuple)) else [predicted]
    try:
        names = list(model.output_names)
    except (AttributeError, ValueError, TypeError):
        names = []
    if len(names) != len(flat):
        names = [f"output_{i}" for i in range(len(flat))]
    return list(zip(names, flat))


def _positional_inputs(interp, data):
    """`data` as run_tflite takes it; a dict keyed by input name is put in the file's input order."""
    if not isinstance(data, dict):
        return data
    try:
        key_of = {d["index"]: key for key, d in interp.get_signature_runner().get_input_details().items()}
    except (ValueError, KeyError, RuntimeError):
        key_of = {}
    details = _ordered(interp.get_input_details(), r"input_(\d+)")  # run_tflite's input order
    keys = [key_of.get(d["index"]) for d in details]
    if sorted(map(str, keys)) != sorted(map(str, data)):
        raise ValueError(f"data has the inputs {sorted(data)}, the TFLite model takes {keys}; give "
                         "one array per input name (or a list in the model's input order).")
    return [data[k] for k in keys]


def tflite_named(tflite, data, batch_size):
    """`[(name, array)]` of the TFLite outputs: signature keys where the file has a signature."""
    interp = tflite if hasattr(tflite, "get_output_details") else load_interpreter(tflite)
    outputs = run_tflite(interp, _positional_inputs(interp, data), batch_size=batch_size)
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    details = _ordered(interp.get_output_details(), r":(\d+)$")  # run_tflite's output order
    key_of = {}
    try:
        for key, d in interp.get_signature_runner().get_output_details().items():
            key_of[d["index"]] = key
    except (ValueError, KeyError, RuntimeError):
        pass  # no signature: positions only
    return [(key_of.get(d["index"], f"output_{i}"), o) for i, (d, o) in enumerate(zip(details, outputs))]


def pair_outputs(expected, actual):
    """Matches Keras and TFLite outputs by name when every Keras name is a TFLite key, else by position."""
    if len(expected) != len(actual):
        raise ValueError(f"The Keras model has {len(expected)} outputs "
                         f"({', '.join(n for n, _ in expected)}), the TFLite model {len(actual)} "
                         f"({', '.join(n for n, _ in actual)}).")
    by_name = dict(actual)
    if len(by_name) == len(actual) and all(n in by_name for n, _ in expected):
        return [(n, e, by_name[n]) for n, e in expected]
    return [(n, e, a) for (n, e), (_, a) in zip(expected, actual)]


def compare(e, a):
    """`VerifyReport` of one output."""
    e, a = np.asarray(e, dtype=np.float64), np.asarray(a, dtype=np.float64)
    diffs = np.abs(e - a).ravel()
    agreement = float(np.mean(e.argmax(-1) == a.argmax(-1))) if e.ndim >= 2 and e.shape[-1] > 1 else None
    return VerifyReport(diffs.max() if diffs.size else 0.0, diffs.mean() if diffs.size else 0.0,
                        agreement, len(e), float(np.abs(e).max()) if e.size else 0.0)


def verify_outputs(model, tflite, data, batch_size):
    """`verify`'s comparison: every output, matched by name (else position), with per-output reports."""
    expected = keras_named(model, model.predict(data, batch_size=batch_size, verbose=0))
    pairs = pair_outputs(expected, tflite_named(tflite, data, batch_size))
    for name, e, a in pairs:
        if np.shape(e) != np.shape(a):
            raise ValueError(f"Output '{name}' shapes differ: Keras {np.shape(e)} vs TFLite {np.shape(a)}.")
    per_output = {name: compare(e, a) for name, e, a in pairs}
    diffs = np.concatenate([np.abs(np.asarray(e, np.float64) - np.asarray(a, np.float64)).ravel()
                            for _, e, a in pairs])
    first = per_output[pairs[0][0]]
    scale = max(r.output_scale for r in per_output.values())
    report = VerifyReport(diffs.max() if diffs.size else 0.0, diffs.mean() if diffs.size else 0.0,
                          first.top1_agreement, first.num_samples, scale)
    report.per_output.update(per_output)
    return report
