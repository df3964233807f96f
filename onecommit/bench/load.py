"""A closed-loop HTTP/1.1 load generator for 127.0.0.1 only.

One thread per connection, each a keep-alive socket that sends a pre-built request and reads
the reply with a minimal parser: the client spends a few microseconds per request, so on a
2-core host it steals as little CPU as possible from the servers it measures. Every target is
measured with this same client. A run stops by itself after a fixed number of requests or a
fixed duration, whichever comes first.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from onecommit.errors import OnecommitError
from onecommit.gateway.http1 import UpstreamError, parse_head

HOST = "127.0.0.1"
_RECV = 65536


class LoadError(OnecommitError):
    """The target answered something this client cannot read (it is not a load failure)."""


@dataclass(frozen=True)
class Request:
    """What every request of a run sends: the same bytes each time."""

    path: str
    body: bytes
    content_type: str = "application/json"

    def wire(self, port: int) -> bytes:
        head = (f"POST {self.path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                f"Content-Type: {self.content_type}\r\nContent-Length: {len(self.body)}\r\n\r\n")
        return head.encode() + self.body


@dataclass
class Result:
    """Latencies of answered requests, failures (non-200 or broken connection), the values of
    a watched response header, and the wall time of the run."""

    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    watched: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + self.failures

    def merge(self, other: Result) -> None:
        self.latencies_ms.extend(other.latencies_ms)
        self.failures += other.failures
        self.statuses.update(other.statuses)
        self.watched.update(other.watched)


class _Connection:
    def __init__(self, port: int, timeout_s: float) -> None:
        self._port = port
        self._timeout_s = timeout_s
        self._buffer = bytearray()
        self._socket = self._connect()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((HOST, self._port), timeout=self._timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def reconnect(self) -> None:
        self._socket.close()
        self._buffer.clear()
        self._socket = self._connect()

    def close(self) -> None:
        self._socket.close()

    def _fill(self) -> None:
        chunk = self._socket.recv(_RECV)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self._buffer += chunk

    def roundtrip(self, wire: bytes, watch: str | None) -> tuple[int, str | None]:
        """Send one request; return (status, value of the watched header)."""
        self._socket.sendall(wire)
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        try:
            status, headers = parse_head(bytes(self._buffer[:end]))
        except UpstreamError as error:
            raise LoadError(str(error)) from None
        del self._buffer[: end + 4]
        length = headers.get("content-length")
        if length is None or not length.isdigit():
            raise LoadError("the bench client reads Content-Length responses only")
        while len(self._buffer) < int(length):
            self._fill()
        del self._buffer[: int(length)]
        return status, headers.get(watch) if watch else None


@dataclass(frozen=True)
class Plan:
    """How long a run lasts: it stops after `requests` in total or `duration_s`, whichever is
    first; `warmup` requests per connection are sent first and not counted."""

    connections: int
    requests: int
    duration_s: float
    warmup: int = 50
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.connections < 1 or self.requests < 1 or self.duration_s <= 0:
            raise ValueError("a load plan needs at least one connection, one request and a "
                             "positive duration")


def run(port: int, request: Request, plan: Plan, watch_header: str | None = None) -> Result:
    """Drive `plan.connections` keep-alive connections to 127.0.0.1:`port` in a closed loop."""
    wire = request.wire(port)
    watch = watch_header.lower() if watch_header else None
    budget = _Budget(plan.requests)
    # Every connection is open and warm before the clock starts.
    warmed = threading.Barrier(plan.connections + 1)
    go = threading.Event()
    deadline = [0.0]
    results = [Result() for _ in range(plan.connections)]
    errors: list[BaseException] = []

    def worker(result: Result) -> None:
        connection = None
        try:
            connection = _Connection(port, plan.timeout_s)
            for _ in range(plan.warmup):
                connection.roundtrip(wire, None)
            warmed.wait()
            go.wait()
            _loop(connection, wire, watch, budget, deadline[0], result)
        except threading.BrokenBarrierError:
            return  # another connection failed; its error is reported
        except (LoadError, OSError) as error:
            errors.append(error)
            warmed.abort()
        finally:
            if connection is not None:
                connection.close()

    threads = [threading.Thread(target=worker, args=(r,), daemon=True) for r in results]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a failed connection is reported
        warmed.wait()
    started = time.perf_counter()
    deadline[0] = started if errors else started + plan.duration_s
    go.set()
    for thread in threads:
        thread.join()
    total = Result(elapsed_s=time.perf_counter() - started)
    if errors:
        raise LoadError(f"load run against {HOST}:{port} failed: {errors[0]!r}")
    for result in results:
        total.merge(result)
    return total


class _Budget:
    """A shared request counter: connections take requests from it until it is spent."""

    def __init__(self, total: int) -> None:
        self._left = total
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


def _loop(connection: _Connection, wire: bytes, watch: str | None, budget: _Budget,
          deadline: float, result: Result) -> None:
    clock = time.perf_counter
    while budget.take() and clock() < deadline:
        started = clock()
        try:
            status, watched = connection.roundtrip(wire, watch)
        except OSError:
            # A dropped connection is a failed request: count it and carry on on a new one.
            result.failures += 1
            connection.reconnect()
            continue
        result.statuses[status] += 1
        if status != 200:
            result.failures += 1
            continue
        result.latencies_ms.append((clock() - started) * 1000)
        if watched is not None:
            result.watched[watched] += 1
