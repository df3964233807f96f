"""The two mixtures every sequential test here is built on, vectorised over numpy arrays (the
bench judges ten thousand rollouts at once with the same functions a single rollout uses).

- Robbins' **normal mixture**, one-sided (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon
  2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist.
  49(2), §3 and Proposition 6). For a process S with variance process V such that
  exp(λS - λ²V/2) is a (super)martingale for every λ ≥ 0, mixing λ over a half-normal of
  precision rho gives the test martingale
      M+ = 2 sqrt(rho / (V + rho)) · exp(S² / (2 (V + rho))) · Φ(S / sqrt(V + rho)),
  and Ville's inequality gives P(∃t: M+_t ≥ 1/alpha) ≤ alpha: S stays below the boundary u(V)
  where M+ = 1/alpha at every time with probability ≥ 1 - alpha. M+ is the e-value (the
  mixture likelihood ratio of the mSPRT, Johari et al. 2022, over one side). Each decision
  is one-sided (shown within a margin, or shown beyond it), so each has its own alpha; the
  two bounds together are a 1 - 2 alpha two-sided sequence.
- The **beta-binomial mixture** for a proportion (Robbins 1970; Howard et al. 2021 §3.1): the
  Bayes factor of a Beta(a, b) mixture against the point null p0,
      E(p0) = B(a + s, b + n - s) / B(a, b) / (p0^s (1 - p0)^(n - s)),
  is a test martingale under p = p0; its confidence sequence is every p0 with E(p0) < 1/alpha
  (two-sided at alpha, so each of its bounds holds with probability ≥ 1 - alpha too).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar
from scipy.special import betaln, log_ndtr, xlogy

Array = NDArray[np.float64]

# Bisection halves the bracket this often: 2^-60 of [0, 1] is below a float's resolution there.
BISECTIONS = 60


@cache
def tightest_ratio(alpha: float) -> float:
    """The ratio V/rho at which the normal mixture boundary, in units of sqrt(V), is narrowest:
    the minimiser of (1 + 1/r) · log((1 + r) / alpha²); about 8 at alpha = 0.05. A test tuned
    for an intrinsic time V* takes rho = V* / tightest_ratio(alpha)."""
    def squared_width(log_r: float) -> float:
        r = float(np.exp(log_r))
        return (1 + 1 / r) * (float(np.log1p(r)) - 2 * float(np.log(alpha)))

    found = minimize_scalar(squared_width, bounds=(-5.0, 10.0), method="bounded")
    return float(np.exp(float(found.x)))


def log_mixture(sums: ArrayLike, intrinsic: ArrayLike, rho: ArrayLike) -> Array:
    """log M+: the one-sided (half-normal) mixture martingale's logarithm at S = sums,
    V = intrinsic (Howard et al. 2021, Proposition 6). It grows with evidence of a positive
    drift; at -S it is its mirror image, for evidence of a negative one."""
    s, v, r = (np.asarray(x, dtype=float) for x in (sums, intrinsic, rho))
    w = v + r
    return np.asarray(np.log(2.0) + 0.5 * np.log(r / w) + s ** 2 / (2 * w)
                      + log_ndtr(s / np.sqrt(w)), dtype=float)


def radius(intrinsic: ArrayLike, alpha: float, rho: ArrayLike) -> Array:
    """u(V): the one-sided normal mixture boundary at intrinsic time V with mixing precision
    rho, where M+ reaches 1/alpha: S crosses it upwards at some time with probability at most
    alpha, and -S likewise. No closed form: found by bisection between 0 (where M+ is at most
    1) and a value where M+ is at least 1/alpha."""
    v, r = np.asarray(intrinsic, dtype=float), np.asarray(rho, dtype=float)
    w = v + r
    level = -np.log(alpha)
    high = np.sqrt(2 * w * (level + 0.5 * np.log(w / r)))

    def excess(s: Array) -> Array:
        return np.asarray(log_mixture(s, v, r) - level, dtype=float)

    return bisect(excess, np.zeros_like(w), high)


def bisect(gap: Callable[[Array], Array], low: ArrayLike, high: ArrayLike) -> Array:
    """Elementwise root of an increasing `gap` with gap(low) ≤ 0 ≤ gap(high)."""
    lo, hi = np.array(low, dtype=float), np.array(high, dtype=float)
    for _ in range(BISECTIONS):
        middle = 0.5 * (lo + hi)
        above = gap(middle) > 0
        hi = np.where(above, middle, hi)
        lo = np.where(above, lo, middle)
    return np.asarray(0.5 * (lo + hi), dtype=float)


def log_beta_marginal(successes: ArrayLike, trials: ArrayLike, prior: tuple[float, float]
                      ) -> Array:
    """log of the Beta(a, b) mixture's likelihood of s successes in n trials (the
    beta-binomial's, without the binomial coefficient, which cancels in the Bayes factor)."""
    s, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    a, b = prior
    return np.asarray(betaln(a + s, b + n - s) - betaln(a, b), dtype=float)


def log_likelihood(successes: ArrayLike, trials: ArrayLike, p: ArrayLike) -> Array:
    """log p^s (1 - p)^(n - s), with 0·log 0 = 0."""
    s, n, q = (np.asarray(x, dtype=float) for x in (successes, trials, p))
    return np.asarray(xlogy(s, q) + xlogy(n - s, 1 - q), dtype=float)


def beta_interval(successes: ArrayLike, trials: ArrayLike, alpha: float,
                  prior: tuple[float, float]) -> tuple[Array, Array]:
    """The beta-binomial confidence sequence at s successes in n trials: every p0 whose Bayes
    factor is below 1/alpha. Bounds are found by bisection on each side of the estimate."""
    s, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    level = -np.log(alpha) - log_beta_marginal(s, n, prior)
    estimate = np.where(n > 0, s / np.maximum(n, 1), 0.5)

    def below(p: Array) -> Array:  # increasing in p up to the estimate
        return np.asarray(level + log_likelihood(s, n, p), dtype=float)

    def above(p: Array) -> Array:  # increasing in p past the estimate
        return np.asarray(-log_likelihood(s, n, p) - level, dtype=float)

    lower = np.where(s > 0, bisect(below, np.zeros_like(s), estimate), 0.0)
    upper = np.where(s < n, bisect(above, estimate, np.ones_like(s)), 1.0)
    return lower, upper
