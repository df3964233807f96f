"""The traffic splits of a rollout window, and the typed observations the prediction log's
counts make under them.

A rollout step is a traffic split: the share of routed requests the challenger gets. A request
was split by the policy in force at the desired-state revision it was routed under, so the
window's revisions, grouped by the challenger's share, are its strata; the sequential tests
compare the variants within each stratum (their populations differ between splits).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from onecommit.analysis.report import ArmCounts, Observations, ShadowCounts, Stratum
from onecommit.strategies import weights
from onecommit.vocabulary import CHALLENGER, CHAMPION, TrafficPolicy

# The variants a rollout compares; requests served by any other name are not judged.
ARMS = (CHAMPION, CHALLENGER)


@dataclass(frozen=True)
class Split:
    """Revisions `first` to `last` of desired state, all routing this share to the
    challenger."""

    first: int
    last: int
    challenger_weight: float


def splits(policies: Sequence[tuple[int, TrafficPolicy]]) -> list[Split]:
    """Consecutive revisions whose policies route the same share to the challenger form one
    split (a pin or a sticky key changed, not the step); a share that comes back later is
    another step, so another split. `policies` is (revision, policy in force), oldest first."""
    found: list[Split] = []
    for revision, policy in policies:
        weight = weights(policy)[CHALLENGER]
        if found and found[-1].challenger_weight == weight:
            found[-1] = Split(found[-1].first, revision, weight)
        else:
            found.append(Split(revision, revision, weight))
    return found


def stratum_of(windows: Sequence[Split], revision: int) -> int | None:
    """The index of the split a revision falls in; None outside the window (a revision the
    history read did not reach yet: left for the next look)."""
    index = bisect_right([s.first for s in windows], revision) - 1
    if index < 0 or revision > windows[index].last:
        return None
    return index


# (revision, arm, counts of ArmCounts' fields) as the prediction log's grouped queries give them.
Tally = tuple[int, str, Mapping[str, int | float]]


def observed(windows: Sequence[Split], tallies: Iterable[Tally],
             latencies: Mapping[tuple[int, str], list[float]],
             shadow: ShadowCounts) -> Observations:
    """The per-revision counts summed into their split's stratum, per arm."""
    sums: dict[tuple[int, str], dict[str, int | float]] = {
        (i, arm): {} for i in range(len(windows)) for arm in ARMS}
    for revision, arm, counts in tallies:
        index = stratum_of(windows, revision)
        if index is None or arm not in ARMS:
            continue
        summed = sums[index, arm]
        for field, value in counts.items():
            summed[field] = summed.get(field, 0) + value

    def arm_counts(index: int, arm: str) -> ArmCounts:
        return ArmCounts.model_validate({**sums[index, arm],
                                         "latencies_ms": latencies.get((index, arm), [])})

    return Observations(strata=[
        Stratum(challenger_weight=split.challenger_weight, champion=arm_counts(i, CHAMPION),
                challenger=arm_counts(i, CHALLENGER))
        for i, split in enumerate(windows)], shadow=shadow)
