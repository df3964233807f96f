"""The gate in front of every route but the inference fast path (fastpath.py guards its own).

FastAPI reads and parses a request's body before it runs a route's dependencies, so a token
check written as a dependency comes after the body is in memory: a client without a token could
make the gateway read a body of any size. Here, before FastAPI sees the request:
- an admin route's bearer token is checked before a byte of the body is read;
- the body is read up to the limit and no further, whatever its framing (a declared length, or
  chunks): beyond it the answer is a 413, and what was read is dropped.
A refusal sent before the body was read closes the connection (`connection: close`): the
unread body is never consumed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from fastapi import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onecommit.gateway.dataplane import check_length
from onecommit.gateway.errors import JSON, BadRequest, BodyTooLarge, GatewayError, error_body

# A token check: raises a GatewayError (401, 503) to refuse.
Check = Callable[[Request], Awaitable[None]]


async def refuse(send: Send, error: GatewayError, close: bool) -> None:
    """Answer a GatewayError in the v2 envelope straight from an ASGI middleware."""
    body = error_body(str(error))
    headers = [(b"content-type", JSON["content-type"].encode()),
               (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive, limit: int) -> bytes:
    """The request body, refused with a 413 as soon as it is known to exceed the limit."""
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


class Guard:
    def __init__(self, app: ASGIApp, admin_routes: Sequence[BaseRoute], check: Check,
                 max_body_bytes: int) -> None:
        self._app = app
        self._admin_routes = tuple(admin_routes)
        self._check = check
        self._max_body_bytes = max_body_bytes

    def _is_admin(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in self._admin_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = next((value.decode("latin-1") for name, value in scope["headers"]
                         if name == b"content-length"), None)
        try:
            check_length(declared, self._max_body_bytes)
            if self._is_admin(scope):
                await self._check(Request(scope))
        except GatewayError as error:
            await refuse(send, error, close=True)
            return
        try:
            body = await read_body(receive, self._max_body_bytes)
        except GatewayError as error:
            await refuse(send, error, close=True)
            return
        await self._app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` that hands the body already read over first, then waits as the server's does
    (for a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
