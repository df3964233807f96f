"""ONNX Runtime inside the gateway, for hosts where Triton cannot run (`gateway_backend: onnx`)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from onecommit.gateway.backends import BackendResponse, error_response
from onecommit.gateway.errors import BackendUnavailable
from onecommit.gateway.tensors import (
    InferRequest,
    InvalidRequest,
    Tensor,
    encode_response,
    header_length,
    input_mismatch,
    parse_request,
)

# ONNX element types (as onnxruntime names them) → v2 datatypes.
_ONNX_TYPES = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
               "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(int16)": "INT16",
               "tensor(int8)": "INT8", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
               "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(bool)": "BOOL",
               "tensor(string)": "BYTES"}


@dataclass(frozen=True)
class _Session:
    version: int
    session: onnxruntime.InferenceSession
    metadata: dict[str, Any]


class OnnxBackend:
    """ONNX Runtime in the gateway's process, for hosts where Triton cannot run. Reads
    `<model_dir>/<model>/<version>/model.onnx` (Triton's model repository layout) and answers
    with the same v2 bodies Triton would. Inference runs on a thread pool, off the event loop
    (onnxruntime releases the GIL while it computes)."""

    def __init__(self, model_dir: Path, threads: int, timeout_s: float,
                 max_sessions: int = 4) -> None:
        self._dir = model_dir
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="onnx")
        self._timeout_s = timeout_s
        # The pinned variants (champion, challenger, a warm previous) fit; older ones go.
        self._sessions: OrderedDict[tuple[str, int], _Session] = OrderedDict()
        self._max_sessions = max_sessions
        self._loading = asyncio.Lock()

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _versions(self, model: str) -> list[int]:
        folder = self._dir / model
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir()
                      if p.name.isdigit() and (p / "model.onnx").is_file())

    async def _session(self, model: str, version: int | None) -> _Session | None:
        versions = self._versions(model)
        chosen = version if version is not None else (versions[-1] if versions else None)
        if chosen is None or chosen not in versions:
            return None
        key = (model, chosen)
        if key not in self._sessions:
            async with self._loading:
                if key not in self._sessions:
                    loaded = await asyncio.get_running_loop().run_in_executor(
                        self._pool, self._load, model, chosen)
                    self._sessions[key] = loaded
                    if len(self._sessions) > self._max_sessions:
                        self._sessions.popitem(last=False)
        self._sessions.move_to_end(key)
        return self._sessions[key]

    def _load(self, model: str, version: int) -> _Session:
        options = onnxruntime.SessionOptions()
        # One thread per inference: concurrency comes from the pool, and the host has few cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        path = self._dir / model / str(version) / "model.onnx"
        try:
            session = onnxruntime.InferenceSession(str(path), options,
                                                   providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own unrelated classes per fault
            raise BackendUnavailable(f"cannot load {path}: {error}") from error
        metadata = {"name": model, "versions": [str(version)], "platform": "onnxruntime_onnx",
                    "inputs": [_onnx_meta(t) for t in session.get_inputs()],
                    "outputs": [_onnx_meta(t) for t in session.get_outputs()]}
        return _Session(version, session, metadata)

    async def ready(self) -> bool:
        return self._dir.is_dir()

    async def version_ready(self, model: str, version: int | None) -> bool:
        try:
            return await self._session(model, version) is not None
        except BackendUnavailable:
            return False

    async def metadata(self, model: str, version: int | None) -> dict[str, Any] | None:
        loaded = await self._session(model, version)
        if loaded is None:
            return None
        if version is not None:
            return loaded.metadata
        # Like Triton: the model's metadata lists every version it can serve.
        return {**loaded.metadata, "versions": [str(v) for v in self._versions(model)]}

    async def infer(self, model: str, version: int | None, body: bytes,
                    headers: Mapping[str, str]) -> BackendResponse:
        loaded = await self._session(model, version)
        if loaded is None:
            which = f"version {version} of model" if version is not None else "model"
            return error_response(404, f"{which} {model!r} is not in {self._dir}")
        try:
            request = parse_request(body, header_length(headers))
            names = _output_names(request, loaded.metadata)
            problem = input_mismatch([{"name": t.name, "datatype": t.datatype,
                                       "shape": list(t.array.shape)} for t in request.inputs],
                                     loaded.metadata["inputs"])
            if problem is not None:
                raise InvalidRequest(problem)
        except InvalidRequest as error:
            return error_response(400, str(error))
        feed = {t.name: _onnx_input(t) for t in request.inputs}
        try:
            results = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                self._pool, loaded.session.run, names, feed), self._timeout_s)
        except TimeoutError as error:
            raise BackendUnavailable(f"inference took longer than {self._timeout_s} s") from error
        types = {o["name"]: o["datatype"] for o in loaded.metadata["outputs"]}
        outputs = [Tensor(n, types[n], np.asarray(r)) for n, r in zip(names, results, strict=True)]
        body, response_headers = encode_response(model, str(loaded.version), request, outputs)
        return BackendResponse(200, body, response_headers)


def _onnx_meta(node: Any) -> dict[str, Any]:
    return {"name": node.name, "datatype": _ONNX_TYPES.get(node.type, node.type),
            "shape": [d if isinstance(d, int) else -1 for d in node.shape]}


def _onnx_input(tensor: Tensor) -> np.ndarray[Any, Any]:
    if tensor.datatype != "BYTES":
        return tensor.array
    # onnxruntime wants str for string tensors; the wire carries bytes.
    decoded: np.ndarray[Any, Any] = np.vectorize(lambda v: v.decode(errors="replace"),
                                                 otypes=[np.object_])(tensor.array)
    return decoded


def _output_names(request: InferRequest, metadata: dict[str, Any]) -> list[str]:
    known = [o["name"] for o in metadata["outputs"]]
    if request.outputs is None:
        return known
    unknown = sorted(set(request.outputs) - set(known))
    if unknown:
        raise InvalidRequest(f"unknown output {unknown[0]!r}; the model has {known}")
    return list(request.outputs)
