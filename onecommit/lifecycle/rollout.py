"""Traffic switching by strategy, judged step by step, and its two endings: promote, or roll
back to the version that served before. Each strategy's phases, route, weights and
description are its class's in `onecommit.strategies`; the judgement is `onecommit.analysis`'s.

A rollout is data (Argo Rollouts' way): a list of phases, each a traffic policy held for a
while, and the spec's analysis as metrics (`ModelSpec.judged_by`). Every second a step looks:
the gateway's observations since the rollout began, analysed by the anytime-valid sequential
tests of `onecommit.analysis`, judged by its one `verdict` → continue, advance (the rest of
the pause skipped: the evidence is in), wait, pause, abort or inconclusive (roll back, or
hold). Failures the gateway attributes to infrastructure (the inference server unreachable,
a version not loaded, timeouts), and a gateway that does not answer, pause the step instead
of counting against the challenger; a rollout that cannot get a fair sample within
`limits.max_infra_pause_s` aborts with that reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loguru import logger
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from onecommit.analysis.report import AnalysisReport, analyse
from onecommit.analysis.spec import AnalysisSpec
from onecommit.analysis.verdict import Decision, Elapsed, verdict
from onecommit.clients.gateway import Gateway, GatewayUnavailable
from onecommit.errors import OnecommitError
from onecommit.lifecycle import registry, triton
from onecommit.lifecycle.dags import DEPLOY_DAG
from onecommit.lifecycle.spec import ModelSpec
from onecommit.secrets import local_store
from onecommit.settings import Settings
from onecommit.strategies import STRATEGIES, Phase
from onecommit.vocabulary import CHALLENGER, CHAMPION, PREVIOUS


class RolloutAborted(OnecommitError):
    """The rollout stopped; the message is the reason recorded on the version."""


class RolloutHeld(RolloutAborted):
    """The rollout ended inconclusive and its spec says hold: traffic stays where the last
    step put it, the version is tagged `held`, and a person decides (the rollback DAG leaves
    it be)."""


# All traffic back on the champion, whatever the strategy was.
CHAMPION_ONLY: dict[str, Any] = {"strategy": "canary", "challenger_weight": 0.0}


def phases(spec: ModelSpec, version: int) -> list[Phase]:
    """The spec's strategy as a sequence of traffic policies (`onecommit.strategies`)."""
    return STRATEGIES[spec.rollout.kind].phases(spec.rollout.model_dump(), spec.model, version)


def mandated_seconds(spec: ModelSpec) -> float:
    """The time the spec's strategy holds traffic by design: its phases' pauses. An A/B test
    has none; it waits for its sample, which is traffic, not a mandate."""
    return sum(phase.pause_s for phase in phases(spec, version=0))


# How often a step looks at the analysis.
LOOK_EVERY_S = 1.0
# Looks are noted for the page every NOTE_EVERY_S, and further apart as the rollout ages (a
# 1/NOTES_PER_AGE of its age): a rollout of the longest limits (4 h) notes about 450 looks, so
# the page's read of the history (`gateway.ui.HISTORY_LIMIT`) still reaches its start.
NOTE_EVERY_S = 5.0
NOTES_PER_AGE = 100


def note_spacing(rollout_s: float) -> float:
    """Seconds between two noted looks, `rollout_s` into the rollout."""
    return max(NOTE_EVERY_S, rollout_s / NOTES_PER_AGE)

# What a metric's interval is recorded as, on the page's notes and the version's tags.
_INTERVAL_FIELDS = ("metric", "gate", "statistic", "estimate", "lower", "upper", "threshold",
                    "outcome", "samples", "text")


@dataclass
class Clock:
    """The rollout's time, less what it spent paused on infrastructure faults."""

    started: float = field(default_factory=time.monotonic)
    paused_s: float = 0.0

    def rollout_s(self, now: float) -> float:
        return now - self.started - self.paused_s


@dataclass
class Step:
    """One phase being judged: its clock, its pauses, and the rollout's latest look."""

    phase: Phase
    index: int
    previous: AnalysisReport | None
    started: float = field(default_factory=time.monotonic)
    paused_s: float = 0.0
    pauses: int = 0
    pause_reason: str = ""
    last_look: float = field(default_factory=time.monotonic)

    def elapsed(self, clock: Clock, now: float) -> Elapsed:
        return Elapsed(step_s=max(now - self.started - self.paused_s, 0.0),
                       step_pause_s=self.phase.pause_s,
                       rollout_s=max(clock.rollout_s(now), 0.0))

    def paused(self, clock: Clock, now: float, reason: str) -> None:
        lost = now - self.last_look
        self.paused_s, clock.paused_s = self.paused_s + lost, clock.paused_s + lost
        self.pauses, self.pause_reason = self.pauses + 1, reason


def intervals(report: AnalysisReport | None) -> list[dict[str, Any]]:
    """Each metric's interval at a look, as the notes and the version's tags record it."""
    if report is None:
        return []
    return [r.model_dump(include=set(_INTERVAL_FIELDS)) for r in report.metrics]


def look(gateway: Gateway, spec: AnalysisSpec, step: Step, clock: Clock) -> Decision:
    """One look: the gateway's observations analysed (each interval narrowed by the previous
    look's) and judged by the one verdict. A gateway that does not answer pauses the step."""
    now = time.monotonic()
    try:
        report = analyse(spec, gateway.observations(), step.previous)
    except GatewayUnavailable as error:
        decision = Decision(action="pause", reason=str(error))
    else:
        decision = verdict(spec, report, step.elapsed(clock, now), step.previous)
        step.previous = report
    if decision.action == "pause":
        step.paused(clock, now, decision.reason)
        if step.paused_s > spec.limits.max_infra_pause_s:
            decision = Decision(action="abort", reason=(
                f"no fair sample: analysis paused {step.paused_s:.0f} s on infrastructure "
                f"faults (limit {spec.limits.max_infra_pause_s:.0f} s); last: "
                f"{decision.reason}"))
    step.last_look = now
    return decision


def _record(step: Step, decision: Decision) -> dict[str, Any]:
    """A look or a step's end as the page's notes and the version's tags record it."""
    record: dict[str, Any] = {
        "step": step.phase.name, "step_index": step.index, "decision": decision.action,
        "reason": decision.reason, "seconds": round(time.monotonic() - step.started, 2),
        "metrics": intervals(step.previous)}
    if decision.then is not None:
        record["then"] = decision.then
    if step.pauses:
        record |= {"paused_s": round(step.paused_s, 2), "pauses": step.pauses,
                   "pause_reason": step.pause_reason}
    return record


def observe(gateway: Gateway, spec: AnalysisSpec, step: Step, clock: Clock,
            version: int) -> dict[str, Any]:
    """Apply the phase's policy and look every LOOK_EVERY_S until the verdict ends the step
    (continue, advance, abort, inconclusive); the looks in between are noted for the page
    (`note_spacing`). Returns the step's record."""
    gateway.traffic(**step.phase.policy)
    noted = time.monotonic()
    while True:
        time.sleep(LOOK_EVERY_S)
        decision = look(gateway, spec, step, clock)
        if decision.action not in ("wait", "pause"):
            return _record(step, decision)
        now = time.monotonic()
        if now - noted >= note_spacing(clock.rollout_s(now)):
            noted = now
            _note(gateway, "look", version, {**_record(step, decision),
                                             "action": decision.action})


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
    """Run the spec's strategy step by step, judged by its analysis. The analysis window opens
    once, at the first step: the sequential tests accumulate over every step (a stratum per
    traffic split). On abort, or an inconclusive end that rolls back, all traffic goes back
    to the champion at once (before anything else), the version is tagged with the reason,
    and RolloutAborted is raised for the rollback to finish the job; an inconclusive end that
    holds leaves traffic where it is and raises RolloutHeld. The decisions and the last
    look's intervals are recorded on the model version either way."""
    decisions: list[dict[str, Any]] = []
    judged_by = spec.judged_by()
    client = registry.client(settings.url(settings.mlflow_port))
    clock, previous = Clock(), None
    try:
        with Gateway(settings, spec.model) as gateway:
            plan = phases(spec, version)
            _note(gateway, "start", version, {
                "strategy": spec.rollout.kind, "steps": [phase.name for phase in plan],
                "analysis": judged_by.model_dump(),
                "links": _links(settings, client, spec.model, version)})
            gateway.traffic(**plan[0].policy)
            gateway.reset_analysis()
            for index, phase in enumerate(plan):
                step = Step(phase, index, previous)
                decision = observe(gateway, judged_by, step, clock, version)
                previous = step.previous
                ended = _ended(gateway, decision)
                decisions.append(decision)
                _note(gateway, "decision", version, decision)
                on_step(decision)
                if ended is not None:
                    status = "held" if isinstance(ended, RolloutHeld) else "failed"
                    registry.set_status(client, spec.model, version, status, str(ended))
                    raise ended
    finally:
        client.set_model_version_tag(spec.model, str(version), "rollout.decisions",
                                     json.dumps(decisions))
        client.set_model_version_tag(spec.model, str(version), "rollout.intervals",
                                     json.dumps(intervals(previous)))
    return decisions


def _ended(gateway: Gateway, decision: dict[str, Any]) -> RolloutAborted | None:
    """The end a step's decision makes of the rollout, if any; an abort's traffic is back on
    the champion before this returns."""
    action, then = decision["decision"], decision.get("then")
    why = f"at {decision['step']}: {decision['reason']}"
    if action == "inconclusive" and then == "hold":
        return RolloutHeld(f"rollout held {why}")
    if action not in ("abort", "inconclusive"):
        return None
    aborted = time.monotonic()
    gateway.traffic(**CHAMPION_ONLY)
    decision["abort_to_champion_s"] = round(time.monotonic() - aborted, 3)
    return RolloutAborted(f"rollout {'aborted' if action == 'abort' else 'inconclusive'} {why}")


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


def held(settings: Settings, model: str, version: int) -> str | None:
    """Why the version's rollout is held (it ended inconclusive, and its spec says hold), or
    None: a held version stays where it serves until a person or the next commit decides."""
    tags = registry.client(settings.url(settings.mlflow_port)).get_model_version(
        model, str(version)).tags
    return tags.get("reason") if tags.get("status") == "held" else None


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
