"""Train and evaluate a candidate on a data set that ships with scikit-learn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.base import ClassifierMixin
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from onecommit.features import offline, state
from onecommit.lifecycle.spec import Algorithm, Dataset, QualityGate
from onecommit.settings import Settings

_ESTIMATORS: dict[str, type[ClassifierMixin]] = {
    "logistic_regression": LogisticRegression,
    "random_forest": RandomForestClassifier,
    "gradient_boosting": GradientBoostingClassifier,
}


@dataclass(frozen=True)
class Split:
    x_train: NDArray[Any]
    x_holdout: NDArray[Any]
    y_train: NDArray[Any]
    y_holdout: NDArray[Any]


def load_split(dataset: Dataset) -> Split:
    """The same holdout for the candidate and the champion: seed and size come from the spec."""
    features, labels = load_breast_cancer(return_X_y=True)
    return _split(features, labels, dataset)


def training_split(settings: Settings, dataset: Dataset) -> tuple[Split, str]:
    """The split to train on and where its features came from: Feast's offline store (a
    point-in-time join) while the Optional layer is attached, else the data set. Both hold the
    same rows in the same order, so the holdout stays the champion's."""
    feature_settings = state.attached_settings(settings)
    if feature_settings is None:
        return load_split(dataset), "dataset"
    return _split(*offline.training_set(feature_settings), dataset), "feast"


def _split(features: NDArray[Any], labels: NDArray[Any], dataset: Dataset) -> Split:
    parts = train_test_split(features.astype(np.float32), labels, test_size=dataset.test_size,
                             random_state=dataset.seed, stratify=labels)
    return Split(*parts)


def build_pipeline(algorithm: Algorithm, seed: int) -> Pipeline:
    estimator_type = _ESTIMATORS[algorithm.name]
    params: dict[str, Any] = dict(algorithm.params)
    if "random_state" in estimator_type().get_params():
        params.setdefault("random_state", seed)
    try:
        estimator = estimator_type(**params)
    except TypeError as error:
        raise ValueError(f"algorithm.params for {algorithm.name}: {error}") from None
    return Pipeline([("scale", StandardScaler()), ("model", estimator)])


def train(algorithm: Algorithm, split: Split, seed: int) -> Pipeline:
    return build_pipeline(algorithm, seed).fit(split.x_train, split.y_train)


def evaluate(model: Any, split: Split) -> dict[str, float]:
    """Holdout metrics of any fitted classifier with predict/predict_proba."""
    predicted = model.predict(split.x_holdout)
    scores = model.predict_proba(split.x_holdout)[:, 1]
    return {
        "accuracy": float(accuracy_score(split.y_holdout, predicted)),
        "roc_auc": float(roc_auc_score(split.y_holdout, scores)),
        "f1": float(f1_score(split.y_holdout, predicted)),
    }


def gate(gate: QualityGate, candidate: dict[str, float],
         champion: dict[str, float] | None) -> list[str]:
    """Reasons the candidate fails the quality gate; empty when it passes."""
    failures = []
    if candidate["accuracy"] < gate.min_accuracy:
        failures.append(f"accuracy {candidate['accuracy']:.4f} < {gate.min_accuracy}")
    if candidate["roc_auc"] < gate.min_roc_auc:
        failures.append(f"roc_auc {candidate['roc_auc']:.4f} < {gate.min_roc_auc}")
    if champion is not None:
        regression = champion["accuracy"] - candidate["accuracy"]
        if regression > gate.max_regression:
            failures.append(f"accuracy regresses {regression:.4f} against the champion "
                            f"(allowed {gate.max_regression})")
    return failures
