"""A spec's `analysis` as data, in the manner of Argo Rollouts' AnalysisTemplate: the metrics
a rollout judges, each with what it measures, how it is judged and at which alpha, what an
inconclusive end does; and the rollout's limits. `from_thresholds` maps today's threshold keys
onto it with the same meaning.

Each metric is a gate or a guard:
- a **gate** must be shown within its bound or margin before the rollout advances (a
  comparison with the champion: non-inferiority must be established, or a worse model could
  pass for want of evidence);
- a **guard** stops the rollout only once it is shown beyond its bound; otherwise it does not
  hold a step back (today's thresholds, which exist to catch a broken version).
Both end the rollout when shown beyond, with confidence 1 - alpha at every look.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Measure = Literal["online_accuracy", "online_mae", "error_rate", "latency",
                  "shadow_correctness", "shadow_agreement", "input_drift",
                  "estimated_accuracy"]

# Which way is worse for each measure.
HIGHER_IS_BETTER: dict[str, bool] = {
    "online_accuracy": True, "online_mae": False, "error_rate": False, "latency": False,
    "shadow_correctness": True, "shadow_agreement": True, "input_drift": False,
    "estimated_accuracy": True}
# What each measure is judged on, in a message.
UNITS: dict[str, str] = {
    "online_accuracy": "accuracy from feedback", "online_mae": "mean absolute error",
    "error_rate": "error rate", "latency": "latency",
    "shadow_correctness": "accuracy on mirrored requests",
    "shadow_agreement": "agreement with the champion", "input_drift": "input drift (PSI)",
    "estimated_accuracy": "estimated accuracy (CBPE)"}
# Proportions: a bound is a fraction, a margin is in points of it (0.01: one point).
PROPORTIONS = frozenset({"online_accuracy", "error_rate", "shadow_agreement",
                         "estimated_accuracy", "shadow_correctness"})
# Shadow correctness is paired by nature; agreement and drift have no champion to beat.
COMPARED = frozenset({"online_accuracy", "online_mae", "error_rate", "latency",
                      "shadow_correctness", "estimated_accuracy"})
BOUNDED = frozenset(HIGHER_IS_BETTER) - {"shadow_correctness"}

Alpha = Annotated[float, Field(gt=0, lt=0.5)]


class _Strict(BaseModel):
    # A typo in a key must fail validation, not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metric(_Strict):
    """One thing a rollout judges."""

    measure: Measure
    judged: Literal["bound", "vs_champion"]
    # `bound`: a floor for accuracy, agreement and estimated accuracy; a ceiling for the error
    # rate, the MAE, latency (milliseconds at `quantile`) and input drift (the largest PSI).
    bound: float | None = None
    # `vs_champion`: how much worse than the champion the challenger may be: points of a
    # proportion as a fraction (0.01 = one point), the MAE's own units, or a relative slow-down
    # for latency (0.1 = 10 % slower).
    margin: Annotated[float, Field(ge=0)] | None = None
    quantile: Annotated[float, Field(gt=0, lt=1)] = 0.95
    alpha: Alpha = 0.05
    # A gate must be shown within its bound or margin before the rollout advances; a guard
    # only stops it once shown beyond. Unset: comparisons are gates, bounds are guards.
    gate: bool | None = None
    # What the end of the rollout's limits does while this gate is undecided.
    inconclusive: Literal["rollback", "hold"] = "rollback"

    @model_validator(mode="after")
    def _judgeable(self) -> Metric:
        if self.judged == "bound":
            if self.measure not in BOUNDED:
                raise ValueError(f"{self.measure} is judged against the champion only: use "
                                 "judged: vs_champion with a margin")
            if self.bound is None or self.margin is not None:
                raise ValueError(f"{self.measure}: judged: bound takes `bound` (and no margin)")
            if self.measure in PROPORTIONS and not 0 <= self.bound <= 1:
                raise ValueError(f"{self.measure}: bound {self.bound} is not a fraction "
                                 "between 0 and 1")
            if self.measure not in PROPORTIONS and self.bound <= 0:
                raise ValueError(f"{self.measure}: bound must be positive")
        else:
            if self.measure not in COMPARED:
                raise ValueError(f"{self.measure} has no champion to compare with: use "
                                 "judged: bound")
            if self.margin is None or self.bound is not None:
                raise ValueError(f"{self.measure}: judged: vs_champion takes `margin` (and no "
                                 "bound)")
        return self

    @property
    def name(self) -> str:
        return f"{self.measure} {'vs champion' if self.judged == 'vs_champion' else 'bound'}"

    @property
    def is_gate(self) -> bool:
        return self.judged == "vs_champion" if self.gate is None else self.gate

    @property
    def higher_is_better(self) -> bool:
        return HIGHER_IS_BETTER[self.measure]


class Limits(_Strict):
    """How long a rollout waits for evidence, and how soon it may move on."""

    # A step lasts at least this long, even when every metric is decided sooner.
    min_dwell_s: Annotated[float, Field(ge=0)] = 0
    # Challenger requests a step needs before anything is decided.
    min_requests: Annotated[int, Field(ge=1)] = 50
    # Labelled requests per variant a step holds for, as its pause holds it in seconds (an A/B
    # test's sample size).
    step_labelled: Annotated[int, Field(ge=1)] | None = None
    # The rollout ends inconclusive when its gates are still undecided after this long, or
    # after this many labelled requests.
    max_seconds: Annotated[float, Field(gt=0)] = 3600
    max_labelled: Annotated[int, Field(ge=1)] | None = None
    # How long a step may stay paused on infrastructure faults before the rollout aborts for
    # want of a fair sample.
    max_infra_pause_s: Annotated[float, Field(ge=0)] = 120


class AnalysisSpec(_Strict):
    metrics: Annotated[list[Metric], Field(min_length=1)]
    limits: Limits = Limits()

    @model_validator(mode="after")
    def _distinct(self) -> AnalysisSpec:
        names = [metric.name for metric in self.metrics]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"metrics: {', '.join(twice)} given twice; keep one of each")
        return self


# Today a step that has not seen `min_requests` within this many times its pause aborts for
# want of traffic.
TRAFFIC_WAIT_FACTOR = 4.0
# Today an A/B test waits for its sample size at most sample_size / this many seconds.
AB_SAMPLES_PER_S = 5.0


def from_thresholds(analysis: Mapping[str, Any], rollout: Mapping[str, Any]) -> AnalysisSpec:
    """Today's keys (a spec's `analysis` and `rollout` as mappings) in this form, with the
    same meaning: each threshold a guard, the A/B test's significance a comparison that stops
    a challenger shown worse at that alpha, shadow's `min_agreement` a guard on agreement."""
    metrics = [Metric(measure="error_rate", judged="bound", bound=analysis["max_error_rate"]),
               Metric(measure="latency", judged="bound", bound=analysis["max_p95_latency_ms"],
                      quantile=0.95)]
    if analysis.get("min_online_accuracy") is not None:
        metrics.append(Metric(measure="online_accuracy", judged="bound",
                              bound=analysis["min_online_accuracy"]))
    if analysis.get("max_online_mae") is not None:
        metrics.append(Metric(measure="online_mae", judged="bound",
                              bound=analysis["max_online_mae"]))
    kind = rollout["kind"]
    limits: dict[str, Any] = {"min_requests": analysis["min_requests"],
                              "max_infra_pause_s": analysis["max_infra_pause_s"]}
    if kind == "ab":
        metrics.append(Metric(measure="online_accuracy", judged="vs_champion", margin=0.0,
                              alpha=rollout["significance"], gate=False))
        limits |= {"step_labelled": rollout["sample_size"],
                   "max_seconds": rollout["sample_size"] / AB_SAMPLES_PER_S}
    else:
        if kind == "shadow":
            metrics.append(Metric(measure="shadow_agreement", judged="bound",
                                  bound=rollout["min_agreement"]))
        steps = len(rollout.get("steps", [100]))
        limits["max_seconds"] = steps * max(rollout["pause_s"], 1.0) * TRAFFIC_WAIT_FACTOR
    return AnalysisSpec(metrics=metrics, limits=Limits(**limits))
