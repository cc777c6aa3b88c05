"""Fusing int8 and float32 inverted-residual blocks into one ``TFC_SPARSE_INVERTED_RESIDUAL`` node.

`rewrite_tflite` calls `fuse_inverted_residuals` before it looks at single layers. It finds the
MobileNetV2 block (int8, or float32: every tensor and weight of the block the same type)

    [CONV_2D 1x1 expand (+ReLU6)] -> [PAD] -> DEPTHWISE_CONV_2D 3x3 (stride 1/2) -> CONV_2D 1x1
    project (linear) -> [ADD with the block input]

and, when both 1x1 convolutions would be emitted as the tfcompress custom op (the block without
expand: its project conv), replaces the chain by one node that runs the whole block on row strips
(``tflite_export/tfc_fused.c``): the expanded tensor never exists in memory, and XNNPACK is not
entered and left around every block.

An int8 or float32 block without expand whose depthwise reads a dense 3x3 CONV_2D over a tensor of
at most 16 channels (MobileNetV2's first conv over the image, "stem") takes that conv in as its
expand: the node's input is then the image, and the conv's weights ``[O, 3, 3, C]`` are packed as a
dense 1x1 over the ``9 C`` taps (rounded up to 4 with zero columns). The op runs it straight from
the image (int8: on x86 with AVX-512 VNNI and on aarch64 with dot products, through an im2col per
strip elsewhere; float32: on every CPU); the network's first op then
runs in the tfcompress node with its first block (no XNNPACK partition before it, no stem output
tensor written and read back).

Node inputs: ``[x, expand TFCS, expand bias, params "TFCI", depthwise bias, project TFCS, project
bias]`` (7), or without expand ``[x, params, depthwise bias, project TFCS, project bias]`` (5).
The params blob ("TFCI" v1, little-endian, layout in ``tflite_export/tfc_fused.c``) holds the
shapes, strides, paddings, activations and the quantization of the three intermediate tensors,
then the depthwise weights int8 ``[3][3][C]`` and their per-channel scales; a float32 block (flag
bit 3) has no quantization fields and float32 depthwise weights. Float32 outputs match the dense
file within float rounding (sums in another order); int8 outputs are equal to it.
"""

from __future__ import annotations

import os
import struct

import numpy as np

FUSED_OP = "TFC_SPARSE_INVERTED_RESIDUAL"
PARAMS_MAGIC = b"TFCI"
PARAMS_VERSION = 1
HEADER_BYTES = 96
_ACT_CODES = {"NONE": 0, "RELU": 1, "RELU6": 2, "RELU_N1_TO_1": 3}
_FUSED_ACTS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


def _pad16(buf):
    buf.extend(b"\0" * ((-len(buf)) % 16))


def pack_fused_params(*, in_hw, c_in, c_exp, c_out, out_hw, stride, pad_tl, has_expand, has_residual,
                      acts, q_exp, q_dw, q_proj, dw_weights, dw_scales, stem=None, dtype="int8") -> bytes:
    """Packs the "TFCI" v1 parameters blob of a ``TFC_SPARSE_INVERTED_RESIDUAL`` node.

    Args:
        in_hw: (H, W) of the block input.
        c_in: Input channels (= expanded channels when there is no expand conv).
        c_exp: Expanded (depthwise) channels.
        c_out: Output channels of the project conv.
        out_hw: (H_out, W_out) of the depthwise / block output.
        stride: Depthwise stride, 1 or 2 (both axes).
        pad_tl: (top, left) padding of the depthwise input, each 0..2.
        has_expand: Whether the block starts with a 1x1 expand conv.
        has_residual: Whether the block input is added to the project output.
        acts: Activation names of (expand, depthwise, project).
        q_exp: (scale, zero point) of the expand output (ignored without expand: use the input's).
        q_dw: (scale, zero point) of the depthwise output.
        q_proj: (scale, zero point) of the project output (the ADD's first operand).
        dw_weights: depthwise weights ``[3, 3, c_exp]``, int8 (float32 for a float32 block).
        dw_scales: float32 per-channel depthwise weight scales ``[c_exp]`` (None for float32).
        stem: None, or ``{"hw": (Hi, Wi), "channels": Ci, "stride": s, "pad_tl": (top, left)}``:
            the expand is a 3x3 conv over the image ``[1, Hi, Wi, Ci]``; then `in_hw` is the
            conv's output size and `c_in` is ``9 * Ci`` rounded up to 4.
        dtype: "int8", or "float32": a float32 block (flag bit 3; activations, biases and
            depthwise weights float32, the three `q_*` must be ``(0, 0)``).

    Returns:
        The blob (bytes).

    Example:
        >>> blob = pack_fused_params(in_hw=(4, 4), c_in=8, c_exp=16, c_out=8, out_hw=(4, 4),
        ...     stride=1, pad_tl=(1, 1), has_expand=True, has_residual=True,
        ...     acts=("RELU6", "RELU6", "NONE"), q_exp=(0.05, -128), q_dw=(0.05, -128),
        ...     q_proj=(0.1, 3), dw_weights=np.ones((3, 3, 16), np.int8),
        ...     dw_scales=np.full(16, 0.01, np.float32))
        >>> blob[:4], len(blob)
        (b'TFCI', 304)
        >>> len(pack_fused_params(in_hw=(4, 4), c_in=8, c_exp=16, c_out=8, out_hw=(4, 4), stride=1,
        ...     pad_tl=(1, 1), has_expand=True, has_residual=True, acts=("RELU6", "RELU6", "NONE"),
        ...     q_exp=(0, 0), q_dw=(0, 0), q_proj=(0, 0), dw_weights=np.ones((3, 3, 16), np.float32),
        ...     dw_scales=None, dtype="float32"))
        672
    """
    if dtype not in ("int8", "float32"):
        raise ValueError(f"dtype must be 'int8' or 'float32', got {dtype!r}")
    f32 = dtype == "float32"
    w = np.asarray(dw_weights, np.float32 if f32 else np.int8).reshape(3, 3, c_exp)
    sc = None if f32 else np.asarray(dw_scales, np.float32).reshape(c_exp)
    flags = (1 if has_expand else 0) | (2 if has_residual else 0) | (4 if stem else 0) | (8 if f32 else 0)
    head = struct.pack("<4sHBB9I5B3x3f3i", PARAMS_MAGIC, PARAMS_VERSION, flags, int(stride),
                       int(in_hw[0]), int(in_hw[1]), int(c_in), int(c_exp), int(c_out), int(out_hw[0]),
                       int(out_hw[1]), 3, 3, int(pad_tl[0]), int(pad_tl[1]),
                       *[_ACT_CODES[a] for a in acts],
                       float(q_exp[0]), float(q_dw[0]), float(q_proj[0]),
                       int(q_exp[1]), int(q_dw[1]), int(q_proj[1]))
    buf = bytearray(head)
    if stem:
        buf.extend(b"\0" * (76 - len(buf)))
        buf += struct.pack("<3I3B", int(stem["hw"][0]), int(stem["hw"][1]), int(stem["channels"]),
                           int(stem["stride"]), int(stem["pad_tl"][0]), int(stem["pad_tl"][1]))
    buf.extend(b"\0" * (HEADER_BYTES - len(buf)))
    buf += w.astype("<f4").tobytes() if f32 else w.tobytes()
    _pad16(buf)
    if not f32:
        buf += sc.astype("<f4").tobytes()
        _pad16(buf)
    return bytes(buf)


def _builtin(model, op, schema):
    code = model.operatorCodes[op.opcodeIndex]
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def _quant(tensor):
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        return None
    zp = int(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0
    return float(q.scale[0]), zp


def _const(model, tensor):
    buf = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    if buf is None or buf.data is None or len(buf.data) == 0:
        return None
    return np.asarray(buf.data, np.uint8)


def _act(op):
    a = getattr(op.builtinOptions, "fusedActivationFunction", 0) if op.builtinOptions else 0
    return _FUSED_ACTS.get(int(a))


def _stem(model, sg, e_idx, e_out, schema, producers, single_use):
    """The stem fields of CONV_2D e_idx as the expand of a block (a 3x3 conv, stride 1 or 2,
    without dilation, over an int8 or float32 [1, H, W, C <= 16] tensor, weights of the same type
    (int8: symmetric), bias, a supported activation; a VALID conv may read a PAD of 0..2 rows /
    columns, taken in as the conv's padding), or None."""
    T = schema.TensorType
    op = sg.operators[e_idx]
    o = op.builtinOptions
    w, x = sg.tensors[int(op.inputs[1])], sg.tensors[int(op.inputs[0])]
    pad = producers.get(int(op.inputs[0]))
    if pad is not None and o is not None and o.padding == schema.Padding.VALID \
            and _builtin(model, sg.operators[pad], schema) == schema.BuiltinOperator.PAD \
            and single_use(int(op.inputs[0])):
        po = sg.operators[pad]
        pt = sg.tensors[int(po.inputs[1])]
        pads = _const(model, pt)
        if pads is not None and _quant(sg.tensors[int(po.inputs[0])]) == _quant(x):
            pads = pads.view(np.int64 if pt.type == T.INT64 else np.int32).reshape(-1, 2)
            if pads.shape == (4, 2) and not pads[0].any() and not pads[3].any() \
                    and 0 <= pads[1:3].min() and pads[1:3].max() <= 2:
                found = _stem(model, sg, e_idx, e_out, schema, {}, single_use)  # the conv as VALID
                if found is not None:
                    xs = [int(d) for d in sg.tensors[int(po.inputs[0])].shape]
                    found.update(hw=(xs[1], xs[2]), pad_tl=(int(pads[1, 0]), int(pads[2, 0])), pad_op=pad,
                                 x=int(po.inputs[0]))
                    return found
        return None
    k, xs = [int(d) for d in w.shape], [int(d) for d in x.shape]
    q = w.quantization
    int8 = w.type == T.INT8
    if o is None or len(op.inputs) < 3 or op.inputs[2] < 0 or _act(op) is None or len(k) != 4 \
            or k[1:3] != [3, 3] or k[3] > 16 or w.type not in (T.INT8, T.FLOAT32) or x.type != w.type \
            or o.strideH != o.strideW or o.strideH not in (1, 2) \
            or getattr(o, "dilationHFactor", 1) != 1 or getattr(o, "dilationWFactor", 1) != 1 \
            or (int8 and (q is None or q.scale is None or len(q.scale) not in (1, k[0])
                          or (q.zeroPoint is not None and np.any(np.asarray(q.zeroPoint) != 0)))) \
            or len(xs) != 4 or xs[0] != 1 or xs[3] != k[3]:
        return None
    s, (Hi, Wi), (He, We) = int(o.strideH), xs[1:3], [int(d) for d in sg.tensors[e_out].shape][1:3]
    if o.padding == schema.Padding.SAME:
        pads = (max((He - 1) * s + 3 - Hi, 0) // 2, max((We - 1) * s + 3 - Wi, 0) // 2)
    elif He == (Hi - 3) // s + 1 and We == (Wi - 3) // s + 1:
        pads = (0, 0)
    else:
        return None
    return {"op": e_idx, "hw": (Hi, Wi), "channels": xs[3], "stride": s, "pad_tl": pads, "out_hw": (He, We),
            "pad_op": None, "x": int(op.inputs[0])}


def _match(model, sg, d_idx, producers, consumers, schema):
    """The block around depthwise op d_idx as a dict, or (None, reason)."""
    B = schema.BuiltinOperator
    T = schema.TensorType
    ops = sg.operators
    dw = ops[d_idx]
    outputs = {int(t) for t in (sg.outputs if sg.outputs is not None else [])}

    def single_use(t):
        return len(consumers.get(int(t), [])) == 1 and int(t) not in outputs

    ti = lambda i: sg.tensors[int(i)]  # noqa: E731
    if len(dw.inputs) < 3 or dw.inputs[2] < 0:
        return None, "depthwise without bias"
    wt, xt = ti(dw.inputs[1]), ti(dw.inputs[0])
    o = dw.builtinOptions
    if [int(d) for d in wt.shape][:3] != [1, 3, 3] or xt.type not in (T.INT8, T.FLOAT32) or wt.type != xt.type:
        return None, "not an int8 or float32 3x3 depthwise"
    vtype = xt.type  # every activation and weight of the block has this type
    if o is None or o.strideH != o.strideW or o.strideH not in (1, 2) or o.depthMultiplier not in (0, 1) \
            or getattr(o, "dilationHFactor", 1) != 1 or getattr(o, "dilationWFactor", 1) != 1:
        return None, "depthwise stride/dilation/multiplier not supported"
    act_dw = _act(dw)
    if act_dw is None:
        return None, "depthwise activation"
    stride = int(o.strideH)
    chain = [d_idx]
    dw_in = int(dw.inputs[0])
    pad_tl, pad_br = None, None
    p = producers.get(dw_in)
    if p is not None and _builtin(model, ops[p], schema) == B.PAD and o.padding == schema.Padding.VALID:
        pad_op = ops[p]
        pads = _const(model, ti(pad_op.inputs[1]))
        if pads is None or not single_use(dw_in):
            return None, "PAD without constant paddings"
        pads = pads.view(np.int64 if ti(pad_op.inputs[1]).type == T.INT64 else np.int32).reshape(4, 2)
        if pads[0].any() or pads[3].any() or pads[1:3].max() > 2 or pads[1:3].min() < 0:
            return None, "PAD other than 0..2 rows / columns"
        if _quant(ti(pad_op.inputs[0])) != _quant(ti(pad_op.outputs[0])):
            return None, "PAD changes the quantization"
        pad_tl, pad_br = (int(pads[1, 0]), int(pads[2, 0])), (int(pads[1, 1]), int(pads[2, 1]))
        chain.insert(0, p)
        dw_in = int(pad_op.inputs[0])
    elif o.padding == schema.Padding.SAME:
        pad_tl = "same"
    else:
        return None, "VALID depthwise without PAD"
    e = producers.get(dw_in)
    expand = stem = None
    if e is not None and _builtin(model, ops[e], schema) == B.CONV_2D and single_use(dw_in):
        eo = ops[e]
        ew = ti(eo.inputs[1])
        if [int(d) for d in ew.shape][1:3] == [1, 1] and ew.type == vtype and eo.builtinOptions is not None \
                and eo.builtinOptions.strideH == 1 and eo.builtinOptions.strideW == 1 \
                and len(eo.inputs) >= 3 and eo.inputs[2] >= 0 and _act(eo) is not None:
            expand = e
        elif os.environ.get("TFCOMPRESS_FUSE_STEM") != "0":  # =0: benchmarks' A/B (the stem left to XNNPACK)
            stem = _stem(model, sg, e, dw_in, schema, producers, single_use)
    first = expand if expand is not None else stem["op"] if stem else None
    x_idx = stem["x"] if stem else int(ops[first].inputs[0]) if first is not None else dw_in
    if first is not None:
        chain.insert(0, first)
    if stem and stem["pad_op"] is not None:
        chain.insert(0, stem["pad_op"])
    x = ti(x_idx)
    shape = [int(d) for d in x.shape]
    if len(shape) != 4 or shape[0] != 1 or x.type != vtype:
        return None, "block input is not [1, H, W, C] of the depthwise's type"
    d_out = int(dw.outputs[0])
    if not single_use(d_out):
        return None, "depthwise output used twice"
    pj = consumers[d_out][0]
    po = ops[pj]
    if _builtin(model, po, schema) != B.CONV_2D or int(po.inputs[0]) != d_out:
        return None, "depthwise not followed by a 1x1 conv"
    pw = ti(po.inputs[1])
    if [int(d) for d in pw.shape][1:3] != [1, 1] or pw.type != vtype or po.builtinOptions is None \
            or po.builtinOptions.strideH != 1 or po.builtinOptions.strideW != 1 or len(po.inputs) < 3 \
            or po.inputs[2] < 0 or _act(po) != "NONE":
        return None, "project is not a linear 1x1 conv with bias"
    chain.append(pj)
    p_out = int(po.outputs[0])
    out_idx, residual = p_out, False
    if single_use(p_out) and stem is None:
        a = consumers[p_out][0]
        ao = ops[a]
        if _builtin(model, ao, schema) == B.ADD and len(ao.inputs) == 2 and _act(ao) == "NONE" \
                and sorted(int(t) for t in ao.inputs) == sorted([p_out, x_idx]):
            out_idx, residual = int(ao.outputs[0]), True
            chain.append(a)
    out = ti(out_idx)
    oshape = [int(d) for d in out.shape]
    c_exp = int(wt.shape[3])
    if len(oshape) != 4 or out.type != vtype:
        return None, "block output is not NHWC of the depthwise's type"
    H, W = stem["out_hw"] if stem else (shape[1], shape[2])
    Ho, Wo = oshape[1], oshape[2]
    if pad_tl == "same":
        pads = []
        for n, no in ((H, Ho), (W, Wo)):
            total = max((no - 1) * stride + 3 - n, 0)
            pads.append(total // 2)
        pad_tl = tuple(pads)
    else:
        if Ho != (H + pad_tl[0] + pad_br[0] - 3) // stride + 1 or Wo != (W + pad_tl[1] + pad_br[1] - 3) // stride + 1:
            return None, "PAD + VALID depthwise output shape mismatch"
    f32 = vtype == T.FLOAT32
    qs = {"x": _quant(x), "e": _quant(ti(ops[first].outputs[0])) if first is not None else _quant(x),
          "d": _quant(ti(d_out)), "p": _quant(ti(p_out)), "y": _quant(out)}
    if f32:
        qs = dict.fromkeys(qs, (0.0, 0))
    elif any(v is None for v in qs.values()):
        return None, "per-tensor activation quantization needed"
    if residual and not f32:
        so = qs["y"][0]
        for s in (qs["x"][0], qs["p"][0]):
            if not (2.0 ** -10 <= np.float32(s) / np.float32(so) < 2.0 ** 8):
                return None, "ADD scale ratio outside XNNPACK's range"
    return {"chain": chain, "expand": expand, "dw": d_idx, "project": pj, "x": x_idx, "out": out_idx,
            "residual": residual, "stride": stride, "pad_tl": pad_tl, "in_hw": (H, W), "out_hw": (Ho, Wo),
            "c_in": -(-9 * shape[3] // 4) * 4 if stem else shape[3], "c_exp": c_exp, "c_out": oshape[3],
            "q": qs, "act_dw": act_dw, "stem": stem, "dtype": "float32" if f32 else "int8",
            "act_exp": _act(ops[first]) if first is not None else "NONE"}, None


def fuse_inverted_residuals(model, sg_index, schema, mode, conv_decision, pack_conv, set_packed, opcode):
    """Replaces every fusable block of subgraph `sg_index` by one fused node (in place).

    Args:
        model: The ``ModelT`` being rewritten.
        sg_index: Subgraph index.
        schema: The TFLite flatbuffer schema module.
        mode: The ``sparse_kernels`` mode ("auto" / "custom"; "builtin" fuses nothing).
        conv_decision: ``f(op) -> (emitted, reason, w2d, pat)`` for a 1x1 CONV_2D, from sparse.py.
        pack_conv: ``f(op, w2d, pat) -> TFCS bytes``.
        set_packed: ``f(op, input_position, blob)``: points the op's input at a uint8 tensor
            holding the blob (dropping the dense weights when unshared).
        opcode: ``f(custom_name) -> operator code index``.

    Returns:
        A list of report rows, one per fused block.

    Example:
        >>> rows = fuse_inverted_residuals(model, 0, schema, "custom", ...)  # doctest: +SKIP
    """
    if mode not in ("auto", "custom"):
        return []
    sg = model.subgraphs[sg_index]
    ops = sg.operators
    B = schema.BuiltinOperator

    def maps():
        producers, consumers = {}, {}
        for i, op in enumerate(ops):
            for t in op.outputs:
                producers[int(t)] = i
            for t in op.inputs:
                if t >= 0:
                    consumers.setdefault(int(t), []).append(i)
        return producers, consumers

    producers, consumers = maps()
    blocks, rows = [], []
    for i, op in enumerate(ops):
        if _builtin(model, op, schema) != B.DEPTHWISE_CONV_2D:
            continue
        m, _ = _match(model, sg, i, producers, consumers, schema)
        if m is None:
            continue
        decided = {}
        for key in ("expand", "project"):
            if m[key] is not None:
                decided[key] = conv_decision(ops[m[key]])
        if any(d[0] != "custom" for d in decided.values()):
            continue
        blocks.append((m, decided))
    if not blocks:
        return []
    replace = {}
    for m, decided in blocks:
        dwo = ops[m["dw"]]
        wt = sg.tensors[int(dwo.inputs[1])]
        q = wt.quantization
        c, f32 = m["c_exp"], m["dtype"] == "float32"
        if f32:
            scales = None
        elif q is None or q.scale is None or (q.zeroPoint is not None and np.any(np.asarray(q.zeroPoint) != 0)):
            continue
        else:
            scales = np.broadcast_to(np.asarray(q.scale, np.float32), (c,))
        w = _const(model, wt)
        if w is None or w.size != (36 if f32 else 9) * c:
            continue
        stem = m["stem"]
        if stem is not None:  # the first conv's weights [O, 3, 3, C] as a dense 1x1 over 9 C taps
            sw = _const(model, sg.tensors[int(ops[stem["op"]].inputs[1])])
            if sw is None:
                continue
            w2d = sw.view("<f4" if f32 else np.int8).reshape(c, -1)
            decided["expand"] = ("custom", "stem", np.pad(w2d, ((0, 0), (0, m["c_in"] - w2d.shape[1]))),
                                 {"pattern": "block1x4"})
        first = m["expand"] if m["expand"] is not None else stem["op"] if stem else None
        qe = m["q"]["e"] if first is not None else m["q"]["x"]
        params = pack_fused_params(
            in_hw=m["in_hw"], c_in=m["c_in"], c_exp=c, c_out=m["c_out"], out_hw=m["out_hw"], stride=m["stride"],
            pad_tl=m["pad_tl"], has_expand=first is not None, has_residual=m["residual"],
            acts=(m["act_exp"], m["act_dw"], "NONE"), q_exp=qe, q_dw=m["q"]["d"], q_proj=m["q"]["p"],
            dw_weights=w.view("<f4" if f32 else np.int8), dw_scales=scales, stem=stem, dtype=m["dtype"])
        inputs = [m["x"]]
        packed = {}
        for key, idx in (("expand", first), ("project", m["project"])):
            if idx is None:
                continue
            _, _, w2d, pat = decided[key]
            blob = pack_conv(ops[idx], w2d, pat)
            packed[key] = len(blob)
            set_packed(ops[idx], 1, blob)
        set_packed(dwo, 1, params)
        if first is not None:
            inputs += [int(ops[first].inputs[1]), int(ops[first].inputs[2])]
        inputs += [int(dwo.inputs[1]), int(dwo.inputs[2]), int(ops[m["project"]].inputs[1]),
                   int(ops[m["project"]].inputs[2])]
        fused = schema.OperatorT()
        fused.opcodeIndex = opcode(FUSED_OP)
        fused.inputs = np.array(inputs, np.int32)
        fused.outputs = np.array([m["out"]], np.int32)
        fused.customOptions = np.frombuffer(bytes([1, 0, 0, 0, 0, 0, 0, 0]), np.uint8)
        fused.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
        last = max(m["chain"])
        replace[last] = fused
        for j in m["chain"]:
            if j != last:
                replace[j] = None
        names = [(sg.tensors[int(ops[j].outputs[0])].name or b"") for j in m["chain"]]
        names = [(n.decode() if isinstance(n, bytes) else str(n)).split(";")[0] for n in names]
        rows.append({"layer": names[-1], "op": "INVERTED_RESIDUAL (fused)", "subgraph": sg_index,
                     "op_index": m["project"],  # the measured guard's key of the block (index in ops)
                     "conv_op_indices": [j for j in (m["expand"], m["project"]) if j is not None],
                     "ops": names, "emitted": "fused",
                     "shape": [m["in_hw"][0], m["in_hw"][1], m["c_in"], m["c_exp"], m["c_out"]],
                     "stride": m["stride"], "residual": m["residual"], "expand": m["expand"] is not None,
                     "stem": stem is not None, "dtype": m["dtype"],
                     "packed_bytes": int(sum(packed.values()) + len(params)),
                     "reason": ("both 1x1 convs would be tfcompress custom ops: " if m["expand"] is not None
                                else "the project 1x1 conv would be a tfcompress custom op: ")
                     + "the block runs as one fused node (" + FUSED_OP + ")"
                     + (", with the network's first 3x3 conv as its expand" if stem else "")})
    sg.operators = [replace.get(i, op) for i, op in enumerate(ops) if replace.get(i, op) is not None]
    return rows
