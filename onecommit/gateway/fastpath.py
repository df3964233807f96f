"""The two inference routes as a pure ASGI middleware in front of FastAPI's router.

`POST /v2/models/{model}/infer` (routed) and `POST /v2/models/{model}/versions/{version}/infer`
(pinned) are the gateway's hot path. Through FastAPI each request paid for a
BaseHTTPMiddleware (a task group and memory streams), routing, dependency solving with a
thread-pool hop, and Starlette's Request and Response objects: profiled at several times the
gateway's own work per request (docs/bench/README.md). Here the same contract, the inference
token, the body size limit, v2 `{"error": ...}` bodies, the variant and version headers, costs
one dict of headers and two ASGI messages. Every other request goes on to FastAPI unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from onecommit.gateway.dataplane import DataPlane, check_length, is_decimal
from onecommit.gateway.errors import JSON, BadRequest, BodyTooLarge, GatewayError, error_body

# An inference-token check: raises a GatewayError (401, 503) to refuse.
Check = Callable[[Request], Awaitable[None]]
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]
_PREFIX, _SUFFIX = "/v2/models/", "/infer"
_JSON = [(key.encode(), value.encode()) for key, value in JSON.items()]
# Backend headers that describe the body and go back to the caller.
_BODY_HEADERS = ("content-type", "inference-header-content-length")


class InferenceRoutes:
    def __init__(self, app: ASGIApp, check: Check | None, max_body_bytes: int) -> None:
        self._app = app
        self._check = check
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _route(scope["path"]) if scope["type"] == "http" \
            and scope["method"] == "POST" else None
        if route is None:
            await self._app(scope, receive, send)
            return
        status, body, headers = await self._serve(route, scope, receive)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _serve(self, route: tuple[str, str | None], scope: Scope,
                     receive: Receive) -> Answer:
        model, version = route
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            if version is not None and not is_decimal(version):
                raise BadRequest(f"model version must be a number, got {version!r}")
            if self._check is not None:
                await self._check(Request(scope))
            body = await _body(receive, headers.get("content-length"), self._max_body_bytes)
            plane: DataPlane = scope["app"].state.dataplane
            served = await plane.infer(model, body, headers,
                                       int(version) if version is not None else None)
        except GatewayError as error:
            return error.status_code, error_body(str(error)), list(_JSON)
        answer = [(k.encode(), v.encode()) for k, v in served.response.headers.items()
                  if k in _BODY_HEADERS]
        answer += [(b"x-request-id", served.request_id.encode("latin-1")),
                   (b"x-onecommit-variant", served.variant.encode()),
                   (b"x-onecommit-version", str(served.version or "").encode())]
        return served.response.status_code, served.response.body, answer


def _route(path: str) -> tuple[str, str | None] | None:
    """(model, version or None) for the two inference paths, else None."""
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    match path[len(_PREFIX): -len(_SUFFIX)].split("/"):
        case [model] if model:
            return model, None
        case [model, "versions", version] if model and version:
            return model, version
    return None


async def _body(receive: Receive, length: str | None, limit: int) -> bytes:
    """The request body, refused with a 413 as soon as it is known to exceed the limit."""
    check_length(length, limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)

