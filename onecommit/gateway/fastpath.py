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

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from onecommit.gateway.dataplane import DataPlane, check_length, parse_version
from onecommit.gateway.errors import JSON, GatewayError, error_body
from onecommit.gateway.guard import Check, read_body

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
            number = None if version is None else parse_version(version)
            if self._check is not None:
                await self._check(Request(scope))
            plane: DataPlane = scope["app"].state.dataplane
            # The naming rule and the known models before anything is logged or counted: the
            # label sets of the metrics and the prediction log stay bounded.
            await plane.serving.servable(model)
            check_length(headers.get("content-length"), self._max_body_bytes)
            body = await read_body(receive, self._max_body_bytes)
            served = await plane.infer(model, body, headers, number)
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
