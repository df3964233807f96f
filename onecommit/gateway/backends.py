"""Backends the dataplane calls: Triton over pooled async HTTP (here) or gRPC
(`grpc_backend.py`), or ONNX Runtime in process for hosts where Triton cannot run
(`onnx_backend.py`). All three speak the same `Backend` protocol and the same v2 REST bodies,
so the dataplane and the routes never know which one serves."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import orjson

from onecommit.gateway.errors import JSON, BackendUnavailable, error_body
from onecommit.gateway.http1 import Pool, UpstreamError
from onecommit.gateway.tensors import HEADER_LENGTH

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


async def warm(backend: Backend, model: str, version: int) -> bool:
    """One inference on a zero row so the first real request does not pay for the warm-up."""
    meta = await backend.metadata(model, version)
    if meta is None:
        return False
    inputs = [{"name": spec["name"], "datatype": spec["datatype"],
               "shape": [1 if d < 0 else d for d in spec["shape"]]} for spec in meta["inputs"]]
    for tensor in inputs:
        count = math.prod(tensor["shape"])
        tensor["data"] = [""] * count if tensor["datatype"] == "BYTES" else (
            [False] * count if tensor["datatype"] == "BOOL" else [0] * count)
    response = await backend.infer(model, version, orjson.dumps({"inputs": inputs}),
                                   {"content-type": "application/json"})
    return response.status_code == 200


async def retrying(call: Callable[[], Awaitable[T]], transient: Callable[[Exception], bool],
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
    return BackendResponse(status, error_body(message), dict(JSON))


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
            raise BackendUnavailable(unreachable(error)) from error
        kept = {k: v for k, v in reply.headers.items() if k in _FORWARDED}
        return BackendResponse(reply.status, reply.body, kept)

    async def _get(self, path: str) -> BackendResponse:
        return await retrying(lambda: self._call("GET", path),
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


def unreachable(error: Exception) -> str:
    return f"inference server unreachable: {type(error).__name__}"
