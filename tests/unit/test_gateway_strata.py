"""The traffic splits of a rollout window and the observations summed into them."""

from __future__ import annotations

import pytest

from onecommit.analysis.report import ShadowCounts
from onecommit.gateway.strata import Split, Tally, observed, splits, stratum_of
from onecommit.vocabulary import TrafficPolicy


def _canary(weight: float) -> TrafficPolicy:
    return TrafficPolicy(strategy="canary", challenger_weight=weight)


def test_revisions_routing_the_same_share_form_one_split_and_a_share_back_is_another() -> None:
    history = [(3, _canary(0.1)), (4, _canary(0.1)), (5, _canary(0.5)),
               (6, TrafficPolicy(strategy="bluegreen", active="challenger")),
               (7, _canary(0.1))]
    assert splits(history) == [Split(3, 4, 0.1), Split(5, 5, 0.5), Split(6, 6, 1.0),
                               Split(7, 7, 0.1)]
    # A shadow mirrors: the challenger answers no user.
    assert splits([(1, TrafficPolicy(strategy="shadow"))]) == [Split(1, 1, 0.0)]


@pytest.mark.parametrize(("revision", "index"), [(2, None), (3, 0), (4, 0), (5, 1), (6, 1),
                                                 (7, None)])
def test_a_revision_falls_in_its_split_or_outside_the_window(revision: int,
                                                             index: int | None) -> None:
    assert stratum_of([Split(3, 4, 0.1), Split(5, 6, 0.5)], revision) == index


def test_counts_are_summed_per_split_and_arm_and_others_left_out() -> None:
    windows = [Split(3, 4, 0.1), Split(5, 5, 0.5)]
    tallies: list[Tally] = [
        (3, "champion", {"requests": 5, "errors": 1}),
        (4, "champion", {"requests": 4, "labelled": 2, "correct": 1}),
        (4, "challenger", {"requests": 1, "infra_errors": 2}),
        (5, "challenger", {"requests": 3, "labelled": 3, "abs_error_sum": 1.5,
                           "abs_error_squares": 0.75}),
        (6, "challenger", {"requests": 100}),  # newer than the history read
        (5, "previous", {"requests": 100})]  # not an arm of the rollout
    found = observed(windows, tallies, {(1, "challenger"): [2.0, 1.0]},
                     ShadowCounts(compared=4, agree=3))
    first, second = found.strata
    assert (first.challenger_weight, second.challenger_weight) == (0.1, 0.5)
    assert (first.champion.requests, first.champion.errors, first.champion.labelled,
            first.champion.correct) == (9, 1, 2, 1)
    assert (first.challenger.requests, first.challenger.infra_errors) == (1, 2)
    assert second.champion.requests == 0
    assert (second.challenger.requests, second.challenger.abs_error_sum,
            second.challenger.latencies_ms) == (3, 1.5, [2.0, 1.0])
    assert found.shadow == ShadowCounts(compared=4, agree=3)
    assert found.current is second
