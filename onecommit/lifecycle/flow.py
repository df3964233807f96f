"""The one-commit flow's steps up to the gateway reload, as the DAGs call them: small values in,
small values out. The traffic switch and its endings are in `rollout.py`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, NoReturn

from mlflow.tracking import MlflowClient

from onecommit.errors import OnecommitError
from onecommit.lifecycle import registry, serving, training
from onecommit.lifecycle.evidence import judge
from onecommit.lifecycle.export import to_onnx_bytes
from onecommit.lifecycle.gateway import Gateway
from onecommit.lifecycle.spec import ModelSpec, parse_spec
from onecommit.settings import Settings

GOLDEN_ROWS = 32


class StepFailed(OnecommitError):
    """A step's check failed; the message is the reason recorded on the model version."""


def _mlflow(settings: Settings) -> MlflowClient:
    return registry.client(settings.url(settings.mlflow_port))


def _grpc(settings: Settings) -> str:
    return f"{settings.host}:{settings.triton_grpc_port}"


def train(settings: Settings, spec_data: dict[str, Any],
          context: registry.RunContext) -> dict[str, Any]:
    """Train, evaluate against the champion on the same holdout, gate, and log the candidate.
    A re-run of the same DAG run reuses the candidate it logged the first time."""
    spec = parse_spec(spec_data)
    client = _mlflow(settings)
    earlier = registry.logged_candidate(client, spec.model, context)
    if earlier is not None:
        return {"model": spec.model, "run_id": earlier.run_id, "model_uri": earlier.model_uri}
    split, feature_source = training.training_split(settings, spec.dataset)
    pipeline = training.train(spec.algorithm, split, spec.dataset.seed)
    metrics = training.evaluate(pipeline, split)
    champion = registry.alias_version(client, spec.model, registry.CHAMPION)
    champion_metrics = (training.evaluate(registry.load_model(client, spec.model, champion),
                                          split)
                        if champion is not None else None)
    failures = training.gate(spec.quality_gate, metrics, champion_metrics)
    if failures:
        raise StepFailed(f"quality gate: {'; '.join(failures)}")
    logged = {**metrics, **{f"champion_{k}": v for k, v in (champion_metrics or {}).items()}}
    params = {"algorithm": spec.algorithm.name, **spec.algorithm.params,
              "test_size": spec.dataset.test_size, "seed": spec.dataset.seed,
              "feature_source": feature_source}
    candidate = registry.log_candidate(client, spec.model, pipeline, split.x_holdout, params,
                                       logged, context)
    return {"model": spec.model, "run_id": candidate.run_id, "model_uri": candidate.model_uri}


def register(settings: Settings, trained: dict[str, Any],
             context: registry.RunContext) -> dict[str, Any]:
    """Register the trained candidate as `challenger` (once per DAG run)."""
    candidate = registry.Candidate(run_id=trained["run_id"], model_uri=trained["model_uri"])
    version, before = registry.register(_mlflow(settings), trained["model"], candidate, context)
    return {"model": trained["model"], "version": version, "before_version": before}


def publish(settings: Settings, spec: ModelSpec, version: int) -> None:
    """Export the registered model to ONNX and load it in Triton beside the served one."""
    split = training.load_split(spec.dataset)
    model = registry.load_model(_mlflow(settings), spec.model, version)
    faults = spec.faults.model_dump() if spec.faults.error_rate > 0 else None
    serving.load_beside(_grpc(settings), settings.model_repository, spec.model, version,
                        to_onnx_bytes(model, split.x_holdout), faults=faults)


def ready(settings: Settings, model: str, version: int) -> dict[str, Any] | None:
    """The sensor's poke: READY in the registry and READY in Triton. What it saw when both
    held is the evidence of criterion `ready`; None while they do not."""
    status = _mlflow(settings).get_model_version(model, str(version)).status
    if status != "READY" or not serving.version_ready(_grpc(settings), model, version):
        return None
    return {"version": version, "registry_status": status, "triton_ready": True,
            "at": datetime.now(UTC).isoformat()}


def smoke(settings: Settings, spec: ModelSpec, version: int) -> dict[str, Any]:
    """Triton's answers on the golden rows against the registry model's; the comparison is
    the evidence of criterion `smoke`. A difference fails the step (and tags the version)."""
    golden = training.load_split(spec.dataset).x_holdout[:GOLDEN_ROWS]
    reference = registry.load_model(_mlflow(settings), spec.model, version)
    comparison = serving.smoke(_grpc(settings), spec.model, version, reference, golden)
    if comparison.problems:
        _fail(settings, spec.model, version, f"smoke test: {'; '.join(comparison.problems)}")
    return {"version": version, **comparison.as_dict()}


def _fail(settings: Settings, model: str, version: int, reason: str) -> NoReturn:
    """Tag the version with why it failed, then fail the step."""
    registry.set_status(_mlflow(settings), model, version, "failed", reason)
    raise StepFailed(reason)


def reload_challenger(settings: Settings, version: int) -> dict[str, Any]:
    """The gateway pins the challenger; what it pinned is the evidence of `gateway_reload`."""
    with Gateway(settings) as gateway:
        return gateway.reload(registry.CHALLENGER, version)


def record_criteria(settings: Settings, model: str, version: int,
                    evidence: dict[str, dict[str, Any] | None]) -> dict[str, bool]:
    """Write each criterion's evidence and its verdict on the model version."""
    criteria = judge(version, evidence)
    client = _mlflow(settings)
    for name, passed in criteria.items():
        client.set_model_version_tag(model, str(version), f"evidence.{name}",
                                     json.dumps(evidence.get(name), default=str))
        client.set_model_version_tag(model, str(version), f"criterion.{name}",
                                     str(passed).lower())
    return criteria
