"""The gateway's upstream HTTP/1.1 client against a real socket server on 127.0.0.1 that
answers each request with the next scripted reply."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from onecommit.gateway.http1 import Pool, UpstreamError, parse_head

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n")
CLOSE = b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 4\r\n\r\nnope"


async def _serve(replies: list[bytes | None],
                 body: Callable[[Pool, list[bytes], list[int]], Awaitable[None]],
                 timeout_s: float = 5.0) -> None:
    """Run `body` against a server that answers request n with replies[n] (None: no answer),
    recording each request and counting connections."""
    received: list[bytes] = []
    connections = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        while replies:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            received.append(head + await reader.readexactly(length))
            reply = replies.pop(0)
            if reply is None:
                await asyncio.sleep(timeout_s * 2)
                return
            writer.write(reply)
            await writer.drain()
            if b"Connection: close" in reply:
                writer.close()
                return

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool("127.0.0.1", port, max_connections=4, timeout_s=timeout_s)
    try:
        await body(pool, received, connections)
    finally:
        pool.close()
        server.close()


def test_keep_alive_reuses_one_connection_and_sends_headers() -> None:
    async def body(pool: Pool, received: list[bytes], connections: list[int]) -> None:
        for _ in range(3):
            reply = await pool.request("POST", "/v2/x", b"{}", {"content-type": "a/b"})
            assert (reply.status, reply.body) == (200, b"{}")
            assert reply.headers["content-type"] == "application/json"
        assert connections == [1]
        assert received[0].startswith(b"POST /v2/x HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"content-type: a/b\r\nContent-Length: 2\r\n\r\n{}" in received[0]

    asyncio.run(_serve([OK, OK, OK], body))


def test_chunked_body_is_joined() -> None:
    async def body(pool: Pool, _: list[bytes], __: list[int]) -> None:
        assert (await pool.request("GET", "/")).body == b"abcde"

    asyncio.run(_serve([CHUNKED], body))


def test_connection_close_opens_a_new_connection() -> None:
    async def body(pool: Pool, _: list[bytes], connections: list[int]) -> None:
        assert (await pool.request("GET", "/")).status == 404
        assert (await pool.request("GET", "/")).status == 200
        assert connections == [2]

    asyncio.run(_serve([CLOSE, OK], body))


def test_no_answer_times_out_as_upstream_error() -> None:
    async def body(pool: Pool, _: list[bytes], __: list[int]) -> None:
        with pytest.raises(UpstreamError, match="TimeoutError"):
            await pool.request("GET", "/")

    asyncio.run(_serve([None], body, timeout_s=0.3))


def test_unreachable_upstream_is_an_upstream_error() -> None:
    async def body() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(UpstreamError, match="ConnectionRefused"):
            await Pool("127.0.0.1", port, 1, 1.0).request("GET", "/")

    asyncio.run(body())


@pytest.mark.parametrize("reply", [b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n",
                                   b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"])
def test_malformed_replies_are_upstream_errors(reply: bytes) -> None:
    async def body(pool: Pool, _: list[bytes], __: list[int]) -> None:
        with pytest.raises(UpstreamError):
            await pool.request("GET", "/")

    asyncio.run(_serve([reply], body, timeout_s=1.0))


def test_header_injection_is_refused() -> None:
    pool = Pool("127.0.0.1", 1, 1, 1.0)
    with pytest.raises(ValueError, match="line break"):
        asyncio.run(pool.request("POST", "/", b"", {"content-type": "a\r\nX-Evil: 1"}))


def test_parse_head_lowercases_names() -> None:
    status, headers = parse_head(b"HTTP/1.1 503 Unavailable\r\nX-Thing:  v \r\nA: b")
    assert status == 503
    assert headers == {"x-thing": "v", "a": "b"}
