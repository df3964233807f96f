"""Which variant serves a request: A/B, canary, blue-green and shadow routing.

Decisions hash a key (a sticky request key for A/B, else the request id) into [0, 1): the same
key always lands on the same variant, on every replica and after every restart, and a share of
keys lands on the challenger equal to its weight.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from onecommit.vocabulary import CHALLENGER, CHAMPION, TrafficPolicy

_SCALE = float(2**64)


def unit_hash(key: str, salt: str = "") -> float:
    """A stable, uniform number in [0, 1) for a key."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


@dataclass(frozen=True)
class Route:
    serve: str
    mirror: str | None = None


def route(policy: TrafficPolicy, request_key: str) -> Route:
    """The variant that answers, and the one that gets a mirrored copy (shadow)."""
    if policy.strategy == "bluegreen":
        return Route(policy.active)
    if policy.strategy == "shadow":
        return Route(CHAMPION, mirror=CHALLENGER)
    to_challenger = unit_hash(request_key, policy.experiment) < policy.challenger_weight
    return Route(CHALLENGER if to_challenger else CHAMPION)


def weights(policy: TrafficPolicy) -> dict[str, float]:
    """The share of routed traffic each variant gets under a policy."""
    if policy.strategy == "bluegreen":
        return {CHAMPION: float(policy.active == CHAMPION),
                CHALLENGER: float(policy.active == CHALLENGER)}
    if policy.strategy == "shadow":
        return {CHAMPION: 1.0, CHALLENGER: 0.0}
    return {CHAMPION: 1 - policy.challenger_weight, CHALLENGER: policy.challenger_weight}
