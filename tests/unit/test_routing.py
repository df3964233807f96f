from __future__ import annotations

import math
import threading

import pytest
from scipy import stats

from onecommit.gateway.statistics import quantile, two_proportion_test
from onecommit.strategies import route, unit_hash
from onecommit.vocabulary import CHALLENGER, CHAMPION, TrafficPolicy


def test_ab_is_sticky_and_stable_across_instances() -> None:
    policy = TrafficPolicy(strategy="ab", challenger_weight=0.5, experiment="exp-1")
    first = [route(policy, f"user-{i}").serve for i in range(500)]
    again = [route(TrafficPolicy(strategy="ab", challenger_weight=0.5, experiment="exp-1"),
                   f"user-{i}").serve for i in range(500)]
    assert first == again
    reshuffled = [route(TrafficPolicy(strategy="ab", challenger_weight=0.5, experiment="exp-2"),
                        f"user-{i}").serve for i in range(500)]
    assert reshuffled != first


@pytest.mark.parametrize("weight", [0.0, 0.05, 0.2, 0.5, 0.9, 1.0])
def test_canary_split_matches_weight(weight: float) -> None:
    policy = TrafficPolicy(strategy="canary", challenger_weight=weight)
    n = 20_000
    share = sum(route(policy, f"req-{i}").serve == CHALLENGER for i in range(n)) / n
    # Five binomial standard deviations: fails on a biased hash, not by chance.
    assert abs(share - weight) <= 5 * math.sqrt(weight * (1 - weight) / n) + 1e-9


def test_raising_the_weight_only_moves_keys_towards_the_challenger() -> None:
    low = TrafficPolicy(strategy="canary", challenger_weight=0.2)
    high = TrafficPolicy(strategy="canary", challenger_weight=0.5)
    for i in range(2000):
        if route(low, f"k{i}").serve == CHALLENGER:
            assert route(high, f"k{i}").serve == CHALLENGER


def test_bluegreen_flip_is_all_or_nothing() -> None:
    blue = TrafficPolicy(strategy="bluegreen", active=CHAMPION)
    green = TrafficPolicy(strategy="bluegreen", active=CHALLENGER)
    assert {route(blue, f"r{i}").serve for i in range(1000)} == {CHAMPION}
    assert {route(green, f"r{i}").serve for i in range(1000)} == {CHALLENGER}


def test_policy_swap_is_atomic_under_concurrent_readers() -> None:
    # Readers see one whole policy at a time: never challenger weight from one and strategy
    # from another.
    holder = {"policy": TrafficPolicy(strategy="bluegreen", active=CHAMPION)}
    seen: set[tuple[str, str]] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            policy = holder["policy"]
            seen.add((policy.strategy, route(policy, "x").serve))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for i in range(2000):
        holder["policy"] = TrafficPolicy(strategy="bluegreen",
                                         active=CHALLENGER if i % 2 else CHAMPION)
    stop.set()
    for thread in threads:
        thread.join()
    assert seen <= {("bluegreen", CHAMPION), ("bluegreen", CHALLENGER)}


def test_shadow_answers_from_champion_and_mirrors() -> None:
    decision = route(TrafficPolicy(strategy="shadow"), "r")
    assert decision.serve == CHAMPION
    assert decision.mirror == CHALLENGER


def test_invalid_policy_names_the_field() -> None:
    with pytest.raises(ValueError, match="challenger_weight"):
        TrafficPolicy(challenger_weight=1.5)
    with pytest.raises(ValueError, match="active"):
        TrafficPolicy(strategy="bluegreen", active="purple")


def test_unit_hash_is_uniform() -> None:
    values = [unit_hash(str(i)) for i in range(5000)]
    assert stats.kstest(values, "uniform").pvalue > 0.001


def test_two_proportion_test_matches_scipy() -> None:
    result = two_proportion_test(420, 500, 380, 500, alpha=0.05, required_per_arm=400)
    pooled = 800 / 1000
    z = (0.76 - 0.84) / math.sqrt(pooled * (1 - pooled) * (2 / 500))
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    assert result.significant
    assert result.sample_size_reached
    assert result.ci_low < result.difference < result.ci_high < 0


def test_two_proportion_test_equal_rates_is_not_significant() -> None:
    result = two_proportion_test(50, 100, 50, 100, required_per_arm=400)
    assert result.p_value == pytest.approx(1.0)
    assert not result.significant
    assert not result.sample_size_reached
    with pytest.raises(ValueError, match="outside"):
        two_proportion_test(5, 4, 1, 2)


def test_quantile() -> None:
    assert quantile([], 0.5) is None
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert quantile(list(map(float, range(101))), 0.95) == pytest.approx(95.0)
