"""Before labels arrive: what can be judged from the answers and inputs alone.

- Confidence-based performance estimation (CBPE; NannyML's name for it, after the expected
  accuracy of a calibrated classifier, Guo et al. 2017 "On calibration of modern neural
  networks"): a calibrated classifier answering its most probable class is right with that
  class's probability, so the sum of those probabilities is the expected number of right
  answers. Its sequential tests treat that sum as the successes of a proportion.
- Input drift per feature against the training rows: the population stability index over the
  training data's deciles (Siddiqi 2006, "Credit risk scorecards": under 0.1 stable, 0.1 to 0.25
  moderate, over 0.25 a shift) and the two-sample Kolmogorov-Smirnov test.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict
from scipy.stats import ks_2samp

# Decile bins of the training data; an empty bin counts as this share, so the index stays
# finite (the usual convention).
BINS = 10
EMPTY_SHARE = 1e-4


class FeatureDrift(BaseModel):
    """One feature's live values against its training values."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    feature: str
    psi: float
    ks_statistic: float
    ks_p_value: float
    live_rows: int


def expected_correct(probabilities: ArrayLike) -> float:
    """Σ over answers of the answered class's probability: rows of class probabilities, or a
    binary classifier's positive-class probability per answer."""
    p = np.asarray(probabilities, dtype=float)
    if p.ndim == 1:
        p = np.stack([1 - p, p], axis=1)
    if p.ndim != 2 or np.any(p < 0) or np.any(p > 1) or not np.allclose(p.sum(axis=1), 1,
                                                                          atol=1e-3):
        raise ValueError("probabilities must be rows of class probabilities summing to 1")
    return float(p.max(axis=1).sum())


def population_stability_index(training: ArrayLike, live: ArrayLike) -> float:
    """PSI of live values against training values, over the training data's deciles."""
    expected, actual = np.asarray(training, dtype=float), np.asarray(live, dtype=float)
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, BINS + 1)[1:-1]))
    shares = [np.bincount(np.searchsorted(edges, values, side="right"),
                          minlength=edges.size + 1) / values.size
              for values in (expected, actual)]
    base, now = (np.maximum(share, EMPTY_SHARE) for share in shares)
    return float(np.sum((now - base) * np.log(now / base)))


def feature_drift(training: ArrayLike, live: ArrayLike,
                  features: Sequence[str]) -> list[FeatureDrift]:
    """PSI and KS per feature of live rows against training rows (both rows x features)."""
    train, rows = np.asarray(training, dtype=float), np.asarray(live, dtype=float)
    if train.ndim != 2 or rows.ndim != 2 or not (
            train.shape[1] == rows.shape[1] == len(features)):
        raise ValueError("training and live rows must be 2-D with one column per feature")
    if min(train.shape[0], rows.shape[0]) < 2:
        raise ValueError("drift needs at least two training rows and two live rows")
    found = []
    for column, name in enumerate(features):
        ks = ks_2samp(train[:, column], rows[:, column])
        found.append(FeatureDrift(
            feature=name, psi=population_stability_index(train[:, column], rows[:, column]),
            ks_statistic=float(ks.statistic), ks_p_value=float(ks.pvalue),
            live_rows=rows.shape[0]))
    return found
