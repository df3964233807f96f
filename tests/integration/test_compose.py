"""The compose profile end to end, on a real Docker engine: the images built (the engine's
cache makes a second run seconds), `up` by the same code as `invoke up --profile compose`, a
first commit deployed, a bad one rolled back, with the gateway's error-rate alert loaded in
Prometheus, the bad version's errors scraped while its rollout ran and the alert firing for it,
then the optional layer attached and a commit trained from Feast promoted under a canary.

Without an engine (and no way to start one: root on Debian) it is skipped with the reason;
with CI=true that fails instead, so CI can never pass without having run it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from onecommit import loop
from onecommit.features.settings import FEATURE_SERVER, REDIS, FeatureSettings
from onecommit.platform import profiles
from onecommit.platform.optional_runtime import Runtime
from onecommit.settings import PROJECT_ROOT, Settings
from tests.conftest import free_ports, make_settings

# The first test's setup builds the images: about 30 minutes cold on 2 cores, seconds warm.
pytestmark = [pytest.mark.e2e, pytest.mark.compose, pytest.mark.timeout(3600)]

ERROR_RATE_ALERT = "OnecommitGatewayVariantErrorRateHigh"
# After the rollback, how long the alert may take to fire (2 s scrapes and evaluations, held 5 s).
ALERT_WAIT_S = 60.0


def _runtime(settings: Settings) -> Runtime:
    """Where the profile runs the optional layer's programs, as `invoke optional` finds it."""
    where = profiles.of(settings).optional_runtime(settings)
    assert where is not None
    return where


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
    from onecommit.platform import compose, engine

    # An engine started here is stopped at the end; its image cache stays for the next run.
    with engine.session() as client:
        postgres, prometheus, alertmanager, feast, feast_redis = free_ports(5)
        # No image base or CA bundle given: chosen as for a user (images.choose_base, and the
        # host's trust store, which pip in a container needs behind a TLS-inspecting proxy).
        core = make_settings(
            tmp_path_factory.mktemp("compose"), profile="compose",
            postgres_port=postgres, prometheus_port=prometheus, alertmanager_port=alertmanager,
            # The project's own rollouts: the error-rate alert needs their 15 s canary step.
            gitops_seed=PROJECT_ROOT / "gitops")
        # The optional layer's ports too: every port of this platform is free and its own.
        settings = FeatureSettings(**core.model_dump(exclude_none=True), feast_port=feast,
                                   feast_redis_port=feast_redis)
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
    _print_memory(compose_platform)


def _print_memory(settings: Settings) -> None:
    """What `invoke status --profile compose` prints per service, for the README's figures."""
    from onecommit.platform import compose

    memory = compose.service_memory(settings)
    print(f"\nmemory per service (MB): {memory}; total {sum(memory.values()):.0f} MB")


def test_error_rate_alert_loaded(compose_platform: Settings) -> None:
    rules = _prometheus(compose_platform, "/api/v1/rules")["groups"]
    alerts = {r["name"] for g in rules for r in g["rules"] if r["type"] == "alerting"}
    assert ERROR_RATE_ALERT in alerts


def _model(settings: Settings) -> str:
    """The env's first model: one is enough to run the loop in containers."""
    return loop.models(settings)[0]


def test_first_commit_deployed(compose_platform: Settings) -> None:
    """The env's model deployed with no champion before it (the canary promotion is proven
    once, by the Feast-trained commit below)."""
    model = _model(compose_platform)
    assert loop.champion_version(compose_platform, model) is None
    (report,) = loop.demo_commit(compose_platform, "good", [model])
    assert report.outcome == "promoted", report.reason
    assert loop.champion_version(compose_platform, model) == report.challenger_version
    assert loop.served_version(compose_platform, model) == str(report.challenger_version)


def test_bad_commit_rolled_back_and_its_version_alerts(compose_platform: Settings) -> None:
    model = _model(compose_platform)
    before = loop.champion_version(compose_platform, model)
    assert before is not None, "the first commit's test leaves a champion"
    pushed = time.time()
    (report,) = loop.demo_commit(compose_platform, "bad", [model])
    returned = time.time()
    assert report.outcome == "rolled_back", report.reason
    assert loop.champion_version(compose_platform, model) == before
    version = str(report.challenger_version)
    # Prometheus scraped the bad version's errors while its rollout ran, not after: the
    # counter as Prometheus held it at the moment the rollback returned.
    scraped = _prometheus(compose_platform, "/api/v1/query", {
        "query": f'sum(onecommit_gateway_errors_total{{model="{model}",version="{version}"}})',
        "time": f"{returned:.3f}"})["result"]
    assert scraped, f"no error of {model} v{version} scraped before the rollback returned"
    assert float(scraped[0]["value"][1]) > 0
    alert = _firing(compose_platform, model, version)
    active = datetime.fromisoformat(alert["activeAt"]).timestamp()
    print(f"\n{ERROR_RATE_ALERT} for {model} v{version}: {float(scraped[0]['value'][1]):.0f} "
          f"errors scraped by the rollback's end ({returned - pushed:.0f} s after the push); "
          f"pending {active - pushed:.0f} s after the push, firing with "
          f"{float(alert['value']):.0%} of its requests failed")
    assert active > pushed


def test_optional_layer_enriches_survives_its_server_and_trains_from_feast(
        compose_platform: Settings) -> None:
    """`invoke optional --on --profile compose`: Redis and the feature server in containers,
    the gateway enriching entity ids; its server's container stopped (ids refused, vectors
    served) and attached again; a DAG task training from Feast in the platform image."""
    from onecommit.platform import optional_layer

    model = _model(compose_platform)
    started = time.monotonic()
    attached = optional_layer.on(compose_platform, _runtime(compose_platform))
    print(f"\noptional layer attached in {time.monotonic() - started:.0f} s ({attached.timings})")
    try:
        assert (attached.online_store, attached.materialized) == ("redis", True)
        status = optional_layer.status(compose_platform, _runtime(compose_platform))
        assert (status["attached"], status["healthy"], status["memory_mb"] > 0) == (
            True, True, True), status
        _print_memory(compose_platform)
        assert _outputs(_by_ids(compose_platform, model, PATIENTS)) == _outputs(
            _by_vectors(compose_platform, model, PATIENTS))
        _stopped_server_refuses_ids_and_serves_vectors(compose_platform, model)
        # The canary promotion of a good commit, trained from Feast.
        (report,) = loop.demo_commit(compose_platform, "good", [model])
        assert report.outcome == "promoted", report.reason
        assert loop.champion_version(compose_platform, model) == report.challenger_version
        assert loop.served_version(compose_platform, model) == str(report.challenger_version)
        assert _training_params(compose_platform, model, report.challenger_version)[
            "feature_source"] == "feast"
        _up_brings_the_attached_layer_back(compose_platform, model)
    finally:
        optional_layer.off(compose_platform, _runtime(compose_platform))
    refused = _by_ids(compose_platform, model, [0])
    assert (refused.status_code, "optional --on" in refused.json()["error"]) == (422, True)
    assert optional_layer.status(compose_platform, _runtime(compose_platform))["attached"] is False


# The first, a middle and the last patient of the data set.
PATIENTS = [0, 7, 568]


def _stopped_server_refuses_ids_and_serves_vectors(settings: Settings, model: str) -> None:
    from onecommit.platform import compose, optional_layer

    compose.compose(settings, "kill", FEATURE_SERVER, optional=True)
    try:
        refused = _by_ids(settings, model, [0])
        served = _by_vectors(settings, model, [0])
    finally:
        again = optional_layer.on(settings, _runtime(settings))
    assert (refused.status_code, "unreachable" in refused.json()["error"],
            served.status_code) == (503, True, 200)
    assert not again.materialized  # Redis kept the data
    assert _outputs(_by_ids(settings, model, PATIENTS)) == _outputs(
        _by_vectors(settings, model, PATIENTS))


def _up_brings_the_attached_layer_back(settings: Settings, model: str) -> None:
    """Its containers stopped, `up` starts them again: the layer's record is desired state."""
    from onecommit.platform import compose, optional_layer

    compose.compose(settings, "stop", FEATURE_SERVER, REDIS, optional=True)
    assert optional_layer.status(settings, _runtime(settings))["healthy"] is False
    compose.up(settings)
    assert optional_layer.status(settings, _runtime(settings))["healthy"] is True
    assert _outputs(_by_ids(settings, model, PATIENTS)) == _outputs(
        _by_vectors(settings, model, PATIENTS))


def _infer(settings: Settings, model: str, inputs: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{settings.gateway_url}/v2/models/{model}/infer",
                      json={"inputs": [inputs]}, timeout=30)


def _by_ids(settings: Settings, model: str, ids: list[int]) -> httpx.Response:
    from onecommit.features import dataset

    return _infer(settings, model, {"name": dataset.ENTITY, "datatype": "INT64",
                                    "shape": [len(ids)], "data": ids})


def _by_vectors(settings: Settings, model: str, ids: list[int]) -> httpx.Response:
    from onecommit.features import dataset

    rows = dataset.patients().features[ids].astype("float32")
    return _infer(settings, model, {"name": "X", "datatype": "FP32", "shape": list(rows.shape),
                                    "data": rows.ravel().tolist()})


def _outputs(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def _training_params(settings: Settings, model: str, version: int | None) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.url(settings.mlflow_port))
    run_id = client.get_model_version(model, str(version)).run_id
    assert run_id is not None
    params: dict[str, str] = client.get_run(run_id).data.params
    return params


def _firing(settings: Settings, model: str, version: str) -> dict[str, Any]:
    """The error-rate alert for the model's version once Prometheus reports it firing (the
    compose rules hold it 5 s; the ratio it fires on spans 5 minutes)."""
    deadline = time.monotonic() + ALERT_WAIT_S
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        seen = [a for a in _prometheus(settings, "/api/v1/alerts")["alerts"]
                if a["labels"]["alertname"] == ERROR_RATE_ALERT]
        for alert in seen:
            labels = alert["labels"]
            if (labels["model"], labels["version"], alert["state"]) == (model, version,
                                                                        "firing"):
                return alert
        time.sleep(1)
    raise AssertionError(f"{ERROR_RATE_ALERT} did not fire for {model} v{version} within "
                         f"{ALERT_WAIT_S:.0f} s of the rollback; its alerts: {seen}")


def _prometheus(settings: Settings, path: str,
                params: dict[str, str] | None = None) -> dict[str, Any]:
    response = httpx.get(f"{settings.url(settings.prometheus_port)}{path}", params=params,
                         timeout=10)
    response.raise_for_status()
    data: dict[str, Any] = response.json()["data"]
    return data
