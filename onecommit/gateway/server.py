"""The gateway's HTTP/1.1 server protocol: uvicorn's httptools protocol with the bounds it lacks.

uvicorn times out idle keep-alive connections only: a connection that sends half a request
head, or a body byte now and then, is held open forever, and each one holds memory, a file
descriptor and a slot. Here, per worker:
- a request head must be complete within `header_timeout_s` of its first byte (or of the
  connection's opening) and stay under `max_header_bytes`;
- a request body must be complete within `body_timeout_s` of its head;
- at most `max_connections` connections are open; one more is answered 503 and closed.
A refusal is the gateway's v2 error body, and the connection is closed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large",
            503: "Service Unavailable"}


@dataclass(frozen=True)
class Limits:
    header_timeout_s: float
    body_timeout_s: float
    max_header_bytes: int
    max_connections: int


def refusal(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, with a v2 error body."""
    # Imported here: the process that spawns the workers imports this module, and must not
    # pay for the framework's import (see `app_from_environment`).
    from onecommit.gateway.errors import JSON, error_body

    body = error_body(message)
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: {JSON['content-type']}\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


class BoundedHttp(HttpToolsProtocol):
    """Built by uvicorn per connection, with `limits` bound in (see `__main__`)."""

    def __init__(self, *args: Any, limits: Limits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0

    def _arm(self, seconds: float, status: int, message: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._refuse, status, message)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _refuse(self, status: int, message: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            # No response of this request has started: the refusal can be answered.
            self.transport.write(refusal(status, message))
        self.transport.close()

    def _head_timeout(self) -> None:
        self._arm(self._limits.header_timeout_s, 408,
                  f"request head not complete within {self._limits.header_timeout_s:g} s")

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            self._refuse(503, f"more than {self._limits.max_connections} connections are "
                              "open: retry shortly")
            return
        self._head_timeout()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._deadline is None:
            # The next request of a keep-alive connection; the first one's clock runs from
            # the connection's opening, not from its first byte.
            self._head_timeout()

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self._limits.max_header_bytes:
            self._refuse(431, f"request head exceeds {self._limits.max_header_bytes} bytes")

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.transport.is_closing():
            return
        self._arm(self._limits.body_timeout_s, 408,
                  f"request body not complete within {self._limits.body_timeout_s:g} s")
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.cycle is not None:  # None: the head was refused, the rest is dropped
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        if self.cycle is not None:
            super().on_message_complete()
