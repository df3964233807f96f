"""Open Inference Protocol (KServe v2) REST bodies ⇄ numpy tensors.

The gRPC and in-process ONNX backends need tensors; the Triton HTTP backend forwards the body
bytes unchanged and never comes here. Both encodings Triton accepts are handled: plain JSON, and
the binary-tensor extension (a JSON header of `Inference-Header-Content-Length` bytes followed
by raw tensor data).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from onecommit.gateway.errors import BadRequest

HEADER_LENGTH = "inference-header-content-length"
DTYPES: dict[str, type[Any]] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    "BYTES": np.object_,
}
# numpy dtype kinds a JSON `data` list may hold for each datatype (b bool, i/u int, f float).
_KINDS = {"BOOL": "b", "FP16": "biuf", "FP32": "biuf", "FP64": "biuf",
          **{t: "biu" for t in ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                                "INT64")}}
_JSON = {"content-type": "application/json"}


class InvalidRequest(BadRequest):
    """The caller's request cannot be decoded; it is answered with a 400 and never sent on."""


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    array: NDArray[Any]


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    # Requested outputs by name → binary or not (None: the request's default); None asks for
    # every output.
    outputs: dict[str, bool | None] | None
    binary_by_default: bool

    def binary(self, output: str) -> bool:
        chosen = self.outputs.get(output) if self.outputs is not None else None
        return self.binary_by_default if chosen is None else chosen


def header_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get(HEADER_LENGTH)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(f"{HEADER_LENGTH} must be an integer, got {value!r}") from None


def parse_request(body: bytes, length: int | None) -> InferRequest:
    """Decode a v2 inference request; any malformation raises InvalidRequest."""
    if length is not None and not 0 < length <= len(body):
        raise InvalidRequest(f"{HEADER_LENGTH} {length} is outside the body of {len(body)} bytes")
    try:
        header = orjson.loads(body[:length] if length else body)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"request body is not valid JSON: {error}") from None
    if not isinstance(header, dict):
        raise InvalidRequest("request body must be a JSON object")
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequest("`inputs` must be a non-empty list of tensors")
    binary = memoryview(body)[length:] if length else memoryview(b"")
    tensors, offset = [], 0
    for spec in inputs:
        tensor, offset = _input(spec, binary, offset)
        tensors.append(tensor)
    if offset != len(binary):
        raise InvalidRequest(f"binary tensor data has {len(binary)} bytes, the inputs "
                             f"declare {offset}")
    parameters = header.get("parameters") or {}
    return InferRequest(id=_optional_str(header.get("id")), inputs=tensors,
                        outputs=_requested_outputs(header.get("outputs")),
                        binary_by_default=bool(parameters.get("binary_data_output", False)))


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _input(spec: object, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise InvalidRequest("each input must be an object with a `name`")
    name, datatype, shape = spec["name"], spec.get("datatype"), spec.get("shape")
    if datatype not in DTYPES:
        raise InvalidRequest(f"input {name!r} has unknown datatype {datatype!r}")
    if (not isinstance(shape, list)
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise InvalidRequest(f"input {name!r}: `shape` must be a list of non-negative integers")
    size = (spec.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise InvalidRequest(f"input {name!r}: binary_data_size {size} exceeds the data")
        flat = _from_raw(datatype, bytes(binary[offset: offset + size]), name)
        offset += size
    elif "data" in spec:
        flat = _from_json(datatype, spec["data"], name)
    else:
        raise InvalidRequest(f"input {name!r} has neither `data` nor binary_data_size")
    if flat.size != math.prod(shape):
        raise InvalidRequest(f"input {name!r} has {flat.size} elements, shape {shape} needs "
                             f"{math.prod(shape)}")
    return Tensor(name, datatype, flat.reshape(shape)), offset


def _from_raw(datatype: str, raw: bytes, name: str) -> NDArray[Any]:
    if datatype == "BYTES":
        try:
            return deserialize_bytes_tensor(raw)  # type: ignore[no-any-return]
        except Exception as error:  # struct.error on a truncated length prefix
            raise InvalidRequest(f"input {name!r}: malformed BYTES data: {error}") from None
    dtype = np.dtype(DTYPES[datatype])
    if len(raw) % dtype.itemsize:
        raise InvalidRequest(f"input {name!r}: {len(raw)} bytes is not a whole number of "
                             f"{datatype} elements")
    return np.frombuffer(raw, dtype=dtype)


def _from_json(datatype: str, data: object, name: str) -> NDArray[Any]:
    if not isinstance(data, list):
        raise InvalidRequest(f"input {name!r}: `data` must be a list")
    if datatype == "BYTES":
        flat = np.asarray(data, dtype=np.object_).ravel()
        if not all(isinstance(v, str) for v in flat):
            raise InvalidRequest(f"input {name!r}: BYTES data must be strings")
        return np.array([v.encode() for v in flat], dtype=np.object_)
    try:
        values = np.asarray(data)
    except ValueError as error:  # ragged nesting
        raise InvalidRequest(f"input {name!r}: data is not {datatype}: {error}") from None
    # Only numbers of a fitting kind: numpy would otherwise parse "1.5" or truncate 1.5 quietly.
    if values.size and values.dtype.kind not in _KINDS[datatype]:
        raise InvalidRequest(f"input {name!r}: data is not {datatype}")
    return values.astype(DTYPES[datatype]).ravel()


def _requested_outputs(outputs: object) -> dict[str, bool | None] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        raise InvalidRequest("`outputs` must be a list of objects with a `name`")
    return {o["name"]: _optional_bool((o.get("parameters") or {}).get("binary_data"))
            for o in outputs}


def _optional_bool(value: object) -> bool | None:
    return None if value is None else bool(value)


def to_raw(tensor: Tensor) -> bytes:
    """The tensor's bytes as Triton's binary extension and gRPC raw contents lay them out."""
    if tensor.datatype == "BYTES":
        return bytes(serialize_byte_tensor(tensor.array).item()) if tensor.array.size else b""
    return np.ascontiguousarray(tensor.array).tobytes()


def from_raw(name: str, datatype: str, shape: list[int], raw: bytes) -> Tensor:
    return Tensor(name, datatype, _from_raw(datatype, raw, name).reshape(shape))


def encode_response(model: str, version: str, request: InferRequest,
                    outputs: list[Tensor]) -> tuple[bytes, dict[str, str]]:
    """A v2 response body and its headers: JSON, or the binary extension when any output was
    asked for in binary."""
    described: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype,
                                 "shape": list(tensor.array.shape)}
        if request.binary(tensor.name):
            raw = to_raw(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = _json_data(tensor)
        described.append(entry)
    header: dict[str, Any] = {"model_name": model, "model_version": version,
                              "outputs": described}
    if request.id is not None:
        header["id"] = request.id
    head = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, dict(_JSON)
    return head + b"".join(blobs), {"content-type": "application/octet-stream",
                                    HEADER_LENGTH: str(len(head))}


def _json_data(tensor: Tensor) -> object:
    flat = tensor.array.ravel()
    if tensor.datatype == "BYTES":
        return [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in flat]
    # orjson writes contiguous numeric arrays natively, without a Python list per element.
    return np.ascontiguousarray(flat)


def input_mismatch(inputs: object, expected: list[dict[str, Any]]) -> str | None:
    """What is wrong with a request's inputs (name, datatype, shape) against the model
    metadata, if anything."""
    if not isinstance(inputs, list):
        return "`inputs` must be a list of tensors"
    if not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in inputs):
        return "each input must be an object with a string `name`"
    given = {t["name"]: t for t in inputs}
    for spec in expected:
        tensor = given.get(spec["name"])
        if tensor is None:
            return f"input {spec['name']!r} is missing"
        if tensor.get("datatype") != spec["datatype"]:
            return (f"input {spec['name']!r} has datatype {tensor.get('datatype')}, "
                    f"the model expects {spec['datatype']}")
        shape = tensor.get("shape")
        if (not isinstance(shape, list) or len(shape) != len(spec["shape"])
                or any(e not in (-1, g) for e, g in zip(spec["shape"], shape, strict=True))):
            return f"input {spec['name']!r} has shape {shape}, the model expects {spec['shape']}"
    return None
