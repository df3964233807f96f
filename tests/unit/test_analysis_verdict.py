"""The analysis spec, today's keys mapped onto it, the typed report and the one verdict."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from onecommit.analysis.report import (
    AnalysisReport,
    ArmCounts,
    Observations,
    ShadowCounts,
    Stratum,
    analyse,
)
from onecommit.analysis.sequential import FAIL, PASS, UNDECIDED
from onecommit.analysis.spec import AnalysisSpec, Limits, Metric, from_thresholds
from onecommit.analysis.verdict import ACTIONS, Elapsed, step_actions, verdict
from onecommit.lifecycle.spec import parse_spec

ACCURACY = Metric(measure="online_accuracy", judged="vs_champion", margin=0.01)
ERRORS = Metric(measure="error_rate", judged="bound", bound=0.01)
SPEC = AnalysisSpec(metrics=[ACCURACY, ERRORS],
                    limits=Limits(min_dwell_s=10, min_requests=50, max_seconds=600))


def _observed(champion_right: int, challenger_right: int, labelled: int = 20_000,
              infra: int = 0, requests: int | None = None) -> Observations:
    """A 50/50 split with `labelled` answers judged per arm."""
    def arm(right: int, infra_errors: int = 0) -> ArmCounts:
        return ArmCounts(requests=requests if requests is not None else labelled,
                         labelled=min(labelled, requests or labelled),
                         correct=min(right, requests or labelled), infra_errors=infra_errors)
    return Observations(strata=[Stratum(challenger_weight=0.5, champion=arm(champion_right),
                                        challenger=arm(challenger_right, infra))])


def _decide(observed: Observations, step_s: float = 30, pause_s: float = 60,
            rollout_s: float = 30, spec: AnalysisSpec = SPEC) -> Any:
    return verdict(spec, analyse(spec, observed), Elapsed(step_s=step_s, step_pause_s=pause_s,
                                                          rollout_s=rollout_s))


def _spec_mapping(rollout: dict[str, Any], **analysis: Any) -> AnalysisSpec:
    spec = parse_spec({"model": "iris", "task": "multiclass",
                       "data": {"source": "builtin:iris"},
                       "training": {"trainer": "logistic_regression"}, "rollout": rollout,
                       "analysis": analysis})
    return from_thresholds(spec.analysis.model_dump(), spec.rollout.model_dump())


def test_todays_canary_keys_become_guards_with_the_same_bounds() -> None:
    mapped = _spec_mapping({"kind": "canary", "steps": [20, 100], "pause_s": 30},
                           min_online_accuracy=0.8, min_requests=70)
    by_name = {m.name: m for m in mapped.metrics}
    assert by_name["error_rate bound"].bound == 0.01
    assert by_name["latency bound"].bound == 250
    assert by_name["latency bound"].quantile == 0.95
    assert by_name["online_accuracy bound"].bound == 0.8
    assert not any(m.is_gate for m in mapped.metrics)
    assert mapped.limits.min_requests == 70
    assert mapped.limits.max_seconds == 2 * 30 * 4  # today's wait for traffic, per step


def test_todays_ab_and_shadow_keys_keep_their_meaning() -> None:
    ab = _spec_mapping({"kind": "ab", "sample_size": 1000, "significance": 0.01})
    comparison = next(m for m in ab.metrics if m.judged == "vs_champion")
    assert (comparison.margin, comparison.alpha, comparison.is_gate) == (0.0, 0.01, False)
    assert ab.limits.step_labelled == 1000
    shadow = _spec_mapping({"kind": "shadow", "min_agreement": 0.9})
    agreement = next(m for m in shadow.metrics if m.measure == "shadow_agreement")
    assert agreement.bound == 0.9
    assert not agreement.is_gate


@pytest.mark.parametrize(("metric", "problem"), [
    ({"measure": "shadow_correctness", "judged": "bound", "bound": 0.9}, "against the champion"),
    ({"measure": "input_drift", "judged": "vs_champion", "margin": 0.1}, "no champion"),
    ({"measure": "online_accuracy", "judged": "vs_champion"}, "takes `margin`"),
    ({"measure": "error_rate", "judged": "bound", "bound": 2}, "not a fraction"),
    ({"measure": "latency", "judged": "bound", "bound": 100, "alpha": 0.7}, "less than 0.5"),
    ({"measure": "latency", "judged": "bound", "bound": 100, "typo": 1}, "Extra inputs"),
])
def test_bad_metrics_are_refused_naming_the_problem(metric: dict[str, Any],
                                                     problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Metric.model_validate(metric)


def test_a_metric_given_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="given twice"):
        AnalysisSpec(metrics=[ERRORS, ERRORS])


def test_infrastructure_failures_pause() -> None:
    decision = _decide(_observed(18_000, 18_000, infra=3))
    assert decision.action == "pause"
    assert "3 requests failed on infrastructure" in decision.reason


def test_too_little_traffic_waits_then_ends_inconclusive() -> None:
    assert _decide(_observed(9, 9, labelled=10)).action == "wait"
    ended = _decide(_observed(9, 9, labelled=10), rollout_s=600)
    assert (ended.action, ended.then) == ("inconclusive", "rollback")
    assert "not enough traffic" in ended.reason


def test_a_worse_challenger_aborts_with_the_statistic_in_the_reason() -> None:
    decision = _decide(_observed(18_000, 17_000))
    assert decision.action == "abort"
    assert decision.reason.startswith("challenger accuracy from feedback 5.0 points lower than "
                                      "the champion's, 95 % anytime-valid bounds [")
    assert decision.reason.endswith("margin 1.0 points: abort")


def test_non_inferiority_advances_early_after_the_minimum_dwell() -> None:
    equal = _observed(18_000, 18_050)
    assert _decide(equal, step_s=5).action == "wait"  # within the minimum dwell
    early = _decide(equal, step_s=20)
    assert early.action == "advance"
    assert early.reason.startswith("decided after 20 of 60 s: challenger accuracy")
    assert _decide(equal, step_s=60).action == "continue"


def test_an_undecided_gate_waits_and_ends_inconclusive_with_its_action() -> None:
    few = _observed(900, 890, labelled=1000)
    waiting = _decide(few, step_s=60)
    assert waiting.action == "wait"
    assert waiting.reason.startswith("undecided: challenger")
    assert _decide(few, step_s=60, rollout_s=600).then == "rollback"
    holding = AnalysisSpec(metrics=[ACCURACY.model_copy(update={"inconclusive": "hold"}),
                                    ERRORS], limits=SPEC.limits)
    ended = _decide(few, step_s=60, rollout_s=600, spec=holding)
    assert (ended.action, ended.then) == ("inconclusive", "hold")


def test_guards_do_not_hold_a_step_back() -> None:
    """Today's thresholds as guards: no errors in 100 requests cannot show the error rate
    under 1 %, and the step continues after its pause all the same."""
    guards = from_thresholds({"max_error_rate": 0.01, "max_p95_latency_ms": 250,
                              "min_requests": 50, "max_infra_pause_s": 120},
                             {"kind": "canary", "steps": [20, 100], "pause_s": 20})
    observed = _observed(90, 90, labelled=100)
    assert _decide(observed, step_s=10, pause_s=20, spec=guards).action == "wait"
    assert _decide(observed, step_s=20, pause_s=20, spec=guards).action == "continue"


def test_ab_step_holds_for_its_labelled_sample() -> None:
    ab = _spec_mapping({"kind": "ab", "sample_size": 1000})
    assert _decide(_observed(450, 450, labelled=500), pause_s=0, spec=ab).action == "wait"
    assert _decide(_observed(900, 900, labelled=1000), pause_s=0, spec=ab).action == "continue"


def test_shadow_correctness_decides_on_paired_outcomes() -> None:
    spec = AnalysisSpec(metrics=[Metric(measure="shadow_correctness", judged="vs_champion",
                                        margin=0.01)])
    shadow = ShadowCounts(compared=10_000, agree=9_000, both_correct=8000, champion_only=600,
                          challenger_only=200, neither_correct=1200)
    observed = Observations(strata=[Stratum(challenger_weight=0.0)], shadow=shadow)
    decision = verdict(spec, analyse(spec, observed), Elapsed(step_s=30, step_pause_s=30,
                                                              rollout_s=30))
    assert decision.action == "abort"
    assert "accuracy on mirrored requests 4.0 points lower" in decision.reason


def test_step_actions_apply_the_rule_to_many_looks_at_once() -> None:
    """The bench's vectorised call: one column per look, a gate and a guard."""
    looks = [  # gate, guard, enough requests, held, dwelled, exhausted -> action
        (PASS, PASS, True, False, True, False, "advance"),
        (PASS, FAIL, True, True, True, False, "abort"),
        (UNDECIDED, PASS, True, True, True, False, "wait"),
        (PASS, UNDECIDED, True, False, True, False, "wait"),
        (PASS, UNDECIDED, True, True, True, False, "continue"),
        (PASS, PASS, True, False, False, True, "wait"),
        (UNDECIDED, PASS, True, True, True, True, "inconclusive"),
        (FAIL, PASS, False, True, True, False, "wait"),
    ]
    columns = list(zip(*looks, strict=True))
    outcomes = np.array(columns[:2], dtype=np.int8)
    enough, held, dwelled, exhausted = (np.array(c) for c in columns[2:6])
    actions = step_actions(outcomes, np.array([True, False]), np.zeros(len(looks), bool),
                           enough, held, dwelled, exhausted)
    assert [ACTIONS[a] for a in actions] == list(columns[6])


def test_the_report_round_trips_as_json() -> None:
    report = analyse(SPEC, _observed(900, 880, labelled=30))  # too few: no interval yet
    again = AnalysisReport.model_validate_json(report.model_dump_json())
    assert again == report
    assert report.metrics[0].lower is None
    assert report.metrics[0].outcome == "undecided"


def test_counts_that_cannot_be_are_refused() -> None:
    with pytest.raises(ValidationError, match="cannot exceed"):
        ArmCounts(requests=10, labelled=5, correct=6)


def test_a_decision_once_reached_stays_reached_across_looks() -> None:
    """Given the previous look's report, intervals are intersected: a step that showed
    non-inferiority keeps it when the next look alone would not (fewer labels in a new split,
    say); without it, the same counts are undecided."""
    shown = analyse(SPEC, _observed(18_000, 18_050))
    assert shown.metrics[0].outcome == "pass"
    fewer = _observed(900, 895, labelled=1000)
    assert analyse(SPEC, fewer).metrics[0].outcome == "undecided"
    kept = analyse(SPEC, fewer, previous=shown).metrics[0]
    assert kept.outcome == "pass"
    assert kept.lower == shown.metrics[0].lower
