"""The rollout strategies, one class per kind: how it routes a request, the share of traffic
each variant gets, how the rollout page describes it, whether it mirrors, the key it hashes,
what the spec's checks ask of it, and the phases a spec's rollout of that kind steps through.
Every caller (the gateway's routing and page, the sync's self-heal, the lifecycle's spec and
rollout) dispatches here instead of testing the strategy's name.

Routing hashes a key (a sticky request key for A/B, else a key the gateway draws) into
[0, 1): the same key always lands on the same variant, on every replica and after every
restart, and a share of keys lands on the challenger equal to its weight.

Imports only the vocabulary: the gateway runs in its own environment, and the lifecycle hands
its spec's rollout over as a mapping (its pydantic classes live above this layer).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from onecommit.vocabulary import CHALLENGER, CHAMPION, Strategy, TrafficPolicy

_SCALE = float(2**64)


def unit_hash(key: str, salt: str = "") -> float:
    """A stable, uniform number in [0, 1) for a key."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


@dataclass(frozen=True)
class Route:
    serve: str
    mirror: str | None = None


@dataclass(frozen=True)
class Phase:
    """One step of a rollout: a traffic policy held for a while, then judged."""

    name: str
    policy: dict[str, Any]
    pause_s: float


class RolloutStrategy(ABC):
    """One kind of rollout; stateless, the policy or the spec's rollout carries the values."""

    kind: ClassVar[Strategy]
    # Whether the champion's answered requests are copied to the challenger.
    mirrors: ClassVar[bool] = False
    # Whether both variants answer live requests at once: a comparison of an answered
    # request's outcome with the champion needs it.
    splits: ClassVar[bool] = False
    # Whether the strategy's own judgement compares predicted classes (A/B's accuracy
    # against the champion, shadow's agreement), which a regression model has not.
    compares_classes: ClassVar[bool] = False

    @abstractmethod
    def route(self, policy: TrafficPolicy, request_key: str) -> Route:
        """The variant that answers, and the one that gets a mirrored copy."""

    @abstractmethod
    def weights(self, policy: TrafficPolicy) -> dict[str, float]:
        """The share of routed traffic each variant gets."""

    @abstractmethod
    def describe(self, policy: TrafficPolicy) -> str:
        """The policy as the rollout page shows it."""

    @abstractmethod
    def phases(self, rollout: Mapping[str, Any], model: str, version: int) -> list[Phase]:
        """The spec's rollout (as a mapping) as a sequence of traffic policies."""

    def sticky_key(self, policy: TrafficPolicy, headers: Mapping[str, str]) -> str | None:
        """The request's own key to hash, if the strategy keeps a user on one variant; None:
        the gateway draws one (a client's request id would let it choose its variant)."""
        return None

    def reaches_challenger(self, policy: TrafficPolicy) -> bool:
        """Whether the challenger sees requests under the policy, answered or mirrored."""
        return self.weights(policy)[CHALLENGER] > 0 or self.mirrors


class _WeightedStrategy(RolloutStrategy, ABC):
    """A split by the challenger's weight, hashed with the experiment as salt."""

    splits = True

    def route(self, policy: TrafficPolicy, request_key: str) -> Route:
        to_challenger = unit_hash(request_key, policy.experiment) < policy.challenger_weight
        return Route(CHALLENGER if to_challenger else CHAMPION)

    def weights(self, policy: TrafficPolicy) -> dict[str, float]:
        return {CHAMPION: 1 - policy.challenger_weight, CHALLENGER: policy.challenger_weight}

    def describe(self, policy: TrafficPolicy) -> str:
        return f"{self.kind}: challenger {policy.challenger_weight:.0%}"


class CanaryStrategy(_WeightedStrategy):
    kind = "canary"

    def phases(self, rollout: Mapping[str, Any], model: str, version: int) -> list[Phase]:
        return [Phase(f"canary {w}%", {"strategy": "canary", "challenger_weight": w / 100},
                      rollout["pause_s"]) for w in rollout["steps"]]


class ABTestStrategy(_WeightedStrategy):
    kind = "ab"
    compares_classes = True

    def phases(self, rollout: Mapping[str, Any], model: str, version: int) -> list[Phase]:
        # A new experiment salt per version: users are reshuffled for each test. No pause: the
        # test waits for its sample, which is traffic, not a mandate.
        return [Phase("a/b 50/50", {"strategy": "ab", "challenger_weight": 0.5,
                                    "sticky_key": rollout["sticky_key"],
                                    "experiment": f"{model}-v{version}"}, 0.0)]

    def sticky_key(self, policy: TrafficPolicy, headers: Mapping[str, str]) -> str | None:
        return headers.get(policy.sticky_key)


class BlueGreenStrategy(RolloutStrategy):
    kind = "bluegreen"

    def route(self, policy: TrafficPolicy, request_key: str) -> Route:
        return Route(policy.active)

    def weights(self, policy: TrafficPolicy) -> dict[str, float]:
        return {CHAMPION: float(policy.active == CHAMPION),
                CHALLENGER: float(policy.active == CHALLENGER)}

    def describe(self, policy: TrafficPolicy) -> str:
        return f"blue-green: {policy.active} active"

    def phases(self, rollout: Mapping[str, Any], model: str, version: int) -> list[Phase]:
        return [Phase("blue-green flip", {"strategy": "bluegreen", "active": "challenger"},
                      rollout["pause_s"])]


class ShadowStrategy(RolloutStrategy):
    kind = "shadow"
    mirrors = True
    compares_classes = True

    def route(self, policy: TrafficPolicy, request_key: str) -> Route:
        return Route(CHAMPION, mirror=CHALLENGER)

    def weights(self, policy: TrafficPolicy) -> dict[str, float]:
        # Mirrored copies are not routed traffic: the champion answers every request.
        return {CHAMPION: 1.0, CHALLENGER: 0.0}

    def describe(self, policy: TrafficPolicy) -> str:
        return "shadow: champion answers, challenger mirrored"

    def phases(self, rollout: Mapping[str, Any], model: str, version: int) -> list[Phase]:
        return [Phase("shadow", {"strategy": "shadow"}, rollout["pause_s"])]


# Every kind, by the name policies and specs give it.
STRATEGIES: dict[Strategy, RolloutStrategy] = {
    strategy.kind: strategy
    for strategy in (CanaryStrategy(), ABTestStrategy(), BlueGreenStrategy(), ShadowStrategy())}


def strategy_of(policy: TrafficPolicy) -> RolloutStrategy:
    return STRATEGIES[policy.strategy]


def route(policy: TrafficPolicy, request_key: str) -> Route:
    """The variant that answers, and the one that gets a mirrored copy (shadow)."""
    return strategy_of(policy).route(policy, request_key)


def weights(policy: TrafficPolicy) -> dict[str, float]:
    """The share of routed traffic each variant gets under a policy."""
    return strategy_of(policy).weights(policy)
