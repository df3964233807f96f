"""The bench's statistics and target judgement (the bench itself is not a timed test)."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from onecommit.bench import load, report
from onecommit.bench.report import DIRECT, GATEWAY, MLFLOW, ReloadRun, SplitRun, Summary


def _cell(target: str, connections: int, rps: float, p50: float) -> Summary:
    return Summary(target, connections, requests=1000, failed=0, elapsed_s=1.0, rps=rps,
                   p50_ms=p50, p99_ms=p50 * 3, max_ms=p50 * 5)


def _cells(gateway_p50: float, gateway_rps_4: float) -> list[Summary]:
    return [_cell(DIRECT, 1, 2000, 0.4), _cell(DIRECT, 4, 2000, 1.6),
            _cell(GATEWAY, 1, 1000, gateway_p50), _cell(GATEWAY, 4, gateway_rps_4, 2.0),
            _cell(MLFLOW, 1, 200, 4.0), _cell(MLFLOW, 4, 300, 12.0)]


GOOD_RELOAD = ReloadRun(reloads=5, requests=900, failed=0, worst_ms=40.0, p99_ms=9.0,
                        quiet_worst_ms=35.0, quiet_p99_ms=8.0)
GOOD_SPLIT = SplitRun(requests=10_000, weight=0.2, challenger=2_050, failed=0)


def test_summary_percentiles_and_rate() -> None:
    latencies = [float(v) for v in range(1, 101)]
    summary = report.summarize("t", 4, latencies, failed=20, elapsed_s=2.0)
    assert summary.requests == 120
    assert summary.rps == 60.0
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p99_ms == pytest.approx(99.01)
    assert summary.max_ms == 100.0


def test_summary_without_answers_is_an_error() -> None:
    with pytest.raises(ValueError, match="no request was answered"):
        report.summarize("t", 1, [], failed=3, elapsed_s=1.0)


def test_every_target_met() -> None:
    found = report.targets(_cells(gateway_p50=0.8, gateway_rps_4=1500), GOOD_RELOAD, GOOD_SPLIT)
    assert [t.met for t in found] == [True] * 7
    assert all(t.line().endswith(": met") for t in found)


def test_misses_say_by_how_much() -> None:
    reload = ReloadRun(reloads=5, requests=900, failed=2, worst_ms=130.0, p99_ms=9.0,
                       quiet_worst_ms=35.0, quiet_p99_ms=8.0)
    split = SplitRun(requests=10_000, weight=0.2, challenger=2_300, failed=0)
    found = {t.name: t for t in report.targets(_cells(gateway_p50=1.1, gateway_rps_4=700),
                                               reload, split)}
    overhead = found["gateway p50 overhead over direct Triton, 1 connection"]
    assert not overhead.met
    assert overhead.miss == pytest.approx(0.2)
    assert "MISSED by 0.2 ms" in overhead.line()
    ratio = found["gateway rps / direct Triton rps, 4 connections"]
    assert ratio.measured == pytest.approx(0.35)
    assert ratio.miss == pytest.approx(0.35)
    mlflow_4 = found["gateway rps / mlflow serve rps, 4 connection(s)"]
    assert mlflow_4.measured == pytest.approx(700 / 300)
    assert not mlflow_4.met
    assert found["failed requests during challenger reloads"].miss == 2
    assert found["worst latency during challenger reloads"].miss == pytest.approx(30.0)
    share = found["challenger share at canary 20%, off by"]
    assert share.measured == pytest.approx(3.0)
    assert share.miss == pytest.approx(1.0)


def test_limits_are_inclusive() -> None:
    exact = report.Target("x", 0.5, 0.5, "at_most", " ms")
    assert exact.met
    assert exact.miss == 0
    assert report.Target("y", 3.0, 3.0, "at_least", "x").met


def test_split_share_leaves_out_failed_requests() -> None:
    assert SplitRun(requests=100, weight=0.2, challenger=18, failed=10).share == pytest.approx(0.2)


def test_missing_cell_is_named() -> None:
    with pytest.raises(KeyError, match="mlflow-serve at 4"):
        report.targets([c for c in _cells(0.8, 1500) if c.connections == 1 or c.target != MLFLOW],
                       GOOD_RELOAD, GOOD_SPLIT)


def test_json_and_chart_are_written(tmp_path: Path) -> None:
    cells = _cells(gateway_p50=0.8, gateway_rps_4=1500)
    report.write_json(tmp_path / "b.json", {"cells": cells, "reload": GOOD_RELOAD})
    written = json.loads((tmp_path / "b.json").read_text())
    assert written["cells"][2]["target"] == GATEWAY
    assert written["reload"]["worst_ms"] == 40.0
    report.chart(tmp_path / "b.png", cells, "title")
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| gateway | 4 | 1500 |" in report.table(cells)


class _Echo(threading.Thread):
    """A keep-alive HTTP/1.1 server on 127.0.0.1 answering 200 with a variant header to even
    requests and 503 to odd ones: enough to check the client's counting."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]

    def run(self) -> None:
        connection, _ = self.server.accept()
        served, buffer = 0, b""
        with connection:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(buffer) < length:
                    buffer += connection.recv(65536)
                buffer = buffer[length:]
                status = b"200 OK" if served % 2 == 0 else b"503 Unavailable"
                served += 1
                connection.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n"
                                   b"X-Variant: champion\r\n\r\nok")


def test_load_client_counts_answers_failures_and_headers() -> None:
    server = _Echo()
    server.start()
    plan = load.Plan(connections=1, requests=100, duration_s=30, warmup=0)
    result = load.run(server.port, load.Request("/x", b"{}"), plan, watch_header="x-variant")
    server.server.close()
    assert result.requests == 100
    assert len(result.latencies_ms) == 50
    assert result.failures == 50
    assert result.statuses == {200: 50, 503: 50}
    assert result.watched == {"champion": 50}


def test_load_plan_must_stop() -> None:
    with pytest.raises(ValueError, match="positive duration"):
        load.Plan(connections=1, requests=10, duration_s=0)
