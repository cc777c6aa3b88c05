"""Reads a TFLite flatbuffer into plain Python data (ops, tensors, buffers) with LiteRT's schema.

Internal module: `inspect_tflite` and `export_tflite` build their reports from `read_model`.
"""

import os

import numpy as np
from ai_edge_litert import schema_py_generated as schema

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_NUMPY_TYPES = {
    "float32": np.float32, "float16": np.float16, "float64": np.float64, "int8": np.int8,
    "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16, "int32": np.int32,
    "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64, "bool": np.bool_,
}
FLOAT_TYPES = ("float32", "float16", "float64", "bfloat16")


def read_bytes(tflite_or_path):
    """Returns the bytes of a TFLite model given as bytes-like or a file path, checking the identifier.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the content is not a TFLite flatbuffer (wrong identifier, too short).
        TypeError: the argument is neither bytes nor a path.
    """
    if isinstance(tflite_or_path, (bytes, bytearray, memoryview)):
        data = bytes(tflite_or_path)
        where = "the given bytes"
    elif isinstance(tflite_or_path, (str, os.PathLike)):
        path = os.fspath(tflite_or_path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file.")
        if os.path.isdir(path):
            raise ValueError(f"{path} is a directory, not a .tflite file.")
        with open(path, "rb") as f:
            data = f.read()
        where = path
    else:
        raise TypeError(
            "Expected TFLite model bytes or a path to a .tflite file, got "
            f"{type(tflite_or_path).__name__}."
        )
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError(
            f"{where} is not a TFLite model (no 'TFL3' flatbuffer identifier; "
            f"{len(data)} bytes). Convert a Keras model with tfcompress.export.export_tflite."
        )
    return data


def op_name(opcode):
    """Name of an operator code: the builtin name (e.g. 'CONV_2D') or the custom op's name."""
    code = max(int(opcode.builtinCode), int(opcode.deprecatedBuiltinCode))
    if code == schema.BuiltinOperator.CUSTOM:
        custom = opcode.customCode
        return custom.decode() if isinstance(custom, bytes) else str(custom)
    return _OP_NAMES.get(code, f"BUILTIN_{code}")


def _text(value):
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_model(tflite_bytes):
    """Parses TFLite bytes into a dict: `ops`, `tensors`, `inputs`, `outputs` (of every subgraph).

    Each op is `{"subgraph", "index", "name", "custom", "inputs", "outputs"}`; each tensor is
    `{"subgraph", "index", "name", "dtype", "shape", "shape_signature", "constant", "quantized",
    "size", "zeros", "sparse_format"}`, where `zeros` counts exactly-zero stored values of a
    constant tensor (None for activations).

    Raises:
        ValueError: the flatbuffer is truncated or malformed.
    """
    data = read_bytes(tflite_bytes)
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
        return _summarize(model, data)
    except ValueError:
        raise
    except Exception as e:  # flatbuffers raises IndexError/struct.error/... on corrupt input
        raise ValueError(
            f"Corrupt or truncated TFLite flatbuffer ({len(data)} bytes): {e}"
        ) from None


def _buffer_values(model, data, index, dtype):
    if not model.buffers or index >= len(model.buffers) or index == 0:
        return None
    buf = model.buffers[index]
    raw = None
    if buf.data is not None and len(buf.data):
        raw = np.asarray(buf.data, dtype=np.uint8).tobytes()
    elif buf.offset and buf.size:
        if buf.offset + buf.size > len(data):
            raise ValueError(f"buffer {index} points past the end of the file")
        raw = data[buf.offset : buf.offset + buf.size]
    if raw is None:
        return None
    np_type = _NUMPY_TYPES.get(dtype)
    if np_type is None:
        return np.frombuffer(raw, dtype=np.uint8)
    usable = len(raw) - len(raw) % np.dtype(np_type).itemsize
    return np.frombuffer(raw[:usable], dtype=np_type)


def _summarize(model, data):
    if not model.subgraphs:
        raise ValueError("the model has no subgraph")
    codes = model.operatorCodes or []
    ops, tensors, inputs, outputs = [], [], [], []
    for s, sub in enumerate(model.subgraphs):
        for t, tensor in enumerate(sub.tensors or []):
            dtype = _TYPE_NAMES.get(int(tensor.type), f"type{tensor.type}")
            shape = [int(d) for d in (tensor.shape if tensor.shape is not None else [])]
            signature = (
                [int(d) for d in tensor.shapeSignature]
                if tensor.shapeSignature is not None and len(tensor.shapeSignature)
                else list(shape)
            )
            values = _buffer_values(model, data, int(tensor.buffer), dtype)
            q = tensor.quantization
            quantized = q is not None and q.scale is not None and len(q.scale) > 0
            sparse_format = None
            if tensor.sparsity is not None:
                sparse_format = "tflite-sparse"
            tensors.append({
                "subgraph": s, "index": t, "name": _text(tensor.name), "dtype": dtype,
                "shape": shape, "shape_signature": signature,
                "constant": values is not None, "quantized": bool(quantized),
                "size": int(values.size) if values is not None else int(np.prod(shape or [0])),
                "zeros": int(np.count_nonzero(values == 0)) if values is not None else None,
                "sparse_format": sparse_format,
            })
        offset = len(tensors) - len(sub.tensors or [])
        for i, op in enumerate(sub.operators or []):
            if op.opcodeIndex >= len(codes):
                raise ValueError(f"operator {i} uses opcode {op.opcodeIndex} of {len(codes)}")
            code = codes[op.opcodeIndex]
            is_custom = max(int(code.builtinCode), int(code.deprecatedBuiltinCode)) == (
                schema.BuiltinOperator.CUSTOM
            )
            ops.append({
                "subgraph": s, "index": i, "name": op_name(code), "custom": is_custom,
                "inputs": [offset + int(k) for k in (op.inputs if op.inputs is not None else []) if k >= 0],
                "outputs": [offset + int(k) for k in (op.outputs if op.outputs is not None else []) if k >= 0],
            })
        if s == 0:
            inputs = [offset + int(k) for k in (sub.inputs if sub.inputs is not None else [])]
            outputs = [offset + int(k) for k in (sub.outputs if sub.outputs is not None else [])]
    return {"ops": ops, "tensors": tensors, "inputs": inputs, "outputs": outputs, "size": len(data)}
