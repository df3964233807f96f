"""Backends the dataplane calls: Triton over pooled async HTTP or gRPC, or ONNX Runtime in
process for hosts where Triton cannot run. All three speak the same `Backend` protocol and the
same v2 REST bodies, so the dataplane and the routes never know which one serves."""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import grpc
import numpy as np
import onnxruntime
import orjson
from tritonclient.grpc import service_pb2, service_pb2_grpc

from onecommit.gateway.errors import BackendUnavailable
from onecommit.gateway.http1 import Pool, UpstreamError
from onecommit.gateway.settings import GatewaySettings
from onecommit.gateway.tensors import (
    HEADER_LENGTH,
    InferRequest,
    InvalidRequest,
    Tensor,
    encode_response,
    error_body,
    from_raw,
    header_length,
    input_mismatch,
    parse_request,
    to_raw,
)

T = TypeVar("T")


@dataclass(frozen=True)
class BackendResponse:
    status_code: int
    body: bytes
    headers: dict[str, str]


class Backend(Protocol):
    """What the dataplane needs from an inference server. `version=None` lets the server
    choose (Triton and the ONNX backend take the highest version)."""

    async def close(self) -> None: ...

    async def ready(self) -> bool: ...

    async def version_ready(self, model: str, version: int | None) -> bool: ...

    async def metadata(self, model: str, version: int | None) -> dict[str, Any] | None: ...

    async def infer(self, model: str, version: int | None, body: bytes,
                    headers: Mapping[str, str]) -> BackendResponse: ...


def make_backend(settings: GatewaySettings) -> Backend:
    """The backend the settings select."""
    if settings.gateway_backend == "onnx":
        return OnnxBackend(settings.onnx_model_dir, settings.gateway_onnx_threads,
                           settings.triton_timeout_s)
    if settings.gateway_triton_protocol == "grpc":
        return TritonGrpcBackend(settings.triton_grpc_target, settings.triton_timeout_s,
                                 settings.triton_grpc_channels)
    return TritonHttpBackend(settings.triton_url, settings.triton_timeout_s,
                             settings.triton_max_connections)


async def warm(backend: Backend, model: str, version: int) -> bool:
    """One inference on a zero row so the first real request does not pay for the warm-up."""
    meta = await backend.metadata(model, version)
    if meta is None:
        return False
    inputs = [{"name": spec["name"], "datatype": spec["datatype"],
               "shape": [1 if d < 0 else d for d in spec["shape"]]} for spec in meta["inputs"]]
    for tensor in inputs:
        count = int(np.prod(tensor["shape"]))
        tensor["data"] = [""] * count if tensor["datatype"] == "BYTES" else (
            [False] * count if tensor["datatype"] == "BOOL" else [0] * count)
    response = await backend.infer(model, version, orjson.dumps({"inputs": inputs}),
                                   {"content-type": "application/json"})
    return response.status_code == 200


async def _retrying(call: Callable[[], Awaitable[T]], transient: Callable[[Exception], bool],
                    retries: int) -> T:
    """Retry an idempotent call on transient transport faults, with a short backoff; only
    reads come here, never inference."""
    for attempt in range(retries + 1):
        try:
            return await call()
        except Exception as error:
            if attempt == retries or not transient(error):
                raise
            await asyncio.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


def error_response(status: int, message: str) -> BackendResponse:
    """A v2-style `{"error": ...}` answer."""
    body, headers = error_body(message)
    return BackendResponse(status, body, headers)


def _model_path(model: str, version: int | None) -> str:
    # The name comes from the caller's URL, decoded: quoted again so it stays one path segment.
    return f"/v2/models/{quote(model, safe='')}" + (f"/versions/{version}" if version else "")


# Headers that describe the body: everything else is hop-by-hop or recomputed.
_FORWARDED = ("content-type", HEADER_LENGTH)


class TritonHttpBackend:
    """Triton's v2 HTTP API over a pool of keep-alive connections for the gateway's lifetime.
    The request body is forwarded unchanged, never parsed."""

    def __init__(self, base_url: str, timeout_s: float, max_connections: int,
                 read_retries: int = 2) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or url.hostname is None:
            raise ValueError(f"the Triton HTTP backend needs an http://host:port URL, "
                             f"got {base_url!r}")
        self._pool = Pool(url.hostname, url.port or 80, max_connections, timeout_s)
        self._read_retries = read_retries

    async def close(self) -> None:
        self._pool.close()

    async def _call(self, method: str, path: str, body: bytes = b"",
                    headers: Mapping[str, str] | None = None) -> BackendResponse:
        try:
            reply = await self._pool.request(method, path, body, headers)
        except UpstreamError as error:
            raise BackendUnavailable(_unreachable(error)) from error
        kept = {k: v for k, v in reply.headers.items() if k in _FORWARDED}
        return BackendResponse(reply.status, reply.body, kept)

    async def _get(self, path: str) -> BackendResponse:
        return await _retrying(lambda: self._call("GET", path),
                               lambda e: isinstance(e, BackendUnavailable), self._read_retries)

    async def ready(self) -> bool:
        try:
            return (await self._get("/v2/health/ready")).status_code == 200
        except BackendUnavailable:
            return False

    async def version_ready(self, model: str, version: int | None) -> bool:
        try:
            response = await self._get(_model_path(model, version) + "/ready")
        except BackendUnavailable:
            return False
        return response.status_code == 200

    async def metadata(self, model: str, version: int | None) -> dict[str, Any] | None:
        response = await self._get(_model_path(model, version))
        if response.status_code != 200:
            return None
        metadata: dict[str, Any] = orjson.loads(response.body)
        return metadata

    async def infer(self, model: str, version: int | None, body: bytes,
                    headers: Mapping[str, str]) -> BackendResponse:
        sent = {k: v for k, v in headers.items() if k.lower() in _FORWARDED}
        return await self._call("POST", _model_path(model, version) + "/infer", body, sent)


def _unreachable(error: Exception) -> str:
    return f"inference server unreachable: {type(error).__name__}"


# gRPC status → the HTTP status Triton's REST API gives for the same fault. UNAVAILABLE and
# DEADLINE_EXCEEDED are not here: they mean the server did not answer (BackendUnavailable).
_GRPC_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.NOT_FOUND: 404,
                grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.RESOURCE_EXHAUSTED: 429}
_UNANSWERED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _transient(error: Exception) -> bool:
    return isinstance(error, grpc.aio.AioRpcError) and error.code() in _UNANSWERED


class TritonGrpcBackend:
    """Triton's gRPC API over a small pool of HTTP/2 channels used round-robin (one channel
    multiplexes many calls; several spread them over connections). The v2 REST body is decoded
    into a ModelInferRequest and the reply encoded back, so callers see the same bytes as over
    HTTP. Reads are retried on UNAVAILABLE; inference never is."""

    def __init__(self, target: str, timeout_s: float, channels: int,
                 read_retries: int = 2) -> None:
        # Triton is trusted and the gateway already bounds the request size.
        options = [("grpc.max_receive_message_length", -1),
                   ("grpc.max_send_message_length", -1)]
        self._channels = [grpc.aio.insecure_channel(target, options=options)
                          for _ in range(channels)]
        self._stubs = itertools.cycle(
            [service_pb2_grpc.GRPCInferenceServiceStub(c) for c in self._channels])
        self._timeout_s = timeout_s
        self._read_retries = read_retries

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def _read(self, method: str, request: Any) -> Any:
        stub = next(self._stubs)
        try:
            return await _retrying(
                lambda: getattr(stub, method)(request, timeout=self._timeout_s),
                _transient, self._read_retries)
        except grpc.aio.AioRpcError as error:
            if error.code() in _UNANSWERED:
                raise BackendUnavailable(_unreachable(error)) from error
            raise

    async def ready(self) -> bool:
        try:
            return bool((await self._read("ServerReady", service_pb2.ServerReadyRequest())).ready)
        except (BackendUnavailable, grpc.aio.AioRpcError):
            return False

    async def version_ready(self, model: str, version: int | None) -> bool:
        request = service_pb2.ModelReadyRequest(name=model, version=str(version or ""))
        try:
            return bool((await self._read("ModelReady", request)).ready)
        except (BackendUnavailable, grpc.aio.AioRpcError):
            return False

    async def metadata(self, model: str, version: int | None) -> dict[str, Any] | None:
        request = service_pb2.ModelMetadataRequest(name=model, version=str(version or ""))
        try:
            reply = await self._read("ModelMetadata", request)
        except grpc.aio.AioRpcError:
            return None
        return {"name": reply.name, "versions": list(reply.versions), "platform": reply.platform,
                "inputs": [_tensor_meta(t) for t in reply.inputs],
                "outputs": [_tensor_meta(t) for t in reply.outputs]}

    async def infer(self, model: str, version: int | None, body: bytes,
                    headers: Mapping[str, str]) -> BackendResponse:
        try:
            request = parse_request(body, header_length(headers))
        except InvalidRequest as error:
            return error_response(400, str(error))
        message = _grpc_request(model, version, request)
        try:
            reply = await next(self._stubs).ModelInfer(message, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as error:
            if error.code() in _UNANSWERED:
                raise BackendUnavailable(_unreachable(error)) from error
            return error_response(_GRPC_STATUS.get(error.code(), 500),
                                  error.details() or str(error))
        outputs = [from_raw(o.name, o.datatype, list(o.shape), raw)
                   for o, raw in zip(reply.outputs, reply.raw_output_contents, strict=True)]
        body, response_headers = encode_response(reply.model_name, reply.model_version,
                                                 request, outputs)
        return BackendResponse(200, body, response_headers)


def _tensor_meta(tensor: Any) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}


def _grpc_request(model: str, version: int | None, request: InferRequest) -> Any:
    message = service_pb2.ModelInferRequest(
        model_name=model, model_version=str(version or ""), id=request.id or "",
        inputs=[service_pb2.ModelInferRequest.InferInputTensor(
            name=t.name, datatype=t.datatype, shape=list(t.array.shape)) for t in request.inputs],
        raw_input_contents=[to_raw(t) for t in request.inputs])
    if request.outputs is not None:
        message.outputs.extend(service_pb2.ModelInferRequest.InferRequestedOutputTensor(name=n)
                               for n in request.outputs)
    return message


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
