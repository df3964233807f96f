"""The one-commit flow's steps, as the DAGs call them: small values in, small values out."""

from __future__ import annotations

import time
from typing import Any

from mlflow.tracking import MlflowClient

from onecommit.lifecycle import registry, serving, training
from onecommit.lifecycle.export import to_onnx_bytes
from onecommit.lifecycle.notify import notify
from onecommit.lifecycle.spec import ModelSpec, parse_spec
from onecommit.secrets.local_store import gateway_client
from onecommit.settings import Settings

GOLDEN_ROWS = 32


class StepFailed(RuntimeError):
    """A step's check failed; the message is the reason recorded on the model version."""


def _mlflow(settings: Settings) -> MlflowClient:
    return registry.client(settings.url(settings.mlflow_port))


def _grpc(settings: Settings) -> str:
    return f"{settings.host}:{settings.triton_grpc_port}"


def train_and_register(settings: Settings, spec_data: dict[str, Any],
                       context: registry.RunContext) -> dict[str, Any]:
    """Train, evaluate against the champion on the same holdout, gate, log, register."""
    spec = parse_spec(spec_data)
    split, feature_source = training.training_split(settings, spec.dataset)
    pipeline = training.train(spec.algorithm, split, spec.dataset.seed)
    metrics = training.evaluate(pipeline, split)
    client = _mlflow(settings)
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
    version, before = registry.register(client, spec.model, candidate, context)
    return {"model": spec.model, "version": version, "before_version": before}


def publish(settings: Settings, spec: ModelSpec, version: int) -> None:
    """Export the registered model to ONNX and load it in Triton beside the served one."""
    split = training.load_split(spec.dataset)
    model = registry.load_model(_mlflow(settings), spec.model, version)
    faults = spec.faults.model_dump() if spec.faults.error_rate > 0 else None
    serving.load_beside(_grpc(settings), settings.model_repository, spec.model, version,
                        to_onnx_bytes(model, split.x_holdout), faults=faults)


def ready(settings: Settings, model: str, version: int) -> bool:
    """READY in the registry and READY in Triton: the sensor's poke."""
    status = _mlflow(settings).get_model_version(model, str(version)).status
    return status == "READY" and serving.version_ready(_grpc(settings), model, version)


def smoke(settings: Settings, spec: ModelSpec, version: int) -> None:
    golden = training.load_split(spec.dataset).x_holdout[:GOLDEN_ROWS]
    reference = registry.load_model(_mlflow(settings), spec.model, version)
    problems = serving.smoke(_grpc(settings), spec.model, version, reference, golden)
    if problems:
        raise StepFailed(f"smoke test: {'; '.join(problems)}")


class Gateway:
    """The gateway's admin API, as the lifecycle uses it."""

    def __init__(self, settings: Settings) -> None:
        self._http = gateway_client(settings)

    def reload(self, alias: str, expected_version: int) -> None:
        response = self._http.post(f"/variant/{alias}/reload")
        if response.status_code != 200:
            raise StepFailed(f"gateway reload of {alias}: {response.json().get('error')}")
        if response.json()["version"] != expected_version:
            raise StepFailed(f"gateway pinned {alias} to version {response.json()['version']}, "
                             f"expected {expected_version}")

    def traffic(self, **policy: Any) -> None:
        self._http.put("/traffic", json=policy).raise_for_status()

    def reset_analysis(self) -> None:
        self._http.post("/analysis/reset").raise_for_status()

    def analysis(self) -> dict[str, Any]:
        report: dict[str, Any] = self._http.get("/analysis").json()
        return report


def verdict(spec: ModelSpec, challenger: dict[str, Any] | None) -> tuple[str, str]:
    """continue / wait / abort for one rollout step, from the challenger's live numbers."""
    thresholds = spec.analysis
    if challenger is None or challenger["requests"] < thresholds.min_requests:
        seen = 0 if challenger is None else challenger["requests"]
        return "wait", f"{seen} of {thresholds.min_requests} requests"
    if challenger["error_rate"] > thresholds.max_error_rate:
        return "abort", f"error rate {challenger['error_rate']:.3f} > {thresholds.max_error_rate}"
    p95 = challenger["latency_ms"]["p95"]
    if p95 is not None and p95 > thresholds.max_p95_latency_ms:
        return "abort", f"p95 latency {p95:.1f} ms > {thresholds.max_p95_latency_ms}"
    accuracy = challenger["online_accuracy"]
    if accuracy is not None and accuracy < thresholds.min_online_accuracy:
        return "abort", f"online accuracy {accuracy:.3f} < {thresholds.min_online_accuracy}"
    return "continue", "within thresholds"


def canary_step(settings: Settings, spec: ModelSpec, weight_percent: int,
                max_wait_factor: float = 4.0) -> dict[str, Any]:
    """Send `weight_percent` to the challenger, observe for the pause, and decide."""
    gateway = Gateway(settings)
    gateway.reset_analysis()
    gateway.traffic(strategy="canary", challenger_weight=weight_percent / 100)
    pause = spec.rollout.pause_s if hasattr(spec.rollout, "pause_s") else 0.0
    deadline = time.monotonic() + max(pause, 1.0) * max_wait_factor
    time.sleep(pause)
    while True:
        decision, why = verdict(spec, gateway.analysis()["variants"].get(registry.CHALLENGER))
        if decision != "wait":
            return {"weight": weight_percent, "decision": decision, "reason": why}
        if time.monotonic() > deadline:
            return {"weight": weight_percent, "decision": "abort",
                    "reason": f"not enough traffic to decide: {why}"}
        time.sleep(1)


def promote(settings: Settings, model: str, version: int) -> int | None:
    previous = registry.promote(_mlflow(settings), model, version)
    gateway = Gateway(settings)
    gateway.reload(registry.CHAMPION, version)
    gateway.traffic(strategy="canary", challenger_weight=0.0)
    return previous


def rollback(settings: Settings, model: str, before_version: int | None, failed_version: int,
             reason: str) -> None:
    """Champion back to before_version, 100% of traffic to it, the failed version tagged."""
    gateway = Gateway(settings)
    gateway.traffic(strategy="canary", challenger_weight=0.0)
    registry.restore(_mlflow(settings), model, before_version, failed_version, reason)
    if before_version is not None:
        gateway.reload(registry.CHAMPION, before_version)


def send(settings: Settings, event: str, text: str, fields: dict[str, Any]) -> bool:
    webhook = settings.notify_webhook_url
    return notify(settings.state_dir, webhook.get_secret_value() if webhook else None, event,
                  text, fields)


def record_criteria(settings: Settings, model: str, version: int,
                    criteria: dict[str, bool]) -> bool:
    """Write the five deployment criteria on the model version; True when all hold."""
    client = _mlflow(settings)
    for name, passed in criteria.items():
        client.set_model_version_tag(model, str(version), f"criterion.{name}", str(passed).lower())
    return all(criteria.values())
