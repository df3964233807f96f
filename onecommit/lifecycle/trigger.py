"""Start the deploy DAG for a model spec and follow it to the end."""

from __future__ import annotations

from pathlib import Path

import httpx

from onecommit.airflow_client import platform_client
from onecommit.lifecycle import registry
from onecommit.lifecycle.spec import load_spec
from onecommit.settings import Settings

DEPLOY_DAG = "ml_train_register_and_reload"


def deploy(settings: Settings, spec_path: Path, git_sha: str, env: str) -> tuple[str, str]:
    """Trigger a deploy of the spec and wait; returns (dag run id, final state)."""
    spec = load_spec(spec_path)
    client = platform_client(settings)
    try:
        client.wait_for_dag(DEPLOY_DAG)
        run_id = client.trigger(DEPLOY_DAG, {"git_sha": git_sha, "env": env,
                                             "spec": spec.model_dump(mode="json")})
        return run_id, client.wait_for_run(DEPLOY_DAG, run_id)
    finally:
        client.close()


def champion_version(settings: Settings, model: str) -> int | None:
    return registry.alias_version(registry.client(settings.url(settings.mlflow_port)), model,
                                  registry.CHAMPION)


def served_version(settings: Settings, model: str) -> str | None:
    """The version the gateway's routed path answers with, asked with one real inference."""
    row = [0.0] * 30
    response = httpx.post(f"{settings.url(settings.gateway_port)}/v2/models/{model}/infer",
                          json={"inputs": [{"name": "X", "shape": [1, 30], "datatype": "FP32",
                                            "data": row}]}, timeout=10)
    return response.headers.get("x-onecommit-version") if response.status_code == 200 else None
