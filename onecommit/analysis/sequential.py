"""Anytime-valid sequential tests: each an object fed counts (as many looks as one likes, in
any batches), which reports at every look its estimate, a confidence sequence, an e-value and
an outcome. Every array is vectorised: a test of shape (R,) is R independent tests, which is
how the bench judges ten thousand simulated rollouts at once.

A test judges a statistic against a threshold from one side:
- pass: the whole interval is on the good side of the threshold (for a comparison with the
  champion: non-inferiority within the margin is established);
- fail: the whole interval is on the bad side (the challenger is worse beyond the margin, or
  beyond the bound, with confidence);
- undecided otherwise.
Each bound of the interval holds at every time at once with probability ≥ 1 - alpha, so each of
pass and fail is wrong with probability ≤ alpha however often it is looked at. The e-value is
the mixture martingale against "the statistic sits at the threshold", on the estimate's side;
the outcome is decided exactly when it reaches 1/alpha (a bound then crosses the threshold).
Each look's bounds are intersected with the previous looks' (Ville's running intersection,
itself a confidence sequence), so a decision once reached stays reached.

Methods:
- `MeanComparison`, challenger minus champion: the asymptotic confidence sequence of
  Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2024, "Time-uniform central limit theory and
  asymptotic confidence sequences", Ann. Statist.) for the difference in means, built on
  Robbins' normal mixture (`boundaries`). Traffic splits change between rollout steps, so
  the counts are kept per stratum (one per split): within a stratum the difference in means is
  asymptotically linear with a constant variance, and the strata's information-weighted sum is
  a martingale across them (Gaussian approximation; Netflix's and Optimizely's production
  tests rest on the same, Lindon et al. KDD 2022, Johari et al. Oper. Res. 2022). Variances
  are plug-in, pooled per arm across strata (a Bernoulli's shrunk to (s + ½)/(n + 1) so that
  zero errors do not give zero variance); no interval before `min_samples` per arm.
- `MeanBound`, one mean against a fixed bound: the same asymptotic confidence sequence for one
  sample (the regression absolute error; the paired differences of shadow correctness).
- `ProportionBound`, one proportion against a fixed bound: the beta-binomial mixture, exact at
  every sample size (error rate, the share of slow requests, accuracy floors).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

from onecommit.analysis.boundaries import (
    Array,
    beta_interval,
    log_beta_marginal,
    log_likelihood,
    log_mixture,
    radius,
    tightest_ratio,
)

FAIL, UNDECIDED, PASS = -1, 0, 1
Outcomes = NDArray[np.int8]

# Asymptotic sequences are tightest about this many observations per arm: about where a large
# regression (5 points of accuracy at 90 %) is caught. Ten times later they are 9 % wider than
# a sequence tuned there, a hundred times later 22 % (the normal mixture's width grows like
# sqrt(log) past its tuning point, and fast before it).
TUNED_SAMPLES = 1000
# The asymptotic sequences give no interval before this many observations per arm: their
# Gaussian approximation, and the plug-in variance above all, is not to be trusted on fewer (a
# 90 % accurate arm shows 49 right of 50 one time in 30, and a variance a third of the truth).
# ville's asymptotic sequences wait for as many.
MIN_SAMPLES = 100
# A uniform prior for the beta-binomial mixture: it moves the interval's width, never its
# validity.
UNIFORM = (1.0, 1.0)


@dataclass(frozen=True)
class Sums:
    """What a test needs of a sample: its size, the sum and the sum of squares of its values
    (for 0/1 values the sum of squares is the sum)."""

    n: Array
    total: Array
    squares: Array

    @classmethod
    def of(cls, n: ArrayLike, total: ArrayLike, squares: ArrayLike | None = None) -> Sums:
        count = np.asarray(n, dtype=float)
        summed = np.asarray(total, dtype=float)
        if np.any(count < 0):
            raise ValueError("a sample's size must not be negative")
        return cls(count, summed, summed if squares is None else np.asarray(squares, float))

    @classmethod
    def bernoulli(cls, n: ArrayLike, successes: ArrayLike) -> Sums:
        if np.any(np.asarray(successes) < 0) or np.any(np.asarray(successes) > np.asarray(n)):
            raise ValueError("successes must be between 0 and the number of trials")
        return cls.of(n, successes)


@dataclass(frozen=True)
class SequenceState:
    """A test at one look; arrays of the test's shape."""

    estimate: Array
    lower: Array
    upper: Array
    e_value: Array
    outcome: Outcomes
    samples: Array

    def narrowed(self, lower: ArrayLike, upper: ArrayLike, threshold: float,
                 higher_is_better: bool) -> SequenceState:
        """Intersected with earlier bounds (Ville's running intersection: still a confidence
        sequence, so a decision once reached stays reached), and judged again."""
        low = np.maximum(self.lower, np.asarray(lower, dtype=float))
        high = np.minimum(self.upper, np.asarray(upper, dtype=float))
        return replace(self, lower=low, upper=high,
                       outcome=judge(low, high, threshold, higher_is_better))


def judge(lower: Array, upper: Array, threshold: float, higher_is_better: bool) -> Outcomes:
    """PASS when the interval is wholly on the good side of the threshold, FAIL when wholly
    on the bad side, UNDECIDED otherwise."""
    above, below = lower > threshold, upper < threshold
    good, bad = (above, below) if higher_is_better else (below, above)
    return np.where(good, PASS, np.where(bad, FAIL, UNDECIDED)).astype(np.int8)


def _variance(sums: Sums, bernoulli: bool) -> Array:
    n = sums.n
    if bernoulli:
        shrunk = (sums.total + 0.5) / (n + 1)
        return np.asarray(shrunk * (1 - shrunk), dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = (sums.squares - sums.total ** 2 / n) / (n - 1)
    # Identical values (a perfect regressor) still carry a little uncertainty.
    return np.where(n >= 2, np.maximum(spread, 1e-12), np.nan)


def _normal_state(estimate: Array, information: Array, tuned_information: Array,
                  ready: NDArray[np.bool_], alpha: float, threshold: float,
                  higher_is_better: bool, samples: Array) -> SequenceState:
    """The normal mixture's interval and e-value for an estimate with the given information
    (inverse variance), the mixture tuned for `tuned_information`."""
    ok = ready & (information > 0) & np.isfinite(estimate)
    info = np.where(ok, information, 1.0)
    rho = np.where(ok, tuned_information, 1.0) / tightest_ratio(alpha)
    half = radius(info, alpha, rho) / info
    center = np.where(ok, estimate, 0.0)
    lower = np.where(ok, center - half, -np.inf)
    upper = np.where(ok, center + half, np.inf)
    # The e-value on the estimate's side of the threshold: the one its decision would take.
    log_e = log_mixture(np.abs(info * (center - threshold)), info, rho)
    return SequenceState(
        estimate=np.where(ok, estimate, np.nan), lower=lower, upper=upper,
        e_value=np.where(ok, np.exp(np.minimum(log_e, 700.0)), 1.0),
        outcome=judge(lower, upper, threshold, higher_is_better), samples=samples)


class _Sequential:
    """What every test shares: its side, its threshold, and the running intersection of its
    bounds over the looks so far (each `state()` is a look)."""

    def __init__(self, alpha: float, threshold: float, higher_is_better: bool,
                 shape: tuple[int, ...]) -> None:
        if not 0 < alpha < 1:
            raise ValueError("need 0 < alpha < 1")
        self.alpha, self.threshold, self.higher_is_better = alpha, threshold, higher_is_better
        self._lower, self._upper = np.full(shape, -np.inf), np.full(shape, np.inf)

    def _looked(self, current: SequenceState) -> SequenceState:
        state = current.narrowed(self._lower, self._upper, self.threshold,
                                 self.higher_is_better)
        self._lower, self._upper = state.lower, state.upper
        return state


class MeanComparison(_Sequential):
    """Challenger minus champion, the difference of two means, judged for non-inferiority
    within `margin` (see the module's docstring for the method). `higher_is_better` says which
    way is worse: accuracy (True), error rate and absolute error (False)."""

    def __init__(self, alpha: float, margin: float, higher_is_better: bool, bernoulli: bool,
                 strata: int, shape: tuple[int, ...] = (),
                 tuned_samples: int = TUNED_SAMPLES, min_samples: int = MIN_SAMPLES) -> None:
        if margin < 0 or strata < 1:
            raise ValueError("need margin ≥ 0 and at least one stratum")
        super().__init__(alpha, -margin if higher_is_better else margin, higher_is_better,
                         shape)
        self.bernoulli = bernoulli
        self.tuned_samples, self.min_samples = tuned_samples, min_samples
        # [champion, challenger] x (n, sum, squares) x shape x strata
        self._sums = np.zeros((2, 3, *shape, strata))

    def update(self, champion: Sums, challenger: Sums, stratum: ArrayLike = 0) -> None:
        """Add new observations of both arms to a stratum (for a test of shape (R,), `stratum`
        may say one per test)."""
        strata = self._sums.shape[-1]
        index = np.asarray(stratum)
        if np.any(index < 0) or np.any(index >= strata):
            raise ValueError(f"stratum must be in [0, {strata})")
        into = (np.arange(strata) == index[..., None]).astype(float)
        for arm, sums in enumerate((champion, challenger)):
            for field, values in enumerate((sums.n, sums.total, sums.squares)):
                self._sums[arm, field] += np.asarray(values, dtype=float)[..., None] * into

    def _arm(self, arm: int) -> tuple[Sums, Array]:
        n, total, squares = self._sums[arm]
        pooled = Sums(n.sum(-1), total.sum(-1), squares.sum(-1))
        return pooled, _variance(pooled, self.bernoulli)

    def state(self) -> SequenceState:
        (champion, var_a), (challenger, var_b) = self._arm(0), self._arm(1)
        n_a, n_b = self._sums[0, 0], self._sums[1, 0]
        both = (n_a > 0) & (n_b > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            info = np.where(both, 1 / (var_a[..., None] / n_a + var_b[..., None] / n_b), 0.0)
            means = self._sums[1, 1] / n_b - self._sums[0, 1] / n_a
            information = info.sum(-1)
            estimate = np.where(both, info * means, 0.0).sum(-1) / information
        ready = (champion.n >= self.min_samples) & (challenger.n >= self.min_samples)
        tuned = self.tuned_samples / (var_a + var_b)
        return self._looked(_normal_state(estimate, information, tuned, ready, self.alpha,
                                          self.threshold, self.higher_is_better,
                                          champion.n + challenger.n))


class MeanBound(_Sequential):
    """One mean against a fixed bound (the absolute error's mean, the paired difference of
    shadow correctness), by the asymptotic confidence sequence for one sample."""

    def __init__(self, alpha: float, bound: float, higher_is_better: bool,
                 shape: tuple[int, ...] = (), tuned_samples: int = TUNED_SAMPLES,
                 min_samples: int = MIN_SAMPLES) -> None:
        super().__init__(alpha, bound, higher_is_better, shape)
        self.tuned_samples, self.min_samples = tuned_samples, min_samples
        self._sums = np.zeros((3, *shape))

    def update(self, sample: Sums) -> None:
        for field, values in enumerate((sample.n, sample.total, sample.squares)):
            self._sums[field] += np.asarray(values, dtype=float)

    def state(self) -> SequenceState:
        sums = Sums(*self._sums)
        variance = _variance(sums, bernoulli=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            estimate = sums.total / sums.n
            information = sums.n / variance
        return self._looked(_normal_state(
            estimate, np.nan_to_num(information), self.tuned_samples / variance,
            sums.n >= self.min_samples, self.alpha, self.threshold, self.higher_is_better,
            sums.n))


class ProportionBound(_Sequential):
    """One proportion against a fixed bound (an error rate at most 1 %, a share of requests
    slower than the p95 bound at most 5 %, an accuracy floor), by the beta-binomial mixture:
    exact at every sample size."""

    def __init__(self, alpha: float, bound: float, higher_is_better: bool,
                 shape: tuple[int, ...] = (), prior: tuple[float, float] = UNIFORM) -> None:
        if not 0 <= bound <= 1:
            raise ValueError("need 0 ≤ bound ≤ 1")
        super().__init__(alpha, bound, higher_is_better, shape)
        self.prior = prior
        self._successes, self._trials = np.zeros(shape), np.zeros(shape)

    def update(self, trials: ArrayLike, successes: ArrayLike) -> None:
        sample = Sums.bernoulli(trials, successes)
        self._trials += sample.n
        self._successes += sample.total

    def state(self) -> SequenceState:
        s, n = self._successes, self._trials
        lower, upper = beta_interval(s, n, self.alpha, self.prior)
        log_e = log_beta_marginal(s, n, self.prior) - log_likelihood(s, n, self.threshold)
        with np.errstate(divide="ignore", invalid="ignore"):
            estimate = np.where(n > 0, s / n, np.nan)
        return self._looked(SequenceState(
            estimate=estimate, lower=lower, upper=upper,
            e_value=np.exp(np.minimum(log_e, 700.0)),
            outcome=judge(lower, upper, self.threshold, self.higher_is_better), samples=n))
