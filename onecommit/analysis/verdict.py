"""The one verdict: a rollout step's decision from the analysis report, the spec and the
clock. It replaces the judgements of the rollout, `invoke watch` and the page.

The rule (`step_actions`, vectorised so the bench runs the same code over ten thousand
simulated rollouts):
1. pause: a request of the current step failed on infrastructure (not the model's fault)
   since the previous look;
2. wait: fewer than `limits.min_requests` challenger requests in the step (inconclusive once
   the rollout's limits are spent, as today's "not enough traffic to decide");
3. abort: a metric is shown beyond its bound or margin;
4. continue: every gate is shown within, and the step has held for its pause (and its
   labelled sample, if it has one);
5. advance: every metric, gates and guards, is shown within before the step's pause is over,
   and the step has lasted its minimum dwell: the rest of the pause is skipped;
6. inconclusive: a gate is still undecided when the rollout's limits are spent; it rolls
   back, or holds if every undecided gate says hold;
7. wait otherwise.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from onecommit.analysis.report import AnalysisReport, MetricResult
from onecommit.analysis.sequential import FAIL, PASS
from onecommit.analysis.spec import AnalysisSpec

Action = Literal["continue", "advance", "wait", "pause", "abort", "inconclusive"]
ACTIONS: tuple[Action, ...] = ("continue", "advance", "wait", "pause", "abort", "inconclusive")
CONTINUE, ADVANCE, WAIT, PAUSE, ABORT, INCONCLUSIVE = range(len(ACTIONS))
Seconds = Annotated[float, Field(ge=0)]
Flags = NDArray[np.bool_]


class Elapsed(BaseModel):
    """The rollout's clock at a look."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    step_s: Seconds
    # The step's pause: how long it holds traffic by design.
    step_pause_s: Seconds
    rollout_s: Seconds


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Action
    # Names the statistic it rests on, e.g. "challenger accuracy from feedback 2.1 points lower
    # than the champion's, 95 % anytime-valid bounds [-3.4, -0.8] points, margin 1.0 points".
    reason: str
    # For an inconclusive end: what it does.
    then: Literal["rollback", "hold"] | None = None


def step_actions(outcomes: NDArray[np.int8], gates: Flags, infra: Flags,
                 enough_requests: Flags, held: Flags, dwelled: Flags,
                 exhausted: Flags) -> NDArray[np.int_]:
    """The rule of the module's docstring over R looks at once: `outcomes` is metrics x R
    (PASS, FAIL or UNDECIDED), `gates` which metrics are gates, the rest R flags each."""
    failed = np.any(outcomes == FAIL, axis=0)
    gates_pass = np.all(outcomes[gates] == PASS, axis=0)
    all_pass = np.all(outcomes == PASS, axis=0)
    action = np.full(infra.shape, WAIT)
    action = np.where(exhausted & ~gates_pass, INCONCLUSIVE, action)
    action = np.where(all_pass & dwelled & ~held, ADVANCE, action)
    action = np.where(gates_pass & held, CONTINUE, action)
    action = np.where(failed, ABORT, action)
    action = np.where(enough_requests, action, np.where(exhausted, INCONCLUSIVE, WAIT))
    return np.asarray(np.where(infra, PAUSE, action))


def _infra_failures(report: AnalysisReport) -> int:
    current = report.observed.current
    return current.champion.infra_errors + current.challenger.infra_errors


def new_infra_failures(report: AnalysisReport, previous: AnalysisReport | None) -> int:
    """Infrastructure failures of the current step since the previous look (all of the step's
    at its first look): a fault that has passed no longer pauses the step, and the requests
    it failed are not counted against either variant."""
    if previous is None or len(previous.observed.strata) != len(report.observed.strata):
        return _infra_failures(report)
    return max(_infra_failures(report) - _infra_failures(previous), 0)


def verdict(spec: AnalysisSpec, report: AnalysisReport, elapsed: Elapsed,
            previous: AnalysisReport | None = None) -> Decision:
    """A step's decision, with a reason that names the statistics it rests on. `previous` is
    the rollout's previous look, if any: only infrastructure failures since then pause."""
    limits, observed = spec.limits, report.observed
    current = observed.current
    infra = new_infra_failures(report, previous)
    seen = current.challenger.requests + observed.shadow.compared
    per_arm = min(current.champion.labelled, current.challenger.labelled)
    held = elapsed.step_s >= elapsed.step_pause_s and (
        limits.step_labelled is None or per_arm >= limits.step_labelled)
    labelled = observed.labelled()
    exhausted = elapsed.rollout_s >= limits.max_seconds or (
        limits.max_labelled is not None and labelled >= limits.max_labelled)
    outcomes = np.array([[{"pass": PASS, "fail": FAIL}.get(m.outcome, 0)]
                         for m in report.metrics], dtype=np.int8).reshape(-1, 1)
    gates = np.array([m.gate for m in report.metrics], dtype=bool)
    action = ACTIONS[int(step_actions(
        outcomes, gates, np.array([infra > 0]), np.array([seen >= limits.min_requests]),
        np.array([held]), np.array([elapsed.step_s >= limits.min_dwell_s]),
        np.array([exhausted]))[0])]
    return _explained(action, spec, report, infra, seen, elapsed, labelled)


def _texts(results: list[MetricResult]) -> str:
    return "; ".join(r.text for r in results)


def _explained(action: Action, spec: AnalysisSpec, report: AnalysisReport, infra: int,
               seen: int, elapsed: Elapsed, labelled: int) -> Decision:
    metrics = report.metrics
    if action == "pause":
        return Decision(action=action,
                        reason=f"{infra} requests failed on infrastructure, not on the model")
    undecided = [r for r in metrics if r.gate and r.outcome != "pass"]
    if seen < spec.limits.min_requests:
        reason = f"{seen} of {spec.limits.min_requests} challenger requests"
        if action == "wait":
            return Decision(action=action, reason=reason)
        return Decision(action=action, then="rollback",
                        reason=f"not enough traffic to decide within the rollout's limits: "
                               f"{reason}")
    if action == "abort":
        return Decision(action=action,
                        reason=f"{_texts([r for r in metrics if r.outcome == 'fail'])}: abort")
    if action in ("continue", "advance"):
        shown = [r for r in metrics if r.outcome == "pass"] or metrics
        early = (f"decided after {elapsed.step_s:.0f} of {elapsed.step_pause_s:.0f} s: "
                 if action == "advance" else "")
        return Decision(action=action, reason=f"{early}{_texts(shown)}")
    if action == "inconclusive":
        holds = {m.name for m in spec.metrics if m.inconclusive == "hold"}
        then: Literal["rollback", "hold"] = (
            "hold" if undecided and all(r.metric in holds for r in undecided) else "rollback")
        return Decision(action=action, then=then,
                        reason=(f"limits reached ({elapsed.rollout_s:.0f} s, {labelled} labelled "
                                f"requests) with {_texts(undecided)}: {then}"))
    waiting = undecided or [r for r in metrics if r.outcome != "pass"]
    reason = (f"undecided: {_texts(waiting)}" if waiting else
              f"holding the step's pause ({elapsed.step_s:.0f} of {elapsed.step_pause_s:.0f} s)")
    return Decision(action=action, reason=reason)
