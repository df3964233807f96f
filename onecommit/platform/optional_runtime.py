"""Where the optional layer's programs run, as one protocol: the local profile's supervisor
(`optional_layer.Supervised`) or compose's containers (`optional_containers.Containers`), and
what both wait and check with."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Protocol

from onecommit.features.settings import FEATURE_SERVER, REDIS, FeatureSettings
from onecommit.platform.health import ComponentStatus
from onecommit.platform.local import PlatformError, Report, port_free


class Runtime(Protocol):
    """Where the layer's programs (REDIS, FEATURE_SERVER) run."""

    def check(self) -> None:
        """Refuse early, with the fix, what would fail half-way."""

    def running(self) -> set[str]:
        """The layer's programs running now."""

    def start_store(self, report: Report) -> None:
        """Start the online store's server (none for SQLite); return once it answers."""

    def prepare(self) -> dict[str, float]:
        """Write the offline file, apply the definitions, materialise: Feast's own timings."""

    def start_server(self, report: Report) -> None:
        """Start the feature server; return once it is healthy."""

    def stop(self, program: str) -> None:
        """Stop one program gracefully (Redis flushes its append-only file on SIGTERM)."""

    def server_status(self) -> ComponentStatus:
        """The feature server's health; its memory counts Redis's too."""

    def server_log(self) -> tuple[str, str]:
        """Where the feature server's log is, and its tail."""


def refuse_taken_ports(settings: FeatureSettings, programs: list[str],
                       running: set[str]) -> None:
    """A port another process holds fails the start half-way: refuse it first, with the fix."""
    ports = {FEATURE_SERVER: ("FEAST", settings.feast_port),
             REDIS: ("FEAST_REDIS", settings.feast_redis_port)}
    for program in programs:
        variable, port = ports[program]
        if program not in running and not port_free(settings.host, port):
            raise PlatformError(f"port {port} ({program}) on {settings.host} is in use by "
                                f"another process: free it or set ONECOMMIT_{variable}_PORT to "
                                "a free port")


# Answers "" once ready, else why not.
Readiness = Callable[[], str]
# None while the program runs, else where its log is and the log's tail.
Exited = Callable[[], tuple[str, str] | None]


def wait_ready(settings: FeatureSettings, program: str, ready: Readiness, exited: Exited,
               report: Report) -> None:
    """Until `ready` answers ""; a program that exits, or the deadline, fails with the cause."""
    deadline = time.monotonic() + settings.health_timeout_s
    why = "not answering"
    while time.monotonic() < deadline:
        dead = exited()
        if dead is not None:
            raise PlatformError(f"{program} exited at start: see {dead[0]}", detail=dead[1])
        why = ready()
        if why == "":
            report(f"{program}: ready")
            return
        time.sleep(0.2)
    raise PlatformError(f"{program} not ready after {settings.health_timeout_s:.0f} s ({why})")


def redis_ready(settings: FeatureSettings) -> Readiness:
    return lambda: _ping(settings)


def _ping(settings: FeatureSettings) -> str:
    """Empty when Redis answers PONG (it answers LOADING while it reads its data back)."""
    try:
        with socket.create_connection((settings.host, settings.feast_redis_port), 1) as conn:
            conn.sendall(b"PING\r\n")
            answer = conn.recv(64)
    except OSError as error:
        return type(error).__name__
    return "" if answer.startswith(b"+PONG") else answer.decode(errors="replace").strip()
