"""Traffic switching by strategy, judged step by step, and its two endings: promote, or roll
back to the version that served before. The strategy logic lives here and only here.

A rollout is data (Argo Rollouts' way): a list of phases, each a traffic policy held for a
while and judged by the spec's analysis → continue, wait, pause or abort. Failures the gateway
attributes to infrastructure (the inference server unreachable, a version not loaded,
timeouts), and a gateway that does not answer, pause the analysis instead of counting against
the challenger; a rollout that cannot get a fair sample within `analysis.max_infra_pause_s`
aborts with that reason.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from onecommit.clients.gateway import Gateway, GatewayUnavailable
from onecommit.errors import OnecommitError
from onecommit.lifecycle import registry, triton
from onecommit.lifecycle.dags import DEPLOY_DAG
from onecommit.lifecycle.spec import ABTest, BlueGreen, Canary, ModelSpec, Shadow
from onecommit.secrets import local_store
from onecommit.settings import Settings
from onecommit.vocabulary import CHALLENGER, CHAMPION, PREVIOUS


class RolloutAborted(OnecommitError):
    """The rollout stopped; the message is the reason recorded on the version."""


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


def mandated_seconds(spec: ModelSpec) -> float:
    """The time the spec's strategy holds traffic by design: its phases' pauses. An A/B test
    has none; it waits for its sample, which is traffic, not a mandate."""
    return sum(phase.pause_s for phase in phases(spec, version=0))


def infra_failures(report: dict[str, Any]) -> int:
    return sum(int(v.get("infra_errors", 0)) for v in report.get("variants", {}).values())


def verdict(spec: ModelSpec, report: dict[str, Any]) -> tuple[str, str]:
    """continue / wait / pause / abort for one rollout step, from the gateway's analysis."""
    infra = infra_failures(report)
    if infra:
        return "pause", f"{infra} requests failed on infrastructure, not on the model"
    if isinstance(spec.rollout, Shadow):
        return _shadow_verdict(spec.rollout, spec.analysis.min_requests, report)
    challenger = report["variants"].get(CHALLENGER)
    thresholds = spec.analysis
    if challenger is None or challenger["requests"] < thresholds.min_requests:
        seen = 0 if challenger is None else challenger["requests"]
        return "wait", f"{seen} of {thresholds.min_requests} requests"
    if challenger["error_rate"] > thresholds.max_error_rate:
        return "abort", f"error rate {challenger['error_rate']:.3f} > {thresholds.max_error_rate}"
    p95 = challenger["latency_ms"]["p95"]
    if p95 is not None and p95 > thresholds.max_p95_latency_ms:
        return "abort", f"p95 latency {p95:.1f} ms > {thresholds.max_p95_latency_ms}"
    accuracy, least = challenger["online_accuracy"], thresholds.min_online_accuracy
    if accuracy is not None and least is not None and accuracy < least:
        return "abort", f"online accuracy {accuracy:.3f} < {least}"
    mae, most = challenger.get("online_mae"), thresholds.max_online_mae
    if mae is not None and most is not None and mae > most:
        return "abort", f"online MAE {mae:.3f} > {most}"
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


def _judged(gateway: Gateway, spec: ModelSpec) -> tuple[str, str]:
    alpha = spec.rollout.significance if isinstance(spec.rollout, ABTest) else 0.05
    sample = spec.rollout.sample_size if isinstance(spec.rollout, ABTest) else 0
    try:
        return verdict(spec, gateway.analysis(alpha, sample))
    except GatewayUnavailable as error:
        return "pause", str(error)


def observe(gateway: Gateway, spec: ModelSpec, phase: Phase,
            max_wait_factor: float = 4.0) -> dict[str, Any]:
    """Apply the phase's policy, hold it for its pause, and decide. A paused window is thrown
    away and the phase held again for a fair sample; the time spent paused does not count
    against the wait for traffic, but is bounded by `analysis.max_infra_pause_s`."""
    gateway.traffic(**phase.policy)
    gateway.reset_analysis()
    started = window = time.monotonic()
    paused_s, pauses, last_pause = 0.0, 0, ""
    # A/B has no pause: it waits for its sample size, within a bound.
    bound = (spec.rollout.sample_size / 5 if isinstance(spec.rollout, ABTest)
             else max(phase.pause_s, 1.0) * max_wait_factor)
    time.sleep(phase.pause_s)
    while True:
        decision, why = _judged(gateway, spec)
        now = time.monotonic()
        if decision == "pause":
            paused_s += now - window
            pauses, last_pause = pauses + 1, why
            if paused_s > spec.analysis.max_infra_pause_s:
                decision, why = "abort", (
                    f"no fair sample: analysis paused {paused_s:.0f} s on infrastructure "
                    f"faults (limit {spec.analysis.max_infra_pause_s:.0f} s); last: {why}")
            else:
                _reset_when_answering(gateway)
                window = time.monotonic()
                time.sleep(max(phase.pause_s, 1.0))
                continue
        elif decision == "wait" and now - started - paused_s > bound:
            decision, why = "abort", f"not enough traffic to decide: {why}"
        if decision != "wait":
            step = {"step": phase.name, "decision": decision, "reason": why,
                    "seconds": round(now - started, 2)}
            if pauses:
                step |= {"paused_s": round(paused_s, 2), "pauses": pauses,
                         "pause_reason": last_pause}
            return step
        time.sleep(1)


def _reset_when_answering(gateway: Gateway) -> None:
    # Still down: the next window finds out, and counts as paused too.
    with contextlib.suppress(GatewayUnavailable):
        gateway.reset_analysis()


def _links(settings: Settings, client: MlflowClient, model: str,
           version: int) -> dict[str, str]:
    """Where a person looks next: the version in MLflow, the deploy run in Airflow."""
    links = {"mlflow_version": f"{settings.url(settings.mlflow_port)}/#/models/{model}"
                               f"/versions/{version}"}
    try:
        run_id = client.get_model_version(model, str(version)).tags.get("dag_run_id")
    except MlflowException as error:
        # A link is not worth failing a rollout for.
        logger.warning("no Airflow link for version {}: {}", version, error)
        run_id = None
    if run_id:
        links["airflow_run"] = (f"{settings.url(settings.airflow_port)}/dags/{DEPLOY_DAG}"
                                f"/runs/{run_id}")
    return links


def _note(gateway: Gateway, kind: str, version: int, detail: dict[str, Any]) -> None:
    # The record is for people watching; a gateway down past its retries does not judge the
    # model (the decisions are on the version at the end either way).
    try:
        gateway.note(kind, version, detail)
    except GatewayUnavailable as error:
        logger.warning("rollout {} of version {} not recorded on the gateway: {}", kind,
                       version, error)


def run(settings: Settings, spec: ModelSpec, version: int,
        on_step: Callable[[dict[str, Any]], object]) -> list[dict[str, Any]]:
    """Run the spec's strategy step by step. On abort all traffic goes back to the champion at
    once (before anything else), the version is tagged with the reason, and RolloutAborted is
    raised for the rollback to finish the job. The decisions are recorded on the model version
    either way."""
    decisions: list[dict[str, Any]] = []
    client = registry.client(settings.url(settings.mlflow_port))
    try:
        with Gateway(settings, spec.model) as gateway:
            plan = phases(spec, version)
            _note(gateway, "start", version, {
                "strategy": spec.rollout.kind, "steps": [phase.name for phase in plan],
                "thresholds": spec.analysis.model_dump(),
                "links": _links(settings, client, spec.model, version)})
            for phase in plan:
                decision = observe(gateway, spec, phase)
                if decision["decision"] == "abort":
                    aborted = time.monotonic()
                    gateway.traffic(**CHAMPION_ONLY)
                    decision["abort_to_champion_s"] = round(time.monotonic() - aborted, 3)
                decisions.append(decision)
                _note(gateway, "decision", version, decision)
                on_step(decision)
                if decision["decision"] == "abort":
                    reason = f"rollout aborted at {phase.name}: {decision['reason']}"
                    registry.set_status(client, spec.model, version, "failed", reason)
                    raise RolloutAborted(reason)
    finally:
        client.set_model_version_tag(spec.model, str(version), "rollout.decisions",
                                     json.dumps(decisions))
    return decisions


def retire(settings: Settings, model: str) -> list[int]:
    """Unload every version no alias points at any more (traffic has left them); returns
    them. After a promotion it is a step of its own, like Argo Rollouts' scale-down of the
    old ReplicaSet: the promotion is complete without it, and Triton reloads the model to
    drop a version (2 s here)."""
    client = registry.client(settings.url(settings.mlflow_port))
    keep = {v for alias in (CHAMPION, PREVIOUS, CHALLENGER)
            if (v := registry.alias_version(client, model, alias)) is not None}
    return triton.retain(f"{settings.host}:{settings.triton_grpc_port}",
                          settings.model_repository, model, keep,
                          local_store.triton_control_key(settings))


def promote(settings: Settings, model: str, version: int) -> dict[str, Any]:
    """champion → version, previous → the old champion (pinned, kept warm for an instant
    flip back), challenger unpinned, 100% of traffic to the champion. Returns the gateway's
    champion pin (evidence). Versions no alias names any more are unloaded by `retire`."""
    previous = registry.promote(registry.client(settings.url(settings.mlflow_port)), model,
                                version)
    with Gateway(settings, model) as gateway:
        pinned = gateway.reload(CHAMPION, version)
        if previous is not None:
            gateway.reload(PREVIOUS, previous)
        gateway.traffic(**CHAMPION_ONLY)
        gateway.unpin(CHALLENGER)
    return pinned


def rollback(settings: Settings, model: str, before_version: int | None, failed_version: int,
             reason: str) -> str:
    """100% of traffic to the champion, champion back to before_version, the challenger
    unpinned, the failed version tagged and unloaded once no traffic reaches it. Returns the
    reason recorded on the failed version."""
    client = registry.client(settings.url(settings.mlflow_port))
    with Gateway(settings, model) as gateway:
        gateway.traffic(**CHAMPION_ONLY)
        recorded = registry.restore(client, model, before_version, failed_version, reason)
        if before_version is not None:
            gateway.reload(CHAMPION, before_version)
        gateway.unpin(CHALLENGER)
    retire(settings, model)
    return recorded
