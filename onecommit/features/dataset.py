"""The demo data set as Feast sees it: one row per patient, keyed by its row number.

Imported in both the platform and the `feast` environment, so numpy and scikit-learn only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

ENTITY = "patient_id"
FEATURE_VIEW = "patient_measurements"
FEATURE_SERVICE = "patient_vector"
OFFLINE_FILE = "patients.parquet"
# Every row is one observation made at the same, fixed time: the offline file is the same bytes
# on every machine, and any later point-in-time join sees every row.
OBSERVED_AT = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Patients:
    ids: NDArray[np.int64]
    features: NDArray[np.float64]
    labels: NDArray[np.int64]


def feature_names() -> list[str]:
    """Column names in the model's input order (`mean radius` → `mean_radius`)."""
    from sklearn.datasets import load_breast_cancer  # not at import: the CLI loads this module

    return [str(name).replace(" ", "_") for name in load_breast_cancer().feature_names]


def feature_refs() -> list[str]:
    """`view:feature` references in the model's input order, as the feature server wants them."""
    return [f"{FEATURE_VIEW}:{name}" for name in feature_names()]


def patients() -> Patients:
    """The rows the platform trains on (a spec's `builtin:breast_cancer` data is the same set)."""
    from sklearn.datasets import load_breast_cancer

    features, labels = load_breast_cancer(return_X_y=True)
    return Patients(np.arange(len(labels), dtype=np.int64), features.astype(np.float64),
                    labels.astype(np.int64))


def digest(rows: Patients) -> str:
    """A fingerprint of the feature data and its timestamps: equal means nothing to materialise."""
    hasher = hashlib.sha256(OBSERVED_AT.isoformat().encode())
    for array in (rows.ids, rows.features):
        hasher.update(np.ascontiguousarray(array).tobytes())
    hasher.update(",".join(feature_names()).encode())
    return hasher.hexdigest()


def as_columns(rows: Patients) -> dict[str, Any]:
    """The offline source's columns: entity, timestamps and one column per feature."""
    count = len(rows.ids)
    columns: dict[str, Any] = {
        ENTITY: rows.ids,
        "event_timestamp": [OBSERVED_AT] * count,
        "created": [OBSERVED_AT] * count,
    }
    for index, name in enumerate(feature_names()):
        columns[name] = rows.features[:, index]
    return columns
