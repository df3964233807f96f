"""Latency compared, not only bounded: Kayenta's judge. A Mann-Whitney U test of the
challenger's latencies against the champion's in the same window, and the Hodges-Lehmann
estimate of the shift between them with its confidence interval (the interval that inverts the
same test: Hollander, Wolfe & Chicken, "Nonparametric Statistical Methods", 3rd ed., §4.3).

Latencies are compared on a log scale, so the shift is a ratio: "challenger 12 % slower,
interval [8 %, 15 %]", judged against a relative tolerance. This is a fixed-sample test of the
window it is given, as Kayenta's is; unlike the sequential tests it is not anytime-valid, and
its result says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import mannwhitneyu, norm

from onecommit.analysis.boundaries import Array
from onecommit.analysis.sequential import judge

# Pairwise differences grow as the product of the samples: the most recent this many
# latencies of each variant are compared (a million pairs, a few milliseconds).
WINDOW = 1000
# Fewer than this many latencies in either variant: no judgement.
MIN_LATENCIES = 20


@dataclass(frozen=True)
class LatencyComparison:
    """Challenger against champion; shifts are relative (0.1: 10 % slower)."""

    u_statistic: float
    p_value: float
    shift: float
    lower: float
    upper: float
    outcome: int
    samples: int


def compare_latency(champion_ms: Sequence[float], challenger_ms: Sequence[float],
                    tolerance: float, alpha: float) -> LatencyComparison | None:
    """Mann-Whitney U and the Hodges-Lehmann relative shift with its 1 - alpha interval; PASS
    when the interval is below `tolerance` (not slower beyond it), FAIL when above. None with
    fewer than MIN_LATENCIES of either."""
    champion = np.log(np.asarray(champion_ms[-WINDOW:], dtype=float))
    challenger = np.log(np.asarray(challenger_ms[-WINDOW:], dtype=float))
    if min(champion.size, challenger.size) < MIN_LATENCIES:
        return None
    if not (np.all(np.isfinite(champion)) and np.all(np.isfinite(challenger))):
        raise ValueError("latencies must be positive and finite")
    test = mannwhitneyu(challenger, champion, alternative="two-sided")
    low, middle, high = _shift_interval(champion, challenger, alpha)
    lower, shift, upper = np.expm1([low, middle, high])
    outcome = judge(np.array(lower), np.array(upper), tolerance, higher_is_better=False)
    return LatencyComparison(
        u_statistic=float(test.statistic), p_value=float(test.pvalue), shift=float(shift),
        lower=float(lower), upper=float(upper), outcome=int(outcome),
        samples=champion.size + challenger.size)


def _shift_interval(champion: Array, challenger: Array,
                    alpha: float) -> tuple[float, float, float]:
    """The Hodges-Lehmann shift (the median of every challenger - champion difference) and
    the interval between the order statistics the U test's normal approximation points at."""
    differences = np.sort(np.subtract.outer(challenger, champion).ravel())
    m, n = champion.size, challenger.size
    spread = np.sqrt(m * n * (m + n + 1) / 12)
    k = int(np.floor(m * n / 2 - norm.ppf(1 - alpha / 2) * spread))
    k = min(max(k, 0), differences.size - 1)
    return (float(differences[k]), float(np.median(differences)),
            float(differences[differences.size - 1 - k]))
