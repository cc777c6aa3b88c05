"""Emitting sparse layers of a converted TFLite model as fast kernels.

`rewrite_tflite` looks at the real weights of every FULLY_CONNECTED and 1x1 CONV_2D op of
a converted model (so it works on any pruned-and-stripped model, whatever pruned it) and
emits each as one of:

* ``custom``: the tfcompress custom op (``TFC_SPARSE_FC`` / ``TFC_SPARSE_CONV_1X1``) with
  its weights packed in the "TFCS" format (``tfcompress.export.sparse_pack``); the dense
  weight buffer is removed from the file.
* ``builtin``: TFLite's own block-sparse FULLY_CONNECTED (float32 weights whose zeros come
  in 1x4 blocks), i.e. the weights re-encoded as a TFLite sparse tensor.
* ``dense``: left as converted, with the reason.

The decisions are stored in the model's metadata (``tfcompress_sparse``) and returned by
`sparse_kernel_report`.
"""

from __future__ import annotations

import json

import numpy as np

from tfcompress.export.sparse_pack import pack_options, pack_sparse_weights

MODES = ("auto", "custom", "builtin")
METADATA_NAME = "tfcompress_sparse"
FC_OP = "TFC_SPARSE_FC"
CONV_OP = "TFC_SPARSE_CONV_1X1"

# float32: sparsity from which the custom kernel beats XNNPACK's dense kernel on this project's
# benchmark (benchmarks/results/sparse_kernels.json); "auto" keeps layers below it dense.
AUTO_MIN_SPARSITY = {"fc": 0.5, "conv": 0.7}
# 1x1 convs with fewer input channels keep the dense kernel (the kernel's input / output
# transposes cost more than the multiply-adds it saves).
AUTO_MIN_CONV_K = 24
# "custom" emits every layer at least this sparse.
CUSTOM_MIN_SPARSITY = 0.3
# Zeros "come in 1x4 blocks" when all-zero blocks hold this share of the zeros.
BLOCK_FIT = 0.95

_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}

# int8 cost model ("auto", per layer): predicted microseconds of the op alone, dense (XNNPACK,
# VNNI) and tfcompress (AVX-512 VNNI kernels), linear in the features of `int8_cost_features`.
# Fitted by non-negative least squares on per-layer timings (each op alone, interleaved rounds,
# x86 AMD Zen 4, 1 thread) by `python benchmarks/sparse_kernels.py --int8`, which writes the fit
# to benchmarks/results/sparse_kernels_int8.json ("cost_model"). many: >= 16 rows (1x1
# convolutions, batched FC); few: 1-15 rows (FC at small batch).
INT8_COST = {
    "dense_many": (0.0, 0.06807, 1.82289, 0.00761),   # 1, P*N/1e3, P*K*N/1e6, P*K/1e3
    "sparse_many": (0.77453, 0.07151, 0.01891, 0.00736),  # 1, P*N/1e3, P*Q/1e3 (Q: stored quads), P*K/1e3
    "dense_few": (0.0, 0.00423, 2.44311),             # 1, K*N/1e3, P*K*N/1e6
    "sparse_few": (0.47965, 0.03721, 0.01675),        # 1, slots/1e3, P*slots/1e3
}
# "auto" emits the int8 custom op only when its predicted time is at most this share of the
# dense op's, so noise in the model cannot make a layer slower.
INT8_MARGIN = 0.85


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def describe_pattern(w2d) -> dict:
    """Sparsity and pattern of a 2-D weight matrix ``[N, K]`` (output, input).

    Args:
        w2d: The weights, any numeric dtype; zeros are exact zeros.

    Returns:
        Dict with ``sparsity`` (zero fraction), ``block_sparsity`` (fraction of all-zero
        1x4 blocks along K, 0 when K % 4 != 0), ``pattern`` ("block1x4", "block8x1" / "block4x1"
        (8 / 4 consecutive outputs share their zeros, e.g. ``pruning.Block((8, 1))``), "2:4",
        "unstructured" or "dense").

    Example:
        >>> w = np.zeros((4, 8), np.float32); w[:, :4] = 1
        >>> describe_pattern(w)["pattern"]
        'block1x4'
        >>> w = np.zeros((16, 6), np.float32); w[:8, 0] = 1; w[8:, 3] = 1
        >>> describe_pattern(w)["pattern"]
        'block8x1'
    """
    w = np.asarray(w2d)
    zero = w == 0
    sparsity = float(zero.mean()) if w.size else 0.0
    n, k = w.shape
    block_sparsity = 0.0
    if k % 4 == 0 and w.size:
        g = zero.reshape(n, k // 4, 4)
        block_sparsity = float(g.all(axis=2).mean())
        two_four = bool((g.sum(axis=2) >= 2).all())
    else:
        two_four = False
    def out_fit(b):  # whole bx1 output blocks (a last partial block is not judged)
        m = n - n % b
        out_zero = zero[:m].reshape(m // b, b, k)
        blocks = float(out_zero.all(axis=1).mean()) if out_zero.size else 0.0
        return blocks > 0 and blocks >= BLOCK_FIT * (float(out_zero.mean()) if out_zero.size else 0.0)

    if sparsity == 0.0:
        pattern = "dense"
    elif block_sparsity > 0 and block_sparsity >= BLOCK_FIT * sparsity:
        pattern = "block1x4"
    elif out_fit(8):
        pattern = "block8x1"
    elif out_fit(4):
        pattern = "block4x1"
    elif two_four:
        pattern = "2:4"
    else:
        pattern = "unstructured"
    return {"sparsity": sparsity, "block_sparsity": block_sparsity, "pattern": pattern}


def int8_cost_features(w2d, rows) -> dict:
    """Features of the int8 cost model for weights ``[N, K]`` applied to ``rows`` input rows.

    Args:
        w2d: The int8 weights (any dtype; zeros are exact zeros), ``[N, K]``.
        rows: Input rows per invoke (batch x height x width of a 1x1 conv; batch of an FC).

    Returns:
        Dict with ``rows``, ``K``, ``N``, ``quads`` (stored 4-input-channel blocks with a
        non-zero weight: the work of the many-row kernel) and ``slots`` (16 x the steps of the
        windowed 1-15-row kernel: quads padded to the longest of 16 channels per 128 inputs).

    Example:
        >>> w = np.zeros((16, 8), np.int8); w[0, 0] = 1; w[1, 5] = 2
        >>> f = int8_cost_features(w, 1); (f["quads"], f["slots"])
        (2, 16)
    """
    w = np.asarray(w2d)
    n, k = w.shape
    k4 = -(-k // 4)
    nz = np.pad(w != 0, ((0, -n % 16), (0, 4 * k4 - k))).reshape(-(-n // 16), 16, k4, 4).any(axis=3)
    quads = int(nz.sum())
    w4 = -(-k4 // 32)
    per_window = np.pad(nz, ((0, 0), (0, 0), (0, 32 * w4 - k4))).reshape(nz.shape[0], 16, w4, 32).sum(axis=3)
    slots = int(16 * per_window.max(axis=1).sum())
    return {"rows": int(rows), "K": int(k), "N": int(n), "quads": quads, "slots": slots}


def predict_int8_us(features) -> tuple:
    """(dense, tfcompress) predicted microseconds of one int8 layer from `int8_cost_features`.

    Example:
        >>> w = np.ones((64, 64), np.int8)
        >>> dense_us, sparse_us = predict_int8_us(int8_cost_features(w, 196))
    """
    p, k, n = features["rows"], features["K"], features["N"]
    if p >= 16:
        d = np.dot(INT8_COST["dense_many"], [1, p * n / 1e3, p * k * n / 1e6, p * k / 1e3])
        s = np.dot(INT8_COST["sparse_many"], [1, p * n / 1e3, p * features["quads"] / 1e3, p * k / 1e3])
    else:
        d = np.dot(INT8_COST["dense_few"], [1, k * n / 1e3, p * k * n / 1e6])
        s = np.dot(INT8_COST["sparse_few"], [1, features["slots"] / 1e3, p * features["slots"] / 1e3])
    return float(d), float(s)


def _rows_of(op, subgraph, kind):
    """Input rows per invoke of an FC / 1x1 conv (None when the shape is not static)."""
    shape = [int(d) for d in subgraph.tensors[op.inputs[0]].shape]
    if not shape or any(d <= 0 for d in shape):
        return None
    return int(np.prod(shape[:-1])) if len(shape) > 1 else 1


def _buffer_array(model, tensor, schema):
    buf = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    if buf is None or buf.data is None or len(buf.data) == 0:
        return None
    dtype = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.INT8: np.int8}.get(tensor.type)
    if dtype is None:
        return None
    data = np.asarray(buf.data, dtype=np.uint8).view(dtype)
    shape = [int(d) for d in tensor.shape]
    if data.size != int(np.prod(shape)):
        return None
    return data.reshape(shape)


def _name(tensor):
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else str(name)


def _uses(subgraph):
    uses = {}
    for op in subgraph.operators:
        for t in op.inputs:
            if t >= 0:
                uses[int(t)] = uses.get(int(t), 0) + 1
    return uses


def _index_vector(values, schema):
    values = np.asarray(values, np.int64)
    top = int(values.max()) if values.size else 0
    if top < 256:
        return schema.SparseIndexVector.Uint8Vector, schema.Uint8VectorT(), values.astype(np.uint8)
    if top < 65536:
        return schema.SparseIndexVector.Uint16Vector, schema.Uint16VectorT(), values.astype(np.uint16)
    return schema.SparseIndexVector.Int32Vector, schema.Int32VectorT(), values.astype(np.int32)


def _builtin_block_sparse(model, tensor, w2d, schema):
    """Re-encodes float FC weights [N, K] as TFLite's 1x4 block-sparse tensor (in place)."""
    n, k = w2d.shape
    blocks = w2d.reshape(n, k // 4, 4)
    nz = np.any(blocks != 0, axis=2)
    rows, cols = np.nonzero(nz)
    segments = np.concatenate([[0], np.cumsum(nz.sum(axis=1))])
    dims = []
    d0 = schema.DimensionMetadataT()
    d0.format = schema.DimensionType.DENSE
    d0.denseSize = n
    dims.append(d0)
    d1 = schema.DimensionMetadataT()
    d1.format = schema.DimensionType.SPARSE_CSR
    d1.arraySegmentsType, d1.arraySegments, seg = _index_vector(segments, schema)
    d1.arraySegments.values = seg
    d1.arrayIndicesType, d1.arrayIndices, idx = _index_vector(cols, schema)
    d1.arrayIndices.values = idx
    dims.append(d1)
    d2 = schema.DimensionMetadataT()
    d2.format = schema.DimensionType.DENSE
    d2.denseSize = 4
    dims.append(d2)
    sp = schema.SparsityParametersT()
    sp.traversalOrder = np.array([0, 1, 2], np.int32)
    sp.blockMap = np.array([1], np.int32)
    sp.dimMetadata = dims
    tensor.sparsity = sp
    values = blocks[rows, cols].astype(np.float32).reshape(-1)
    model.buffers[tensor.buffer].data = np.frombuffer(values.tobytes(), np.uint8)


def _set_packed(model, subgraph, op, weight_index, blob, uses, schema):
    """Points op input 1 at a uint8 tensor holding `blob`, dropping the dense weights."""
    tensor = subgraph.tensors[weight_index]
    if uses.get(weight_index, 0) == 1:
        packed = tensor
        buf = model.buffers[tensor.buffer]
    else:  # shared weights: keep them for the other op, add a new tensor + buffer
        packed = schema.TensorT()
        packed.name = (_name(tensor) + "/tfc_packed").encode()
        buf = schema.BufferT()
        model.buffers.append(buf)
        packed.buffer = len(model.buffers) - 1
        subgraph.tensors.append(packed)
        op.inputs[1] = len(subgraph.tensors) - 1
    buf.data = np.frombuffer(blob, np.uint8)
    buf.offset = 0
    buf.size = 0
    packed.type = schema.TensorType.UINT8
    packed.shape = np.array([len(blob)], np.int32)
    packed.shapeSignature = None
    packed.quantization = None
    packed.sparsity = None


def _candidate(model, subgraph, op, schema):
    """(kind, w2d, info-or-reason) for an op, or None when it is not FC / 1x1 CONV_2D."""
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    if builtin == schema.BuiltinOperator.FULLY_CONNECTED:
        kind = "fc"
    elif builtin == schema.BuiltinOperator.CONV_2D:
        kind = "conv"
    else:
        return None
    if len(op.inputs) < 2 or op.inputs[1] < 0:
        return None
    wt = subgraph.tensors[op.inputs[1]]
    if kind == "conv":
        shape = [int(d) for d in wt.shape]
        opts = op.builtinOptions
        if len(shape) != 4 or shape[1] != 1 or shape[2] != 1:
            return None  # not a 1x1 convolution: not a candidate at all
        if opts is None or opts.strideW != 1 or opts.strideH != 1:
            return kind, None, "1x1 convolution with stride != 1: kept dense"
    w = _buffer_array(model, wt, schema)
    if w is None:
        return kind, None, ("weights are not a constant float32/int8 tensor (float16 or dynamic-range "
                            "export, or shared/computed weights): kept dense")
    w2d = w.reshape(w.shape[0], -1)
    return kind, w2d, None


def _activation(op):
    act = getattr(op.builtinOptions, "fusedActivationFunction", 0) if op.builtinOptions else 0
    return _ACTIVATIONS.get(int(act))


def rewrite_tflite(tflite, sparse_kernels="auto", num_threads=(1, 2), fuse_blocks=True):
    """Emits the sparse FULLY_CONNECTED / 1x1 CONV_2D layers of a TFLite model as fast kernels.

    Called by `tfcompress.export.export_tflite(..., sparse_kernels=...)`; usable alone on any
    converted model. Sparsity is read from the weights themselves.

    Args:
        tflite: TFLite model bytes.
        sparse_kernels: "auto" (per layer: TFLite's block-sparse FC where the zeros come in
            1x4 blocks, the tfcompress custom op where it beats the dense kernel, dense
            otherwise; then checked by the measured guard, see `num_threads`), "custom" (the
            custom op for every layer at least 30 % sparse), or "builtin" (only TFLite's
            built-in block-sparse FC). Defaults to "auto".
        num_threads: "auto" only: the thread counts the app runs the model at (an int or a
            sequence of ints, 1 to 64). The rewritten file is timed against the dense one on
            this host at each of them that the host has cores for (a few seconds, in a child
            process), and layers are reverted to dense, least predicted gain first, until it
            is not slower at any of them (`tfcompress.export._auto_guard`). The measurement is
            this host's: for an ARM app, pass None and time both files on the device. None:
            no measurement, the per-layer cost model alone (1 thread). Defaults to (1, 2).
        fuse_blocks: In "auto" / "custom", int8 and float32 inverted-residual blocks (expand 1x1 ->
            depthwise 3x3 -> project 1x1 [-> ADD]) whose 1x1 convs would both be custom ops run
            as one fused node (``TFC_SPARSE_INVERTED_RESIDUAL``, `tfcompress.export.sparse_fused`); the
            guard reverts a fused block as one unit. In "auto" with the guard on, every block
            whose 1x1s are at least 30 % sparse is proposed fused (the per-layer cost model does
            not model the fused op, which skips the layout transposes and runs its own
            depthwise) and the measurement decides; with ``num_threads=None`` a block is fused
            only where the cost model takes both 1x1s. False keeps one node per layer.
            Defaults to True.

    Returns:
        The rewritten model bytes; the per-layer decisions are in its metadata
        (see `sparse_kernel_report`, `sparse_kernel_guard`). Run it with
        `tfcompress.export.load_interpreter`.

    Raises:
        ValueError: unknown `sparse_kernels` value, bytes that are not a TFLite model, or a bad
            `num_threads`.
        TypeError: `num_threads` is not an int / sequence of ints.

    Example:
        >>> tflite, _ = export_tflite(pruned_model)  # doctest: +SKIP
        >>> fast = rewrite_tflite(tflite, "auto")  # doctest: +SKIP
        >>> [r["emitted"] for r in sparse_kernel_report(fast)]  # doctest: +SKIP
        ['custom', 'dense']
    """
    if sparse_kernels not in MODES:
        raise ValueError(f"sparse_kernels must be one of {', '.join(map(repr, MODES))} or None, "
                         f"got {sparse_kernels!r}.")
    from tfcompress.export import _auto_guard

    threads = _auto_guard.check_threads(num_threads)
    cache = {}
    guarded = sparse_kernels == "auto" and threads is not None
    out = _rewrite(tflite, sparse_kernels, cache=cache, fuse_blocks=fuse_blocks, guarded=guarded)
    if not guarded:
        return out
    return _auto_guard.guard(
        tflite, sparse_kernel_report(out),
        lambda revert, record: _rewrite(tflite, "auto", revert, record, cache, fuse_blocks, guarded), threads)


def _rewrite(tflite, sparse_kernels, revert=frozenset(), guard_record=None, cache=None, fuse_blocks=True,
             guarded=False):
    """`rewrite_tflite` without the guard; layers keyed (subgraph, op index) in `revert` stay
    dense, `guard_record` goes into the metadata; `cache` keeps packed weights between calls
    on the same bytes; `guarded`: "auto" proposes every fusable block (the guard measures)."""
    cache = {} if cache is None else cache
    import flatbuffers

    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    except Exception as e:  # noqa: BLE001 - flatbuffers raises assorted errors on garbage
        raise ValueError(f"Not a TFLite model ({type(e).__name__}: {e}).") from None
    decisions = []
    opcode_index = {}

    def custom_opcode(name):
        if name not in opcode_index:
            for i, oc in enumerate(model.operatorCodes):
                cc = oc.customCode.decode() if isinstance(oc.customCode, bytes) else oc.customCode
                if cc == name:
                    opcode_index[name] = i
                    break
            else:
                oc = schema.OperatorCodeT()
                oc.builtinCode = schema.BuiltinOperator.CUSTOM
                oc.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
                oc.customCode = name
                oc.version = 1
                model.operatorCodes.append(oc)
                opcode_index[name] = len(model.operatorCodes) - 1
        return opcode_index[name]

    def sparse_fc_opcode():
        if "__fc_v8" not in opcode_index:
            oc = schema.OperatorCodeT()
            oc.builtinCode = schema.BuiltinOperator.FULLY_CONNECTED
            oc.deprecatedBuiltinCode = schema.BuiltinOperator.FULLY_CONNECTED
            oc.version = 8
            model.operatorCodes.append(oc)
            opcode_index["__fc_v8"] = len(model.operatorCodes) - 1
        return opcode_index["__fc_v8"]

    notes = (guard_record or {}).get("layer_notes", {})
    for sg_index, subgraph in enumerate(model.subgraphs):
        # op_index in the report and in `revert` is the op's index in the converter's file
        original_index = {id(op): i for i, op in enumerate(subgraph.operators)}
        if fuse_blocks:
            decisions += _fuse_blocks(model, sg_index, schema, sparse_kernels, custom_opcode, revert, notes,
                                      guarded)
        uses = _uses(subgraph)
        for op in subgraph.operators:
            op_index = original_index.get(id(op), -1)
            cand = _candidate(model, subgraph, op, schema)
            if cand is None:
                continue
            kind, w2d, reason = cand
            out_name = _name(subgraph.tensors[op.outputs[0]]).split(";")[0]
            row = {"layer": out_name, "op": "FULLY_CONNECTED" if kind == "fc" else "CONV_2D 1x1",
                   "subgraph": sg_index, "op_index": op_index}
            if w2d is None:
                decisions.append({**row, "emitted": "dense", "reason": reason})
                continue
            pat = describe_pattern(w2d)
            row.update({"shape": [int(d) for d in w2d.shape], "sparsity": round(pat["sparsity"], 4),
                        "pattern": pat["pattern"], "dtype": "int8" if w2d.dtype == np.int8 else "float32"})
            rows = _rows_of(op, subgraph, kind)
            if rows is not None:
                row["rows"] = rows
            emitted, why = _decide(kind, w2d, pat, op, subgraph, model, sparse_kernels, schema, row)
            if f"{sg_index}:{op_index}" in notes:
                row["guard"] = notes[f"{sg_index}:{op_index}"]
            if (sg_index, op_index) in revert and emitted in ("custom", "builtin"):
                emitted, why = "dense", f"{why}; reverted to dense by the measured guard"
            if emitted == "custom":
                try:
                    key = (sg_index, op_index)
                    if key not in cache:
                        cache[key] = _pack_for(kind, w2d, pat, op, subgraph, schema)
                    blob, opts = cache[key]
                except ValueError as e:
                    emitted, why = "dense", f"cannot pack: {e}"
                else:
                    _set_packed(model, subgraph, op, int(op.inputs[1]), blob, uses, schema)
                    op.opcodeIndex = custom_opcode(FC_OP if kind == "fc" else CONV_OP)
                    op.builtinOptionsType = 0
                    op.builtinOptions = None
                    op.customOptions = np.frombuffer(opts, np.uint8)
                    op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
                    row["packed_bytes"] = len(blob)
            elif emitted == "builtin":
                wt = subgraph.tensors[op.inputs[1]]
                if uses.get(int(op.inputs[1]), 0) != 1:
                    emitted, why = "dense", "weights shared with another op: kept dense"
                else:
                    _builtin_block_sparse(model, wt, w2d, schema)
                    # TFLite reads sparse FC weights from FULLY_CONNECTED version 8 on; a separate
                    # op code keeps the dense FCs at their version (XNNPACK takes those).
                    op.opcodeIndex = sparse_fc_opcode()
            row["dense_bytes"] = int(w2d.size * w2d.dtype.itemsize)
            decisions.append({**row, "emitted": emitted, "reason": why})

    meta_buf = schema.BufferT()
    meta = {"mode": sparse_kernels, "layers": decisions}
    if guard_record is not None:
        meta["guard"] = {k: v for k, v in guard_record.items() if k != "layer_notes"}
    meta_buf.data = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    model.buffers.append(meta_buf)
    meta = schema.MetadataT()
    meta.name = METADATA_NAME
    meta.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if
                      (m.name.decode() if isinstance(m.name, bytes) else m.name) != METADATA_NAME]
    model.metadata.append(meta)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _fuse_blocks(model, sg_index, schema, mode, opcode, revert=frozenset(), notes=None, guarded=False):
    """Hook: fuses inverted-residual blocks of one subgraph (`sparse_fused`); report rows.

    A block whose 1x1 convs are in `revert` (the measured guard's, keyed by the ops' indices in
    the converter's file) is not fused; a fused row carries the sum of its convs' predicted times.
    `guarded` ("auto" followed by the measured guard): a 1x1 counts as fusable by the "custom"
    rule, since the per-layer cost model predicts one custom node per layer, not the fused op."""
    from tfcompress.export import sparse_fused

    subgraph = model.subgraphs[sg_index]
    index = {id(op): i for i, op in enumerate(subgraph.operators)}
    predicted, saved = {}, {}

    def conv_decision(op):
        cand = _candidate(model, subgraph, op, schema)
        if cand is None or cand[1] is None:
            return "dense", "not a candidate", None, None
        if (sg_index, index[id(op)]) in revert:
            return "dense", "reverted to dense by the measured guard", None, None
        pat = describe_pattern(cand[1])
        row = {}
        emitted, why = _decide(cand[0], cand[1], pat, op, subgraph, model, mode, schema, row)
        predicted[index[id(op)]] = row.get("predicted_us")
        rows = _rows_of(op, subgraph, "conv")  # the multiply-adds the zeros save (float32: the guard's key)
        saved[index[id(op)]] = (rows or 0) * cand[1].size * pat["sparsity"] / 1e6
        if guarded and emitted == "dense":
            emitted, why = _decide(cand[0], cand[1], pat, op, subgraph, model, "custom", schema)
        return emitted, why, cand[1], pat

    def pack_conv(op, w2d, pat):
        return _pack_for("conv", w2d, pat, op, subgraph, schema)[0]

    def set_packed(op, position, blob):
        assert position == 1
        _set_packed(model, subgraph, op, int(op.inputs[1]), blob, _uses(subgraph), schema)

    rows = sparse_fused.fuse_inverted_residuals(model, sg_index, schema, mode, conv_decision, pack_conv,
                                                set_packed, opcode)
    for row in rows:
        times = [predicted.get(i) for i in row["conv_op_indices"]]
        if all(times):
            row["predicted_us"] = {k: round(sum(t[k] for t in times), 2) for k in ("dense", "tfcompress")}
        row["macs_saved_m"] = round(sum(saved.get(i, 0.0) for i in row["conv_op_indices"]), 3)
        if f"{sg_index}:{row['op_index']}" in (notes or {}):
            row["guard"] = notes[f"{sg_index}:{row['op_index']}"]
    return rows


def _decide(kind, w2d, pat, op, subgraph, model, mode, schema, row=None):
    """(emitted, reason) for one candidate layer (int8 "auto": predicted times into `row`)."""
    s = pat["sparsity"]
    int8 = w2d.dtype == np.int8
    x = subgraph.tensors[op.inputs[0]]
    if _activation(op) is None:
        return "dense", "fused activation the custom op does not implement: kept dense"
    if int8 and x.type != schema.TensorType.INT8:
        return "dense", "hybrid (dynamic-range) layer: int8 weights with float inputs: kept dense"
    if kind == "fc":
        opts = op.builtinOptions
        if opts is not None and getattr(opts, "weightsFormat", 0) != 0:
            return "dense", "shuffled FC weights format: kept dense"
        in_shape = [int(d) for d in x.shape]
        if not in_shape or in_shape[-1] != w2d.shape[1]:
            return "dense", "FC input's last dim differs from the weights' K: kept dense"
    builtin_fits = (kind == "fc" and not int8 and pat["pattern"] == "block1x4"
                    and pat["block_sparsity"] >= 0.5)
    if mode == "builtin":
        if builtin_fits:
            return "builtin", "zeros in 1x4 blocks: TFLite's built-in block-sparse FULLY_CONNECTED"
        return "dense", ("built-in sparse kernels only run float32 FULLY_CONNECTED with >= 50 % "
                         "sparsity in 1x4 blocks")
    if mode == "custom":
        if s >= CUSTOM_MIN_SPARSITY:
            return "custom", f"{s:.0%} sparse ({pat['pattern']}): tfcompress custom op"
        return "dense", f"only {s:.0%} sparse (< {CUSTOM_MIN_SPARSITY:.0%}): kept dense"
    # auto
    if int8:
        rows = _rows_of(op, subgraph, kind)
        if rows is None:
            return "dense", "int8 layer with a dynamic input shape: the cost model needs the rows; kept dense"
        if s == 0:
            return "dense", "no zero weights"
        d_us, s_us = predict_int8_us(int8_cost_features(w2d, rows))
        if row is not None:
            row["predicted_us"] = {"dense": round(d_us, 2), "tfcompress": round(s_us, 2)}
        verdict = (f"int8, {s:.0%} sparse ({pat['pattern']}), {rows} rows: cost model predicts "
                   f"{s_us:.1f} us tfcompress vs {d_us:.1f} us dense (XNNPACK)")
        if s_us <= INT8_MARGIN * d_us:
            return "custom", verdict + f" (<= {INT8_MARGIN:.0%}): tfcompress custom op"
        return "dense", verdict + f" (custom needs <= {INT8_MARGIN:.0%}): kept dense"
    if builtin_fits:
        return "builtin", "zeros in 1x4 blocks: TFLite's built-in block-sparse FULLY_CONNECTED"
    need = AUTO_MIN_SPARSITY[kind]
    if kind == "conv" and w2d.shape[1] < AUTO_MIN_CONV_K and s >= need:
        return "dense", (f"1x1 conv with only {w2d.shape[1]} input channels (< {AUTO_MIN_CONV_K}): "
                         "XNNPACK's dense kernel is faster")
    if s >= need:
        return "custom", f"{s:.0%} sparse ({pat['pattern']}) >= {need:.0%}: tfcompress custom op is faster"
    if s == 0:
        return "dense", "no zero weights"
    return "dense", f"{s:.0%} sparse < {need:.0%}: the dense kernel is as fast"


def _pack_for(kind, w2d, pat, op, subgraph, schema):
    # 1x4 blocks: B=4 (1.5 bytes per int8 weight, 2 for B=1); the int8 kernels re-lay the weights
    # in Prepare (quads of 4 input channels: one vpdpbusd operand per stored block)
    block = 4 if pat["pattern"] == "block1x4" else 1
    act = _activation(op)
    if kind == "fc":
        keep = bool(getattr(op.builtinOptions, "keepNumDims", False)) if op.builtinOptions else False
        layout = 0 if keep else 1
    else:
        layout = 0
    if w2d.dtype == np.int8:
        q = subgraph.tensors[op.inputs[1]].quantization
        scales = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float32)
        zps = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [0], np.int64)
        if scales.size not in (1, w2d.shape[0]):
            raise ValueError("int8 weights need per-tensor or per-output-channel scales")
        if np.any(zps != 0):
            raise ValueError("int8 weights must be symmetric (zero point 0)")
        scales = np.broadcast_to(scales, (w2d.shape[0],)).astype(np.float32)
        blob = pack_sparse_weights(w2d, block=block, scales=scales)
    else:
        # 1x1 convs (many input rows): channels in order, so output slices are stored as vectors
        blob = pack_sparse_weights(w2d.astype(np.float32), block=block, sort_rows=kind == "fc")
    return blob, pack_options(act, layout)


def sparse_kernel_report(tflite) -> list:
    """Per-layer decisions of `rewrite_tflite`, read back from a model's metadata.

    Args:
        tflite: TFLite model bytes written by `rewrite_tflite` / `export_tflite(...,
            sparse_kernels=...)`.

    Returns:
        A list of dicts (``layer``, ``op``, ``shape``, ``sparsity``, ``pattern``,
        ``dtype``, ``emitted`` in {"custom", "builtin", "dense"}, ``reason``,
        ``dense_bytes``, ``packed_bytes``); empty when the model has no such metadata.

    Example:
        >>> for row in sparse_kernel_report(tflite):  # doctest: +SKIP
        ...     print(row["layer"], row["emitted"], row["reason"])
    """
    return _metadata(tflite).get("layers", [])


def sparse_kernel_guard(tflite) -> dict:
    """What the measured guard of ``sparse_kernels="auto"`` measured and chose.

    Args:
        tflite: TFLite model bytes written by `rewrite_tflite` / `export_tflite`.

    Returns:
        A dict: ``threads`` (asked), ``measured_threads`` (those the host had cores for),
        ``candidates`` (per candidate file, all layers first, none (the control) last:
        ``kept_layers``, ``speedup`` {threads: dense / candidate, ratio of their fastest
        time-paired block times; the lower of two measurements}, ``speedup_per_measurement``,
        ``paired_ratio_p10_p50_p90``, ``accepted``), ``measurements``, ``chosen``
        (index), ``tolerance`` (the control's noise), ``rounds``, ``seconds``, ``result`` (one
        sentence); empty when the file was not checked ("custom", "builtin", or
        ``num_threads=None``). Per-layer notes are in `sparse_kernel_report` (``guard``).

    Example:
        >>> sparse_kernel_guard(tflite)["result"]  # doctest: +SKIP
        'kept the 8 of 34 layers with the largest predicted gain (1.21x at 1 thread(s), ...)'
    """
    return _metadata(tflite).get("guard", {})


def _metadata(tflite):
    schema = _schema()
    model = schema.Model.GetRootAs(bytes(tflite), 0)
    for i in range(model.MetadataLength()):
        m = model.Metadata(i)
        name = m.Name()
        if (name.decode() if isinstance(name, bytes) else name) == METADATA_NAME:
            buf = model.Buffers(m.Buffer())
            return json.loads(bytes(buf.DataAsNumpy()).decode())
    return {}


def sparse_kernel_markdown(tflite) -> str:
    """The `sparse_kernel_report` as a Markdown table (empty string when there is none).

    Example:
        >>> print(sparse_kernel_markdown(tflite))  # doctest: +SKIP
    """
    from tfcompress.export._auto_guard import summary_markdown

    rows = sparse_kernel_report(tflite)
    if not rows:
        return ""
    guard = sparse_kernel_guard(tflite)
    lines = ["| layer | op | shape | sparsity | pattern | predicted us (dense / tfcompress) | emitted | why |"
             + (" guard |" if guard else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if guard else "")]
    for r in rows:
        shape = "x".join(map(str, r.get("shape", []))) or "-"
        sp = f"{r['sparsity']:.0%}" if "sparsity" in r else "-"
        pred = r.get("predicted_us")
        pred = f"{pred['dense']:.1f} / {pred['tfcompress']:.1f}" if pred else "-"
        lines.append(f"| {r['layer']} | {r['op']} | {shape} | {sp} | {r.get('pattern', '-')} | {pred} | "
                     f"{r['emitted']} | {r['reason']} |" + (f" {r.get('guard', '-')} |" if guard else ""))
    if guard:
        lines += ["", summary_markdown(guard)]
    return "\n".join(lines)
