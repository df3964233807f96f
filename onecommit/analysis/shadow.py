"""Shadow judged on correctness: both answers to a mirrored request are judged against the
same label, so the comparison is paired and no user is exposed to the challenger.

- McNemar's exact test (McNemar 1947): of the discordant pairs (exactly one of the two right),
  the challenger's share is Binomial(b + c, ½) when both are equally accurate. A fixed-sample
  test, reported beside the sequential one.
- The decision is the paired sequential test: the per-request difference d = challenger right -
  champion right (-1, 0 or 1) has the accuracy difference as its mean, and `MeanBound` gives
  its anytime-valid confidence sequence, judged for non-inferiority within the margin.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import binomtest

from onecommit.analysis.sequential import MeanBound, SequenceState, Sums


@dataclass(frozen=True)
class PairedOutcomes:
    """Labelled mirrored requests by which of the two answers was right."""

    both: int
    champion_only: int
    challenger_only: int
    neither: int

    def __post_init__(self) -> None:
        if min(self.both, self.champion_only, self.challenger_only, self.neither) < 0:
            raise ValueError("paired counts must not be negative")

    @property
    def pairs(self) -> int:
        return self.both + self.champion_only + self.challenger_only + self.neither


def mcnemar_exact(pairs: PairedOutcomes) -> float:
    """The two-sided exact McNemar p-value (1.0 with no discordant pair)."""
    discordant = pairs.champion_only + pairs.challenger_only
    if discordant == 0:
        return 1.0
    return float(binomtest(pairs.challenger_only, discordant, 0.5).pvalue)


def paired_comparison(pairs: PairedOutcomes, alpha: float, margin: float) -> SequenceState:
    """Challenger's accuracy minus champion's on the same requests, judged for
    non-inferiority within `margin`."""
    test = MeanBound(alpha, bound=-margin, higher_is_better=True)
    discordant = pairs.champion_only + pairs.challenger_only
    test.update(Sums.of(pairs.pairs, pairs.challenger_only - pairs.champion_only, discordant))
    return test.state()
