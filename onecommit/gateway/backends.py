"""Backends the dataplane calls; Triton over pooled async HTTP."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class BackendResponse:
    status_code: int
    body: bytes
    headers: dict[str, str]


# Headers that describe the body: everything else is hop-by-hop or recomputed.
_FORWARDED = ("content-type", "inference-header-content-length")
_ZERO = {"FP32": 0.0, "FP64": 0.0, "INT64": 0, "INT32": 0, "BOOL": False}


class TritonBackend:
    """Triton's v2 HTTP API; one pooled client for the gateway's lifetime. Idempotent reads
    are retried a bounded number of times; inference is never retried (not idempotent for the
    caller's accounting)."""

    def __init__(self, base_url: str, timeout_s: float, max_connections: int,
                 read_retries: int = 2) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url, timeout=timeout_s,
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
        )
        self._read_retries = read_retries

    async def close(self) -> None:
        await self._client.aclose()

    async def _get(self, path: str) -> httpx.Response:
        for attempt in range(self._read_retries + 1):
            try:
                return await self._client.get(path)
            except httpx.TransportError:
                if attempt == self._read_retries:
                    raise
        raise AssertionError("unreachable")

    async def ready(self) -> bool:
        try:
            return (await self._get("/v2/health/ready")).status_code == 200
        except httpx.HTTPError:
            return False

    async def version_ready(self, model: str, version: int) -> bool:
        try:
            response = await self._get(f"/v2/models/{model}/versions/{version}/ready")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def metadata(self, model: str, version: int | None = None) -> dict[str, Any] | None:
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
        response = await self._get(path)
        if response.status_code != 200:
            return None
        metadata: dict[str, Any] = response.json()
        return metadata

    async def warm(self, model: str, version: int) -> bool:
        """One inference on a zero row so the first real request does not pay for the warm-up."""
        meta = await self.metadata(model, version)
        if meta is None:
            return False
        inputs = []
        for spec in meta["inputs"]:
            shape = [1 if d < 0 else d for d in spec["shape"]]
            count = 1
            for dim in shape:
                count *= dim
            inputs.append({"name": spec["name"], "shape": shape, "datatype": spec["datatype"],
                           "data": [_ZERO.get(spec["datatype"], 0)] * count})
        response = await self.infer(model, version, json.dumps({"inputs": inputs}).encode(),
                                    {"content-type": "application/json"})
        return response.status_code == 200

    async def infer(self, model: str, version: int | None, body: bytes,
                    headers: dict[str, str]) -> BackendResponse:
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        return await self.forward("POST", path, body, headers)

    async def forward(self, method: str, path: str, body: bytes,
                      headers: dict[str, str]) -> BackendResponse:
        """Send the request bytes unchanged; the body is never parsed on this path."""
        sent = {k: v for k, v in headers.items() if k.lower() in _FORWARDED}
        response = await self._client.request(method, path, content=body, headers=sent)
        kept = {k: v for k, v in response.headers.items() if k.lower() in _FORWARDED}
        return BackendResponse(response.status_code, response.content, kept)
