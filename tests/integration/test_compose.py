"""The compose profile end to end, on a real Docker engine: the images built (the engine's
cache makes a second run seconds), `up` by the same code as `invoke up --profile compose`, a
good commit promoted under a canary and a bad one rolled back, with the gateway's error-rate
alert loaded in Prometheus and firing during the bad commit.

Without an engine (and no way to start one: root on Debian) it is skipped with the reason;
with CI=true that fails instead, so CI can never pass without having run it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from onecommit import loop
from onecommit.settings import Settings
from tests.conftest import free_ports, make_settings

pytestmark = pytest.mark.compose

ERROR_RATE_ALERT = "OnecommitGatewayVariantErrorRateHigh"
# The host's trust store: on a network whose TLS a proxy re-signs, the only one pip accepts.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _engine_or_skip() -> None:
    from onecommit.platform import engine

    why = engine.unavailable()
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the compose test: {why}")
    pytest.skip(f"no Docker engine: {why}")


@pytest.fixture(scope="module")
def compose_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    _engine_or_skip()
    from onecommit.platform import compose, engine, images

    # An engine started here is stopped at the end; its image cache stays for the next run.
    with engine.session() as client:
        postgres, prometheus, alertmanager = free_ports(3)
        settings = make_settings(
            tmp_path_factory.mktemp("compose"), profile="compose",
            image_base=images.reachable_base(client),
            image_ca_bundle=HOST_CA_BUNDLE if HOST_CA_BUNDLE.is_file() else None,
            postgres_port=postgres, prometheus_port=prometheus, alertmanager_port=alertmanager)
        try:
            compose.up(settings)
            yield settings
        finally:
            compose.down(settings, volumes=True)
            left = client.containers.list(all=True, filters={
                "label": f"com.docker.compose.project={compose.project(settings)}"})
            assert not left, f"containers left after down: {[c.name for c in left]}"


def test_every_service_healthy(compose_platform: Settings) -> None:
    from onecommit.platform import compose

    report = compose.statuses(compose_platform)
    assert {n: s.detail for n, s in report.items() if not s.healthy} == {}
    assert all(s.memory_mb > 0 for s in report.values())


def test_error_rate_alert_loaded(compose_platform: Settings) -> None:
    rules = _prometheus(compose_platform, "/api/v1/rules")["groups"]
    alerts = {r["name"] for g in rules for r in g["rules"] if r["type"] == "alerting"}
    assert ERROR_RATE_ALERT in alerts


def _model(settings: Settings) -> str:
    """The env's first model: one is enough to run the loop in containers."""
    return loop.models(settings)[0]


def test_good_commit_promoted(compose_platform: Settings) -> None:
    model = _model(compose_platform)
    if loop.champion_version(compose_platform, model) is None:
        (first,) = loop.demo_commit(compose_platform, "good", [model])
        assert first.outcome == "promoted", first.reason
    (report,) = loop.demo_commit(compose_platform, "good", [model])
    assert report.outcome == "promoted", report.reason
    assert loop.champion_version(compose_platform, model) == report.challenger_version
    assert loop.served_version(compose_platform, model) == str(report.challenger_version)


def test_bad_commit_rolled_back_while_the_alert_fires(compose_platform: Settings) -> None:
    model = _model(compose_platform)
    before = loop.champion_version(compose_platform, model)
    assert before is not None, "the good commit's test leaves a champion"
    firing: list[dict[str, str]] = []
    done = threading.Event()
    watcher = threading.Thread(target=_watch_alerts, args=(compose_platform, firing, done))
    watcher.start()
    try:
        (report,) = loop.demo_commit(compose_platform, "bad", [model])
    finally:
        done.set()
        watcher.join()
    assert report.outcome == "rolled_back", report.reason
    assert loop.champion_version(compose_platform, model) == before
    assert any(a["variant"] == "challenger" for a in firing), (
        f"{ERROR_RATE_ALERT} never fired for the challenger while the bad commit ran")


def _watch_alerts(settings: Settings, firing: list[dict[str, str]],
                  done: threading.Event) -> None:
    """Collect the error-rate alert's labels each time Prometheus reports it firing."""
    while not done.is_set():
        try:
            alerts = _prometheus(settings, "/api/v1/alerts")["alerts"]
        except httpx.HTTPError:
            alerts = []
        firing += [a["labels"] for a in alerts
                   if a["labels"]["alertname"] == ERROR_RATE_ALERT and a["state"] == "firing"]
        time.sleep(1)


def _prometheus(settings: Settings, path: str) -> dict[str, Any]:
    response = httpx.get(f"{settings.url(settings.prometheus_port)}{path}", timeout=10)
    response.raise_for_status()
    data: dict[str, Any] = response.json()["data"]
    return data
