"""Backends the dataplane calls; Triton over pooled async HTTP."""

from __future__ import annotations

from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class BackendResponse:
    status_code: int
    body: bytes
    headers: dict[str, str]


# Headers that describe the body: everything else is hop-by-hop or recomputed.
_FORWARDED = ("content-type", "inference-header-content-length")


class TritonBackend:
    """Triton's v2 HTTP API; one pooled client for the gateway's lifetime."""

    def __init__(self, base_url: str, timeout_s: float, max_connections: int) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url, timeout=timeout_s,
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def ready(self) -> bool:
        try:
            response = await self._client.get("/v2/health/ready")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def forward(self, method: str, path: str, body: bytes,
                      headers: dict[str, str]) -> BackendResponse:
        """Send the request bytes unchanged; the body is never parsed on this path."""
        sent = {k: v for k, v in headers.items() if k.lower() in _FORWARDED}
        response = await self._client.request(method, path, content=body, headers=sent)
        kept = {k: v for k, v in response.headers.items() if k.lower() in _FORWARDED}
        return BackendResponse(response.status_code, response.content, kept)
