"""Shared request logic between the HTTP routes and the backends."""

from __future__ import annotations

import httpx

from onecommit.gateway.backends import BackendResponse, TritonBackend


class BackendUnavailable(RuntimeError):
    """Triton could not be reached; the route answers 503."""


class DataPlane:
    def __init__(self, backend: TritonBackend) -> None:
        self._backend = backend

    async def ready(self) -> bool:
        return await self._backend.ready()

    async def model_call(self, method: str, path: str, body: bytes,
                         headers: dict[str, str]) -> BackendResponse:
        try:
            return await self._backend.forward(method, path, body, headers)
        except httpx.HTTPError as error:
            reason = type(error).__name__
            raise BackendUnavailable(f"inference server unreachable: {reason}") from error
