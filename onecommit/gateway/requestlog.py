"""The gateway's request log: one JSON line per inference, written in batches off the hot path.

Answering a request only appends a small tuple. A timer on the event loop formats the pending
ones with orjson and hands them to loguru as one message (the `kind=request` sink set up in
`__main__`: rotation and retention, written from loguru's own thread). Logging each request
through loguru's record serialisation and queue cost more than the whole rest of the gateway's
work per request (profiled, docs/bench/README.md); this keeps the same lines at a fraction.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
from loguru import logger

_log = logger.bind(kind="request")
Entry = tuple[float, str, str, str, int | None, int, float]


class RequestLog:
    def __init__(self, interval_s: float = 0.1, max_pending: int = 5000) -> None:
        self._interval_s = interval_s
        self._max_pending = max_pending
        self._pending: list[Entry] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, at: float, request_id: str, model: str, variant: str, version: int | None,
            status: int, latency_ms: float) -> None:
        """Record one answered request (`at`: wall-clock seconds)."""
        self._pending.append((at, request_id, model, variant, version, status, latency_ms))
        if len(self._pending) >= self._max_pending:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval_s, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        _log.info("\n".join(line(*entry) for entry in pending))


def line(at: float, request_id: str, model: str, variant: str, version: int | None,
         status: int, latency_ms: float) -> str:
    return orjson.dumps({
        "time": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds"),
        "request_id": request_id, "model": model, "variant": variant, "version": version,
        "status": status, "latency_ms": round(latency_ms, 3)}).decode()
