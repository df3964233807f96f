"""Latency (Mann-Whitney U, Hodges-Lehmann), shadow (McNemar), CBPE and input drift, each
against an independent computation."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from onecommit.analysis.labelfree import (
    expected_correct,
    feature_drift,
    population_stability_index,
)
from onecommit.analysis.latency import compare_latency
from onecommit.analysis.sequential import FAIL, PASS
from onecommit.analysis.shadow import PairedOutcomes, mcnemar_exact, paired_comparison


def _latencies(rng: np.random.Generator, n: int, scale: float) -> list[float]:
    return list(rng.lognormal(np.log(20 * scale), 0.4, n))


def test_u_statistic_and_p_value_are_scipys() -> None:
    rng = np.random.default_rng(1)
    champion, challenger = _latencies(rng, 300, 1.0), _latencies(rng, 200, 1.1)
    found = compare_latency(champion, challenger, tolerance=0.2, alpha=0.05)
    assert found is not None
    expected = mannwhitneyu(challenger, champion, alternative="two-sided")
    assert found.u_statistic == expected.statistic
    assert found.p_value == pytest.approx(expected.pvalue)


def test_shift_interval_inverts_the_mann_whitney_test() -> None:
    """The interval is the shifts Mann-Whitney does not reject: scipy's test of the
    challenger's log latencies moved by a shift just inside a bound does not reject at alpha,
    moved by one just outside does."""
    rng = np.random.default_rng(2)
    champion, challenger = _latencies(rng, 400, 1.0), _latencies(rng, 400, 1.15)
    found = compare_latency(champion, challenger, tolerance=0.1, alpha=0.05)
    assert found is not None
    assert found.lower < found.shift < found.upper
    width = np.log1p(found.upper) - np.log1p(found.lower)
    log_a, log_b = np.log(champion), np.log(challenger)
    for bound in (found.lower, found.upper):
        for step, rejects in ((0.1, False), (0.3, True)):
            inward = np.sign(found.shift - bound) * step * width
            shift = np.log1p(bound) + (-inward if rejects else inward)
            p = mannwhitneyu(log_b - shift, log_a, alternative="two-sided",
                             method="asymptotic", use_continuity=False).pvalue
            assert (p < 0.05) == rejects


def test_latency_judged_against_its_tolerance() -> None:
    rng = np.random.default_rng(3)
    champion = _latencies(rng, 1000, 1.0)
    slower = compare_latency(champion, _latencies(rng, 1000, 1.4), 0.1, 0.05)
    same = compare_latency(champion, _latencies(rng, 1000, 1.0), 0.1, 0.05)
    assert slower is not None
    assert slower.outcome == FAIL
    assert same is not None
    assert same.outcome == PASS
    assert compare_latency(champion, [5.0] * 3, 0.1, 0.05) is None


def test_mcnemar_exact_is_the_binomial_tail() -> None:
    pairs = PairedOutcomes(both=900, champion_only=30, challenger_only=14, neither=56)
    discordant = 44
    tail = sum(comb(discordant, k) for k in range(15)) / 2 ** discordant
    assert mcnemar_exact(pairs) == pytest.approx(min(1.0, 2 * tail))
    assert mcnemar_exact(PairedOutcomes(10, 0, 0, 3)) == 1.0
    with pytest.raises(ValueError, match="negative"):
        PairedOutcomes(1, -1, 0, 0)


def test_paired_comparison_decides_on_the_same_inputs() -> None:
    worse = paired_comparison(PairedOutcomes(8000, 600, 200, 1200), alpha=0.05, margin=0.01)
    equal = paired_comparison(PairedOutcomes(8800, 100, 100, 1000), alpha=0.05, margin=0.01)
    assert worse.outcome == FAIL  # 4 points worse on the same requests
    assert equal.outcome == PASS
    assert worse.estimate == pytest.approx(-0.04)


def test_cbpe_estimates_a_calibrated_classifiers_accuracy() -> None:
    rng = np.random.default_rng(4)
    positive = rng.beta(2, 2, 20_000)
    label = rng.random(positive.size) < positive
    right = ((positive >= 0.5) == label).sum()
    assert expected_correct(positive) == pytest.approx(right, rel=0.02)
    rows = np.stack([1 - positive, positive], axis=1)
    assert expected_correct(rows) == pytest.approx(expected_correct(positive))
    with pytest.raises(ValueError, match="probabilities"):
        expected_correct([[0.7, 0.7]])


def test_drift_is_found_where_the_inputs_moved() -> None:
    rng = np.random.default_rng(5)
    training = rng.normal(0, 1, (5000, 2))
    live = np.column_stack([rng.normal(0, 1, 2000), rng.normal(1.0, 1, 2000)])
    stable, moved = feature_drift(training, live, ["a", "b"])
    assert stable.psi < 0.05
    assert stable.ks_p_value > 0.001
    assert moved.psi > 0.25
    assert moved.ks_p_value < 1e-6
    assert population_stability_index(training[:, 0], training[:, 0]) == pytest.approx(0)
    with pytest.raises(ValueError, match="one column per feature"):
        feature_drift(training, live, ["a"])
