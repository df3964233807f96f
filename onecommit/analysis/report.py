"""The typed analysis report: what the gateway observed of each variant (counts, per traffic
split), and each metric's statistic, anytime-valid interval, e-value and outcome. `analyse` is
the one place a spec's metrics are evaluated; every reader (rollout, watch, page) reads its
report instead of judging raw figures itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from onecommit.analysis.labelfree import FeatureDrift
from onecommit.analysis.latency import compare_latency
from onecommit.analysis.sequential import (
    FAIL,
    PASS,
    MeanBound,
    MeanComparison,
    ProportionBound,
    SequenceState,
    Sums,
)
from onecommit.analysis.shadow import PairedOutcomes, mcnemar_exact, paired_comparison
from onecommit.analysis.spec import PROPORTIONS, UNITS, AnalysisSpec, Metric

Count = Annotated[int, Field(ge=0)]
Amount = Annotated[float, Field(ge=0)]
Outcome = Literal["pass", "fail", "undecided"]
OUTCOMES: dict[int, Outcome] = {PASS: "pass", FAIL: "fail", 0: "undecided"}


class _Counts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArmCounts(_Counts):
    """One variant within one traffic split."""

    # Requests the model answered or failed; infrastructure failures are counted apart.
    requests: Count = 0
    errors: Count = 0
    infra_errors: Count = 0
    # Answered requests whose feedback has arrived, and of those the right ones (classifiers).
    labelled: Count = 0
    correct: Count = 0
    # Σ |prediction - label| and its squares over the labelled answers (regressors).
    abs_error_sum: Amount = 0.0
    abs_error_squares: Amount = 0.0
    # Answers with class probabilities, and Σ of the answered class's probability (CBPE).
    scored: Count = 0
    confidence_sum: Amount = 0.0
    # The most recent latencies of answered requests.
    latencies_ms: list[Annotated[float, Field(gt=0)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> ArmCounts:
        if self.errors > self.requests or self.labelled > self.requests:
            raise ValueError("errors and labelled requests cannot exceed requests")
        if self.correct > self.labelled or self.confidence_sum > self.scored:
            raise ValueError("right answers cannot exceed labelled ones, nor confidence the "
                             "scored ones")
        return self


class Stratum(_Counts):
    """The variants' counts under one traffic split (one rollout step)."""

    challenger_weight: Annotated[float, Field(ge=0, le=1)]
    champion: ArmCounts = ArmCounts()
    challenger: ArmCounts = ArmCounts()


class ShadowCounts(_Counts):
    """Mirrored requests both variants answered; of those labelled, who was right."""

    compared: Count = 0
    agree: Count = 0
    both_correct: Count = 0
    champion_only: Count = 0
    challenger_only: Count = 0
    neither_correct: Count = 0

    @property
    def paired(self) -> PairedOutcomes:
        return PairedOutcomes(self.both_correct, self.champion_only, self.challenger_only,
                              self.neither_correct)


class Observations(_Counts):
    """What the gateway saw since the rollout started: one stratum per traffic split, oldest
    first (the last is the current step's), the shadow comparisons and the input drift."""

    strata: Annotated[list[Stratum], Field(min_length=1)]
    shadow: ShadowCounts = ShadowCounts()
    drift: list[FeatureDrift] = Field(default_factory=list)

    @property
    def current(self) -> Stratum:
        return self.strata[-1]

    def labelled(self) -> int:
        return sum(s.champion.labelled + s.challenger.labelled for s in self.strata)


class MetricResult(_Counts):
    """One metric at one look."""

    metric: str
    gate: bool
    # What `estimate` and the interval are of (a difference is challenger - champion).
    statistic: str
    estimate: float | None
    lower: float | None
    upper: float | None
    threshold: float
    e_value: float | None
    anytime_valid: bool
    outcome: Outcome
    samples: int
    # Tests reported beside the decision (McNemar's p-value, Mann-Whitney's U, KS).
    extra: dict[str, float] = Field(default_factory=dict)
    text: str


class AnalysisReport(_Counts):
    observed: Observations
    metrics: list[MetricResult]


def analyse(spec: AnalysisSpec, observed: Observations,
            previous: AnalysisReport | None = None) -> AnalysisReport:
    """Every metric of the spec evaluated on what was observed. Given the report of the
    rollout's previous look, each anytime-valid interval is intersected with the one before
    (still valid), so a decision once reached stays reached."""
    earlier = {r.metric: r for r in previous.metrics} if previous is not None else {}
    return AnalysisReport(observed=observed, metrics=[
        _EVALUATORS[metric.measure](metric, observed, earlier.get(metric.name))
        for metric in spec.metrics])


def sequential_test(metric: Metric, strata: int, bernoulli: bool, shape: tuple[int, ...] = ()
                    ) -> MeanComparison | ProportionBound | MeanBound:
    """The sequential test a metric is judged by (before any observation)."""
    if metric.judged == "vs_champion":
        assert metric.margin is not None  # the spec's validation requires it
        return MeanComparison(metric.alpha, metric.margin, metric.higher_is_better, bernoulli,
                              strata, shape)
    assert metric.bound is not None
    if bernoulli:
        return ProportionBound(metric.alpha, metric.bound, metric.higher_is_better, shape)
    return MeanBound(metric.alpha, metric.bound, metric.higher_is_better, shape)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _fraction(value: float | None, points: bool) -> str:
    if value is None:
        return "-"
    return f"{value * 100:.1f}" if points else f"{value:.3g}"


def _interval_text(state: SequenceState, alpha: float, proportion: bool, unit: str) -> str:
    lower, upper = _finite(float(state.lower)), _finite(float(state.upper))
    if lower is None or upper is None:
        return "no interval yet (too few samples)"
    return (f"{(1 - alpha) * 100:g} % anytime-valid bounds "
            f"[{_fraction(lower, proportion)}, {_fraction(upper, proportion)}]{unit}")


def _text(metric: Metric, state: SequenceState, what: str, proportion: bool,
          bound: float | None) -> str:
    """"challenger accuracy from feedback 2.1 points lower than the champion's, 95 %
    anytime-valid bounds [-3.4, -0.8] points, margin 1.0 points" and the like."""
    estimate = float(state.estimate)
    if not math.isfinite(estimate):
        return f"{what}: no data yet"
    if metric.judged == "vs_champion":
        unit = " points" if proportion else ""
        way = "higher" if estimate > 0 else "lower"
        return (f"challenger {what} {_fraction(abs(estimate), proportion)}{unit} {way} than "
                f"the champion's, {_interval_text(state, metric.alpha, proportion, unit)}, "
                f"margin {_fraction(metric.margin, proportion)}{unit}")
    unit = " %" if proportion else ""
    limit = "≥" if metric.higher_is_better else "≤"
    return (f"{what} {_fraction(estimate, proportion)}{unit}, "
            f"{_interval_text(state, metric.alpha, proportion, unit)}, bound {limit} "
            f"{_fraction(bound, proportion)}{unit}")


def _result(metric: Metric, state: SequenceState, statistic: str, text: str,
            threshold: float, extra: dict[str, float] | None = None) -> MetricResult:
    estimate = float(state.estimate)
    return MetricResult(
        metric=metric.name, gate=metric.is_gate, statistic=statistic,
        estimate=estimate if math.isfinite(estimate) else None,
        lower=_finite(float(state.lower)), upper=_finite(float(state.upper)),
        threshold=threshold, e_value=float(state.e_value), anytime_valid=True,
        outcome=OUTCOMES[int(state.outcome)], samples=int(state.samples), extra=extra or {},
        text=text)


def _threshold(metric: Metric) -> float:
    """The value the statistic is judged against: the bound, or the margin on the worse side
    of a difference."""
    if metric.judged == "bound":
        assert metric.bound is not None  # the spec's validation requires it
        return metric.bound
    margin = metric.margin or 0.0
    return -margin if metric.higher_is_better else margin


def _narrowed(state: SequenceState, metric: Metric, threshold: float,
              earlier: MetricResult | None) -> SequenceState:
    if earlier is None:
        return state
    lower = -np.inf if earlier.lower is None else earlier.lower
    upper = np.inf if earlier.upper is None else earlier.upper
    return state.narrowed(lower, upper, threshold, metric.higher_is_better)


def _judged(metric: Metric, state: SequenceState, statistic: str,
            earlier: MetricResult | None, extra: dict[str, float] | None = None
            ) -> MetricResult:
    state = _narrowed(state, metric, _threshold(metric), earlier)
    proportion = metric.measure in PROPORTIONS
    text = _text(metric, state, UNITS[metric.measure], proportion, metric.bound)
    return _result(metric, state, statistic, text, _threshold(metric), extra)


def _arm_sums(metric: Metric, arm: ArmCounts) -> Sums:
    if metric.measure == "online_accuracy":
        return Sums.bernoulli(arm.labelled, arm.correct)
    if metric.measure == "error_rate":
        return Sums.bernoulli(arm.requests, arm.errors)
    if metric.measure == "estimated_accuracy":
        return Sums.bernoulli(arm.scored, arm.confidence_sum)
    return Sums.of(arm.labelled, arm.abs_error_sum, arm.abs_error_squares)


def _counted(metric: Metric, observed: Observations,
             earlier: MetricResult | None) -> MetricResult:
    """Accuracy, error rate, MAE and estimated accuracy: from the variants' counts."""
    bernoulli = metric.measure != "online_mae"
    test = sequential_test(metric, len(observed.strata), bernoulli)
    for index, stratum in enumerate(observed.strata):
        champion, challenger = _arm_sums(metric, stratum.champion), \
            _arm_sums(metric, stratum.challenger)
        if isinstance(test, MeanComparison):
            test.update(champion, challenger, index)
        elif isinstance(test, ProportionBound):
            test.update(challenger.n, challenger.total)
        else:
            test.update(challenger)
    what = UNITS[metric.measure]
    statistic = (f"challenger - champion {what}" if metric.judged == "vs_champion"
                 else f"challenger {what}")
    return _judged(metric, test.state(), statistic, earlier)


def _latency(metric: Metric, observed: Observations,
             earlier: MetricResult | None) -> MetricResult:
    """A bound on a quantile is a bound on the share of requests slower than it (Howard &
    Ramdas 2022); a comparison is Mann-Whitney U with the Hodges-Lehmann shift. Both judge the
    current step's window only, and are not narrowed by earlier looks."""
    champion, challenger = (observed.current.champion.latencies_ms,
                            observed.current.challenger.latencies_ms)
    if metric.judged == "bound":
        assert metric.bound is not None  # the spec's validation requires it
        slow_share = 1 - metric.quantile
        test = ProportionBound(metric.alpha, slow_share, higher_is_better=False)
        test.update(len(challenger), sum(1 for v in challenger if v > metric.bound))
        state = test.state()
        quantile = f"{np.quantile(challenger, metric.quantile):.1f} ms" if challenger else "-"
        text = (f"challenger p{metric.quantile * 100:g} latency {quantile}; " + _text(
            metric, state, f"share slower than {metric.bound:g} ms", True, slow_share))
        # Over the step's most recent latencies, a window that slides: exact for that
        # window, not a sequence over the rollout (latency moves with the load of each step).
        return _result(metric, state, f"share of challenger requests slower than "
                       f"{metric.bound:g} ms", text, slow_share).model_copy(
                           update={"anytime_valid": False})
    assert metric.margin is not None
    found = compare_latency(champion, challenger, metric.margin, metric.alpha)
    if found is None:
        return MetricResult(metric=metric.name, gate=metric.is_gate,
                            statistic="challenger / champion latency - 1", estimate=None,
                            lower=None, upper=None, threshold=metric.margin, e_value=None,
                            anytime_valid=False, outcome="undecided",
                            samples=len(champion) + len(challenger),
                            text="latency: too few requests of each variant to compare")
    way = "slower" if found.shift > 0 else "faster"
    return MetricResult(
        metric=metric.name, gate=metric.is_gate, statistic="challenger / champion latency - 1",
        estimate=found.shift, lower=found.lower, upper=found.upper, threshold=metric.margin,
        e_value=None, anytime_valid=False, outcome=OUTCOMES[found.outcome],
        samples=found.samples, extra={"u": found.u_statistic, "p_value": found.p_value},
        text=(f"challenger latency {abs(found.shift) * 100:.1f} % {way} (Hodges-Lehmann), "
              f"{(1 - metric.alpha) * 100:g} % interval [{found.lower * 100:.1f} %, "
              f"{found.upper * 100:.1f} %], tolerance {metric.margin * 100:g} %, Mann-Whitney "
              f"p={found.p_value:.3g}"))


def _shadow_correctness(metric: Metric, observed: Observations,
                        earlier: MetricResult | None) -> MetricResult:
    pairs = observed.shadow.paired
    state = paired_comparison(pairs, metric.alpha, metric.margin or 0.0)
    return _judged(metric, state, "challenger - champion accuracy on the same requests",
                   earlier, extra={"mcnemar_p_value": mcnemar_exact(pairs)})


def _shadow_agreement(metric: Metric, observed: Observations,
                      earlier: MetricResult | None) -> MetricResult:
    test = sequential_test(metric, 1, bernoulli=True)
    assert isinstance(test, ProportionBound)
    test.update(observed.shadow.compared, observed.shadow.agree)
    return _judged(metric, test.state(), "share of mirrored requests answered alike",
                   earlier)


def _input_drift(metric: Metric, observed: Observations,
                 earlier: MetricResult | None) -> MetricResult:
    """The largest PSI against the bound; a drift counts only when its KS test also rejects
    at alpha (a large index on a handful of rows is noise). Not sequential: a drift is a fact of
    the inputs to watch, not a comparison that could be peeked into significance."""
    assert metric.bound is not None
    if not observed.drift:
        return MetricResult(metric=metric.name, gate=metric.is_gate,
                            statistic="largest population stability index", estimate=None,
                            lower=None, upper=None, threshold=metric.bound, e_value=None,
                            anytime_valid=False, outcome="undecided", samples=0,
                            text="input drift: no live rows compared yet")
    worst = max(observed.drift, key=lambda d: d.psi)
    drifted = worst.psi > metric.bound and worst.ks_p_value < metric.alpha
    outcome: Outcome = "fail" if drifted else "pass" if worst.psi <= metric.bound else \
        "undecided"
    return MetricResult(
        metric=metric.name, gate=metric.is_gate, statistic="largest population stability index",
        estimate=worst.psi, lower=None, upper=None, threshold=metric.bound, e_value=None,
        anytime_valid=False, outcome=outcome, samples=worst.live_rows,
        extra={"ks_statistic": worst.ks_statistic, "ks_p_value": worst.ks_p_value},
        text=(f"input drift: {worst.feature} PSI {worst.psi:.3f} (bound {metric.bound:g}), KS "
              f"p={worst.ks_p_value:.3g} over {worst.live_rows} live rows"))


_EVALUATORS: dict[str, Callable[[Metric, Observations, MetricResult | None],
                              MetricResult]] = {
    "online_accuracy": _counted, "online_mae": _counted, "error_rate": _counted,
    "estimated_accuracy": _counted, "latency": _latency,
    "shadow_correctness": _shadow_correctness, "shadow_agreement": _shadow_agreement,
    "input_drift": _input_drift}
