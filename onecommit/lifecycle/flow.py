"""The one-commit flow's steps, as the DAGs call them: small values in, small values out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from mlflow.tracking import MlflowClient

from onecommit.lifecycle import registry, serving, training
from onecommit.lifecycle.export import to_onnx_bytes
from onecommit.lifecycle.notify import notify
from onecommit.lifecycle.spec import ABTest, BlueGreen, Canary, ModelSpec, Shadow, parse_spec
from onecommit.secrets.local_store import gateway_client
from onecommit.settings import Settings

GOLDEN_ROWS = 32


class StepFailed(RuntimeError):
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


def ready(settings: Settings, model: str, version: int) -> bool:
    """READY in the registry and READY in Triton: the sensor's poke."""
    status = _mlflow(settings).get_model_version(model, str(version)).status
    return status == "READY" and serving.version_ready(_grpc(settings), model, version)


def smoke(settings: Settings, spec: ModelSpec, version: int) -> None:
    golden = training.load_split(spec.dataset).x_holdout[:GOLDEN_ROWS]
    reference = registry.load_model(_mlflow(settings), spec.model, version)
    problems = serving.smoke(_grpc(settings), spec.model, version, reference, golden)
    if problems:
        _fail(settings, spec.model, version, f"smoke test: {'; '.join(problems)}")


def _fail(settings: Settings, model: str, version: int, reason: str) -> NoReturn:
    """Tag the version with why it failed, then fail the step."""
    registry.set_status(_mlflow(settings), model, version, "failed", reason)
    raise StepFailed(reason)


def reload_challenger(settings: Settings, version: int) -> None:
    Gateway(settings).reload(registry.CHALLENGER, version)


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

    def analysis(self, alpha: float = 0.05, sample_size: int = 0) -> dict[str, Any]:
        report: dict[str, Any] = self._http.get(
            "/analysis", params={"alpha": alpha, "sample_size": sample_size}).json()
        return report


@dataclass(frozen=True)
class Phase:
    """One step of a rollout: a traffic policy held for a while, then judged."""

    name: str
    policy: dict[str, Any]
    pause_s: float


# All traffic back on the champion, whatever the strategy was.
CHAMPION_ONLY: dict[str, Any] = {"strategy": "canary", "challenger_weight": 0.0}


def phases(spec: ModelSpec, version: int) -> list[Phase]:
    """The spec's strategy as a sequence of traffic policies."""
    rollout = spec.rollout
    if isinstance(rollout, Canary):
        return [Phase(f"canary {w}%", {"strategy": "canary", "challenger_weight": w / 100},
                      rollout.pause_s) for w in rollout.steps]
    if isinstance(rollout, BlueGreen):
        return [Phase("blue-green flip", {"strategy": "bluegreen", "active": "challenger"},
                      rollout.pause_s)]
    if isinstance(rollout, Shadow):
        return [Phase("shadow", {"strategy": "shadow"}, rollout.pause_s)]
    # A new experiment salt per version: users are reshuffled for each test.
    return [Phase("a/b 50/50", {"strategy": "ab", "challenger_weight": 0.5,
                                "sticky_key": rollout.sticky_key,
                                "experiment": f"{spec.model}-v{version}"}, 0.0)]


def verdict(spec: ModelSpec, report: dict[str, Any]) -> tuple[str, str]:
    """continue / wait / abort for one rollout step, from the gateway's live analysis."""
    if isinstance(spec.rollout, Shadow):
        return _shadow_verdict(spec.rollout, spec.analysis.min_requests, report)
    challenger = report["variants"].get(registry.CHALLENGER)
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
    if isinstance(spec.rollout, ABTest):
        return _ab_verdict(report.get("ab_test"))
    return "continue", "within thresholds"


def _shadow_verdict(rollout: Shadow, min_requests: int,
                    report: dict[str, Any]) -> tuple[str, str]:
    compared = report["shadow_comparisons"]
    if compared < min_requests:
        return "wait", f"{compared} of {min_requests} mirrored requests compared"
    agreement = report["shadow_agreement"]
    if agreement < rollout.min_agreement:
        return "abort", f"shadow agreement {agreement:.3f} < {rollout.min_agreement}"
    return "continue", f"shadow agreement {agreement:.3f} over {compared} requests"


def _ab_verdict(test: dict[str, Any] | None) -> tuple[str, str]:
    if test is None or not test["sample_size_reached"]:
        return "wait", "A/B sample size not reached"
    summary = (f"accuracy {test['p_challenger']:.3f} vs {test['p_champion']:.3f}, "
               f"p={test['p_value']:.3g}")
    if test["significant"] and test["difference"] < 0:
        return "abort", f"challenger significantly worse: {summary}"
    return "continue", summary


def observe(settings: Settings, spec: ModelSpec, phase: Phase,
            max_wait_factor: float = 4.0) -> dict[str, Any]:
    """Apply the phase's policy, hold it for its pause, and decide."""
    gateway = Gateway(settings)
    gateway.reset_analysis()
    gateway.traffic(**phase.policy)
    started = time.monotonic()
    time.sleep(phase.pause_s)
    # A/B has no pause: it waits for its sample size, within a bound.
    bound = (spec.rollout.sample_size / 5 if isinstance(spec.rollout, ABTest)
             else max(phase.pause_s, 1.0) * max_wait_factor)
    alpha = spec.rollout.significance if isinstance(spec.rollout, ABTest) else 0.05
    sample = spec.rollout.sample_size if isinstance(spec.rollout, ABTest) else 0
    while True:
        decision, why = verdict(spec, gateway.analysis(alpha, sample))
        if decision == "wait" and time.monotonic() - started > bound:
            decision, why = "abort", f"not enough traffic to decide: {why}"
        if decision != "wait":
            return {"step": phase.name, "decision": decision, "reason": why,
                    "seconds": round(time.monotonic() - started, 2)}
        time.sleep(1)


def rollout(settings: Settings, spec: ModelSpec, version: int,
            on_step: Callable[[dict[str, Any]], object]) -> list[dict[str, Any]]:
    """Run the spec's strategy step by step. On abort all traffic goes back to the champion at
    once (before anything else), then StepFailed is raised for the rollback to finish the job.
    The decisions are recorded on the model version either way."""
    decisions: list[dict[str, Any]] = []
    try:
        for phase in phases(spec, version):
            decision = observe(settings, spec, phase)
            if decision["decision"] == "abort":
                aborted = time.monotonic()
                Gateway(settings).traffic(**CHAMPION_ONLY)
                decision["abort_to_champion_s"] = round(time.monotonic() - aborted, 3)
            decisions.append(decision)
            on_step(decision)
            if decision["decision"] == "abort":
                _fail(settings, spec.model, version,
                      f"rollout aborted at {phase.name}: {decision['reason']}")
    finally:
        _mlflow(settings).set_model_version_tag(spec.model, str(version), "rollout.decisions",
                                                json.dumps(decisions))
    return decisions


def _retain_served(settings: Settings, model: str) -> list[int]:
    """Unload every version no alias points at any more (traffic has left them)."""
    client = _mlflow(settings)
    keep = {v for alias in (registry.CHAMPION, registry.PREVIOUS, registry.CHALLENGER)
            if (v := registry.alias_version(client, model, alias)) is not None}
    return serving.retain(_grpc(settings), settings.model_repository, model, keep)


def promote(settings: Settings, model: str, version: int) -> int | None:
    """champion → version (previous kept warm for an instant flip-back), 100% of traffic to it,
    then versions older than previous unloaded."""
    previous = registry.promote(_mlflow(settings), model, version)
    gateway = Gateway(settings)
    gateway.reload(registry.CHAMPION, version)
    gateway.traffic(**CHAMPION_ONLY)
    _retain_served(settings, model)
    return previous


def rollback(settings: Settings, model: str, before_version: int | None, failed_version: int,
             reason: str) -> None:
    """Champion back to before_version, 100% of traffic to it, the failed version tagged and
    unloaded once no traffic reaches it."""
    gateway = Gateway(settings)
    gateway.traffic(**CHAMPION_ONLY)
    registry.restore(_mlflow(settings), model, before_version, failed_version, reason)
    if before_version is not None:
        gateway.reload(registry.CHAMPION, before_version)
    _retain_served(settings, model)


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
