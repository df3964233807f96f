"""The churn model's training code: onecommit calls `train(data, params)` with the training rows
and the spec's `training.params`, and serves what it returns (exported to ONNX)."""

from __future__ import annotations

from typing import Any

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from training.churn_features import balanced_weights


def train(data: Any, params: dict[str, Any]) -> Pipeline:
    """Pairwise feature interactions and a class-balanced logistic regression."""
    model = Pipeline([
        ("interactions", PolynomialFeatures(degree=int(params.get("degree", 2)),
                                            include_bias=False)),
        ("scale", StandardScaler()),
        ("classify", LogisticRegression(C=float(params.get("C", 1.0)), max_iter=2000,
                                        class_weight=balanced_weights(data.y))),
    ])
    return model.fit(data.x, data.y)
