"""Both DAGs for real: triggered over Airflow's REST API, run by the platform's scheduler."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from onecommit.airflow_client import AirflowClient, platform_client
from onecommit.lifecycle import registry, training
from onecommit.lifecycle.spec import parse_spec
from onecommit.lifecycle.traffic import TrafficGenerator
from onecommit.platform.components import gateway_admin_token
from onecommit.settings import Settings
from tests.integration.test_flow import MODEL, _spec

pytestmark = pytest.mark.platform
DEPLOY = "ml_train_register_and_reload"


@pytest.fixture
def airflow(platform: Settings) -> Iterator[AirflowClient]:
    client = platform_client(platform)
    client.wait_for_dag(DEPLOY)
    client.wait_for_dag("rollback_to_before_version")
    yield client
    client.close()


@pytest.fixture
def traffic(platform: Settings) -> Iterator[TrafficGenerator]:
    split = training.load_split(parse_spec(_spec(1.0)).dataset)
    generator = TrafficGenerator(platform.url(platform.gateway_port),
                                 gateway_admin_token(platform), MODEL, split.x_holdout,
                                 split.y_holdout)
    generator.start()
    yield generator
    generator.stop()


def _deploy(airflow: AirflowClient, spec: dict[str, Any], sha: str) -> tuple[str, str]:
    run_id = airflow.trigger(DEPLOY, {"git_sha": sha, "env": "dev", "spec": spec})
    return run_id, airflow.wait_for_run(DEPLOY, run_id)


def test_good_commit_is_promoted_with_five_criteria(platform: Settings, airflow: AirflowClient,
                                                    traffic: TrafficGenerator) -> None:
    client = registry.client(platform.url(platform.mlflow_port))
    before = registry.alias_version(client, MODEL, registry.CHAMPION)
    run_id, state = _deploy(airflow, _spec(0.8), "dag-good")
    assert state == "success", airflow.task_states(DEPLOY, run_id)
    champion = registry.alias_version(client, MODEL, registry.CHAMPION)
    assert champion is not None
    assert champion != before
    tags = client.get_model_version(MODEL, str(champion)).tags
    assert {k: v for k, v in tags.items() if k.startswith("criterion.")} == {
        "criterion.registered": "true", "criterion.ready": "true", "criterion.smoke": "true",
        "criterion.gateway_reload": "true", "criterion.notification_sent": "true"}
    assert airflow.task_states(DEPLOY, run_id)["trigger_rollback"] == "skipped"


def test_fault_after_deploy_aborts_canary_and_rolls_back(
        platform: Settings, airflow: AirflowClient, traffic: TrafficGenerator) -> None:
    client = registry.client(platform.url(platform.mlflow_port))
    champion = registry.alias_version(client, MODEL, registry.CHAMPION)
    spec = {**_spec(0.9), "faults": {"error_rate": 0.5, "after_requests": 5}}
    run_id, state = _deploy(airflow, spec, "dag-bad")
    assert state == "failed"
    states = airflow.task_states(DEPLOY, run_id)
    assert states["rollout"] == "failed"
    assert states["promote"] == "upstream_failed"
    assert states["trigger_rollback"] == "success"
    rollbacks = airflow.get("/dags/rollback_to_before_version/dagRuns")["dag_runs"]
    latest = max(rollbacks, key=lambda r: r["run_after"])
    assert airflow.wait_for_run("rollback_to_before_version", latest["dag_run_id"]) == "success"
    assert registry.alias_version(client, MODEL, registry.CHAMPION) == champion
    failed = max(int(v.version) for v in client.search_model_versions(f"name='{MODEL}'"))
    assert client.get_model_version(MODEL, str(failed)).tags["status"] == "rolled_back"
