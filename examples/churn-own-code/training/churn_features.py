"""A helper module beside the training function: training code may import its own modules."""

from __future__ import annotations

from typing import Any

import numpy as np


def balanced_weights(labels: Any) -> dict[int, float]:
    """Each class weighted by the inverse of its share, so the rare churners count as much."""
    classes, counts = np.unique(labels, return_counts=True)
    return {int(c): len(labels) / (len(classes) * n) for c, n in zip(classes, counts, strict=True)}
