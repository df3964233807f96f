"""The serving vocabulary: the words the gateway, desired state, the lifecycle and the model spec
share. The roles a version plays, the rollout strategies, the traffic policy and the rule a
model's name follows are defined here once, and every layer takes them from here.

Imports nothing of the project: the gateway runs in its own environment, the sync validates
specs without MLflow, and both read these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

# The roles a model version plays, as registry aliases and desired-state pins: the champion
# serves, the challenger is under test, the previous champion is kept warm for an instant flip
# back.
Role = Literal["champion", "challenger", "previous"]
CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
PREVIOUS: Final = "previous"
ROLES: tuple[Role, ...] = get_args(Role)
# The roles that may take all traffic (blue-green's active one), and those that may be left
# empty (the champion is only ever replaced).
Active = Literal["champion", "challenger"]
Unpinnable = Literal["challenger", "previous"]

# How a challenger takes traffic: A/B (sticky by a request key), canary (a weight), blue-green
# (an atomic flip) or shadow (a mirrored copy, the champion answers).
# Each has its class in `onecommit.strategies`.
Strategy = Literal["ab", "canary", "bluegreen", "shadow"]

# The header (HTTP) or metadata key (gRPC) carrying the key Triton's model-control API asks
# for (`--http-restricted-api` / `--grpc-restricted-protocol`, model-repository).
TRITON_CONTROL_HEADER = "onecommit-control-key"
# Over gRPC Triton expects the key under its protocol prefix.
TRITON_CONTROL_METADATA = f"triton-grpc-protocol-{TRITON_CONTROL_HEADER}"
# What a model may be called: its spec's `model`, its registered model, its desired state and
# its gateway routes.
MODEL_NAME = r"^[a-z][a-z0-9_-]{1,62}$"


@dataclass(frozen=True)
class TrafficPolicy:
    """An immutable routing policy; the gateway swaps the whole object, so a request sees
    either the old policy or the new one, never a mix."""

    strategy: Strategy = "canary"
    # Share of traffic to the challenger (canary, ab).
    challenger_weight: float = 0.0
    # The variant taking all traffic under blue-green.
    active: Active = CHAMPION
    # Header or JSON field that keeps a user on one variant under A/B.
    sticky_key: str = "x-user-id"
    # Salt for the hash: a new experiment reshuffles who sees what.
    experiment: str = "default"

    def __post_init__(self) -> None:
        if not 0.0 <= self.challenger_weight <= 1.0:
            weight = self.challenger_weight
            raise ValueError(f"challenger_weight must be within [0, 1], got {weight}")
        if self.active not in (CHAMPION, CHALLENGER):
            raise ValueError(f"active must be {CHAMPION!r} or {CHALLENGER!r}, got {self.active!r}")
