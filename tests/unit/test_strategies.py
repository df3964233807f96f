"""One class per rollout strategy: every kind the vocabulary and the spec name has exactly one,
and each routes the way its weights say."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from onecommit.lifecycle.spec import Rollout
from onecommit.strategies import STRATEGIES, strategy_of
from onecommit.vocabulary import CHALLENGER, CHAMPION, Strategy, TrafficPolicy

# Policies of every kind, at the edges and in between; bluegreen's both sides.
POLICIES = [TrafficPolicy("canary", w) for w in (0.0, 0.2, 1.0)] + [
    TrafficPolicy("ab", 0.5, experiment="m-v3"), TrafficPolicy("ab", 0.0),
    TrafficPolicy("bluegreen", active=CHAMPION), TrafficPolicy("bluegreen", active=CHALLENGER),
    TrafficPolicy("shadow")]
KEYS = 4000


def _spec_kinds() -> set[str]:
    members = get_args(get_args(Rollout)[0])
    return {kind for member in members
            for kind in get_args(member.model_fields["kind"].annotation)}


def test_every_kind_has_exactly_one_class() -> None:
    kinds = set(get_args(Strategy))
    assert set(STRATEGIES) == kinds == _spec_kinds()
    assert len({type(strategy) for strategy in STRATEGIES.values()}) == len(kinds)
    assert all(kind == strategy.kind for kind, strategy in STRATEGIES.items())
    assert {policy.strategy for policy in POLICIES} == kinds


@pytest.mark.parametrize("policy", POLICIES,
                         ids=lambda p: f"{p.strategy}-{p.challenger_weight}-{p.active}")
def test_weights_sum_to_one_and_route_agrees(policy: TrafficPolicy) -> None:
    strategy = strategy_of(policy)
    shares = strategy.weights(policy)
    assert set(shares) == {CHAMPION, CHALLENGER}
    assert sum(shares.values()) == pytest.approx(1.0)
    routes = [strategy.route(policy, f"key-{i}") for i in range(KEYS)]
    served = sum(r.serve == CHALLENGER for r in routes) / KEYS
    # A uniform hash: the share within 4 standard errors (exact at weights 0 and 1).
    spread = 4 * (shares[CHALLENGER] * shares[CHAMPION] / KEYS) ** 0.5
    assert abs(served - shares[CHALLENGER]) <= spread
    # Only a mirroring strategy sends copies, always to the challenger.
    assert {r.mirror for r in routes} == ({CHALLENGER} if strategy.mirrors else {None})
    assert strategy.reaches_challenger(policy) == (shares[CHALLENGER] > 0 or strategy.mirrors)


@pytest.mark.parametrize(("policy", "text"), [
    (TrafficPolicy("canary", 0.2), "canary: challenger 20%"),
    (TrafficPolicy("ab", 0.5), "ab: challenger 50%"),
    (TrafficPolicy("bluegreen", active=CHALLENGER), "blue-green: challenger active"),
    (TrafficPolicy("shadow"), "shadow: champion answers, challenger mirrored")])
def test_each_strategy_describes_its_policy(policy: TrafficPolicy, text: str) -> None:
    assert strategy_of(policy).describe(policy) == text


@pytest.mark.parametrize("kind", sorted(get_args(Strategy)))
def test_only_ab_hashes_the_callers_sticky_key(kind: Strategy) -> None:
    policy = TrafficPolicy(kind, sticky_key="x-user")
    headers: dict[str, Any] = {"x-user": "alice"}
    expected = "alice" if kind == "ab" else None
    assert strategy_of(policy).sticky_key(policy, headers) == expected


def test_what_the_spec_checks_ask_of_each_kind() -> None:
    def kinds(trait: str) -> set[str]:
        return {kind for kind, strategy in STRATEGIES.items() if getattr(strategy, trait)}

    assert kinds("mirrors") == {"shadow"}
    assert kinds("splits") == {"canary", "ab"}
    assert kinds("compares_classes") == {"ab", "shadow"}
