"""Statistics behind rollout decisions: two-proportion z-test and latency quantiles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()


@dataclass(frozen=True)
class ProportionTest:
    p_champion: float
    p_challenger: float
    difference: float
    p_value: float
    ci_low: float
    ci_high: float
    significant: bool
    sample_size_reached: bool


def two_proportion_test(successes_a: int, total_a: int, successes_b: int, total_b: int,
                        alpha: float = 0.05, required_per_arm: int = 0) -> ProportionTest:
    """Two-sided z-test of B's success rate against A's (pooled standard error for the test,
    unpooled for the confidence interval of B - A)."""
    if total_a <= 0 or total_b <= 0:
        raise ValueError("both arms need at least one observation")
    for successes, total in ((successes_a, total_a), (successes_b, total_b)):
        if not 0 <= successes <= total:
            raise ValueError(f"successes {successes} outside [0, {total}]")
    p_a, p_b = successes_a / total_a, successes_b / total_b
    pooled = (successes_a + successes_b) / (total_a + total_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / total_a + 1 / total_b))
    if se_pooled == 0:
        p_value = 1.0 if p_a == p_b else 0.0
    else:
        p_value = 2 * (1 - _NORMAL.cdf(abs(p_b - p_a) / se_pooled))
    se = math.sqrt(p_a * (1 - p_a) / total_a + p_b * (1 - p_b) / total_b)
    margin = _NORMAL.inv_cdf(1 - alpha / 2) * se
    return ProportionTest(
        p_champion=p_a, p_challenger=p_b, difference=p_b - p_a, p_value=p_value,
        ci_low=p_b - p_a - margin, ci_high=p_b - p_a + margin, significant=p_value < alpha,
        sample_size_reached=min(total_a, total_b) >= required_per_arm,
    )


def quantile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated quantile; None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
