"""A minimal writer of ONNX models (the protobuf wire format), enough for a feed-forward graph.

Why not the `onnx` package: importing it took ~0.4 s, paid by every process before its first
query, plus two more dependencies (protobuf, ml_dtypes), all to serialise one graph. The
subset needed here is small: nodes with int, float, string and int-list attributes, tensors as
raw little-endian bytes, inputs and outputs with named or fixed dimensions.

Field numbers follow onnx/onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto,
TensorProto, ValueInfoProto, TypeProto); tests parse the result with the onnx package.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

# TensorProto.DataType
_DTYPES = {np.dtype(np.float32): 1, np.dtype(np.uint8): 2, np.dtype(np.int64): 7}
FLOAT = 1
# AttributeProto.AttributeType
_ATTR_FLOAT, _ATTR_INT, _ATTR_STRING, _ATTR_INTS = 1, 2, 3, 7


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 as two's complement, as protobuf does
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(field_no: int, n: int) -> bytes:
    return _varint(field_no << 3) + _varint(n)


def _bytes(field_no: int, payload: bytes) -> bytes:
    return _varint(field_no << 3 | 2) + _varint(len(payload)) + payload


def _str(field_no: int, s: str) -> bytes:
    return _bytes(field_no, s.encode("utf-8"))


def _float(field_no: int, f: float) -> bytes:
    return _varint(field_no << 3 | 5) + struct.pack("<f", f)


def _attribute(name: str, value: int | float | str | list[int]) -> bytes:
    out = _str(1, name)
    if isinstance(value, bool) or isinstance(value, int):
        return out + _int(3, int(value)) + _int(20, _ATTR_INT)
    if isinstance(value, float):
        return out + _float(2, value) + _int(20, _ATTR_FLOAT)
    if isinstance(value, str):
        return out + _bytes(4, value.encode("utf-8")) + _int(20, _ATTR_STRING)
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return out + b"".join(_int(8, v) for v in value) + _int(20, _ATTR_INTS)
    raise TypeError(f"attribute {name}: unsupported value {value!r}")


def _tensor(name: str, arr: np.ndarray) -> bytes:
    if arr.dtype not in _DTYPES:
        raise TypeError(f"tensor {name}: unsupported dtype {arr.dtype}")
    dims = b"".join(_int(1, d) for d in arr.shape)
    raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    return dims + _int(2, _DTYPES[arr.dtype]) + _str(8, name) + _bytes(9, raw)


def _value_info(name: str, elem_type: int, shape: list[int | str]) -> bytes:
    dims = b"".join(_bytes(1, _str(2, d) if isinstance(d, str) else _int(1, d)) for d in shape)
    tensor_type = _int(1, elem_type) + _bytes(2, dims)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


@dataclass
class Graph:
    """Nodes in execution order, constant tensors, typed inputs and outputs."""

    name: str
    _nodes: list[bytes] = field(default_factory=list)
    _inits: list[bytes] = field(default_factory=list)
    _inputs: list[bytes] = field(default_factory=list)
    _outputs: list[bytes] = field(default_factory=list)

    def constant(self, name: str, arr: np.ndarray) -> str:
        self._inits.append(_tensor(name, np.asarray(arr)))
        return name

    def node(self, op_type: str, inputs: list[str], outputs: list[str], domain: str = "",
             **attrs: int | float | str | list[int]) -> list[str]:
        body = b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs)
        body += _str(4, op_type) + b"".join(_bytes(5, _attribute(k, v)) for k, v in attrs.items())
        if domain:
            body += _str(7, domain)
        self._nodes.append(body)
        return outputs

    def input(self, name: str, shape: list[int | str], elem_type: int = FLOAT) -> None:
        self._inputs.append(_value_info(name, elem_type, shape))

    def output(self, name: str, shape: list[int | str], elem_type: int = FLOAT) -> None:
        self._outputs.append(_value_info(name, elem_type, shape))

    def model(self, opsets: dict[str, int], ir_version: int = 8) -> bytes:
        """The serialised ModelProto."""
        graph = (b"".join(_bytes(1, n) for n in self._nodes) + _str(2, self.name)
                 + b"".join(_bytes(5, t) for t in self._inits)
                 + b"".join(_bytes(11, i) for i in self._inputs)
                 + b"".join(_bytes(12, o) for o in self._outputs))
        out = _int(1, ir_version) + _str(2, "studybot") + _bytes(7, graph)
        for domain, version in opsets.items():
            out += _bytes(8, (_str(1, domain) if domain else b"") + _int(2, version))
        return out
