"""A minimal pooled HTTP/1.1 keep-alive client for one upstream: the gateway's hop to Triton.

General clients spend most of their time on what this hop never needs (redirects, cookies,
proxies, auth flows, per-request tasks): measured on the bench host, aiohttp took about five
times the CPU of this client per call to Triton, and httpx more still (docs/bench/README.md).
This one builds the request bytes, writes them on an idle pooled connection, and parses one
response: Content-Length or chunked bodies, `Connection: close` honoured. Any transport fault
raises UpstreamError and the connection is dropped; nothing is retried here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

_HEAD_END = b"\r\n\r\n"


class UpstreamError(ConnectionError):
    """The upstream could not be reached, broke the connection, or answered malformed HTTP."""


@dataclass(frozen=True)
class Reply:
    status: int
    # Lower-case names.
    headers: dict[str, str]
    body: bytes


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and lower-cased headers of a response head (without the blank line)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise UpstreamError(f"malformed status line {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return int(parts[1]), headers


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Reply] | None = None
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they are transports.
        self._transport = cast(asyncio.Transport, transport)
        self.open = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._fail(UpstreamError(f"upstream closed the connection ({exc or 'EOF'})"))

    def _fail(self, error: UpstreamError) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            # Bytes nobody asked for: this connection is out of step, never reuse it.
            self.close()
            return
        self._buffer += data
        try:
            reply = self._parse()
        except UpstreamError as error:
            self._fail(error)
            self.close()
            return
        if reply is not None:
            self._waiter.set_result(reply)

    def _parse(self) -> Reply | None:
        end = self._buffer.find(_HEAD_END)
        if end < 0:
            return None
        status, headers = parse_head(bytes(self._buffer[:end]))
        start = end + len(_HEAD_END)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parsed = _dechunk(self._buffer, start)
            if parsed is None:
                return None
            body, consumed = parsed
        else:
            length = headers.get("content-length")
            if length is None or not length.isdigit():
                raise UpstreamError("response without a usable Content-Length")
            if len(self._buffer) < start + int(length):
                return None
            body, consumed = bytes(self._buffer[start: start + int(length)]), start + int(length)
        del self._buffer[:consumed]
        return Reply(status, headers, body)

    async def exchange(self, request: bytes) -> Reply:
        if not self.open or self._transport is None:
            raise UpstreamError("connection closed before the request was sent")
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.close()


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """(body, bytes consumed) once the whole chunked body is buffered, else None."""
    chunks: list[bytes] = []
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size_text = bytes(buffer[at:line_end]).split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise UpstreamError(f"malformed chunk size {size_text[:20]!r}") from None
        at = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", line_end)
            return (b"".join(chunks), trailer_end + 4) if trailer_end >= 0 else None
        if len(buffer) < at + size + 2:
            return None
        chunks.append(bytes(buffer[at: at + size]))
        at += size + 2


class Pool:
    """Keep-alive connections to one host:port, at most `max_connections` at once."""

    def __init__(self, host: str, port: int, max_connections: int, timeout_s: float) -> None:
        self._host, self._port = host, port
        self._host_header = f"Host: {host}:{port}\r\n".encode()
        self._timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: Mapping[str, str] | None = None) -> Reply:
        request = self._encode(method, path, body, headers or {})
        async with self._slots:
            connection = None
            try:
                async with asyncio.timeout(self._timeout_s):
                    connection = await self._connection()
                    reply = await connection.exchange(request)
            except BaseException as error:
                # Timed out, broken or cancelled half-way: the connection's state is unknown.
                if connection is not None:
                    connection.close()
                if isinstance(error, UpstreamError) or not isinstance(error,
                                                                      (OSError, TimeoutError)):
                    raise
                raise UpstreamError(f"{type(error).__name__}: {error}") from error
            if reply.headers.get("connection", "").lower() == "close":
                connection.close()
            else:
                self._idle.append(connection)
            return reply

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.open:
                return connection
        _, connection = await asyncio.get_running_loop().create_connection(
            _Connection, self._host, self._port)
        return connection

    def _encode(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
        lines = [f"{method} {path} HTTP/1.1\r\n".encode(), self._host_header]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} carries a line break")
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(f"Content-Length: {len(body)}\r\n\r\n".encode())
        lines.append(body)
        return b"".join(lines)

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
