"""What a model spec may name, as data: task types, their metrics, the built-in trainers and
data sets, and the outputs a served model answers with. No heavy imports: the sync validates
specs with this, and the training code computes what it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class Metric:
    name: str
    # Which way is better: the gate's min/max and the regression against the champion follow.
    higher_is_better: bool
    # Computed from the `probabilities` output rather than the predicted label.
    needs_probabilities: bool = False


METRICS: dict[Task, dict[str, Metric]] = {
    "binary": {m.name: m for m in (Metric("accuracy", True), Metric("f1", True),
                                   Metric("roc_auc", True, needs_probabilities=True))},
    "multiclass": {m.name: m for m in (Metric("accuracy", True), Metric("f1_macro", True))},
    "regression": {m.name: m for m in (Metric("rmse", False), Metric("mae", False),
                                       Metric("r2", True))},
}
# The metric a candidate is compared with the champion on, unless the spec names another.
PRIMARY_METRIC: dict[Task, str] = {"binary": "accuracy", "multiclass": "accuracy",
                                   "regression": "rmse"}

# The serving convention every model follows (the ONNX export names them so; a user's own ONNX
# model must too): a classifier answers `label` (the class, an integer) and may answer
# `probabilities` ([rows, classes]); a regressor answers `prediction`. The gateway judges
# feedback against the first element of whichever of the two a model answers.
LABEL, PROBABILITIES, PREDICTION = "label", "probabilities", "prediction"


def prediction_output(task: Task) -> str:
    return PREDICTION if task == "regression" else LABEL


# Built-in trainers: the estimator class for classification and for regression (None: not
# for that kind of task). Module paths, imported only when training.
TRAINERS: dict[str, tuple[str | None, str | None]] = {
    "logistic_regression": ("sklearn.linear_model:LogisticRegression", None),
    "linear_regression": (None, "sklearn.linear_model:LinearRegression"),
    "ridge": (None, "sklearn.linear_model:Ridge"),
    "random_forest": ("sklearn.ensemble:RandomForestClassifier",
                      "sklearn.ensemble:RandomForestRegressor"),
    "gradient_boosting": ("sklearn.ensemble:GradientBoostingClassifier",
                          "sklearn.ensemble:GradientBoostingRegressor"),
    "xgboost": ("xgboost:XGBClassifier", "xgboost:XGBRegressor"),
    "lightgbm": ("lightgbm:LGBMClassifier", "lightgbm:LGBMRegressor"),
}


def trainer_class(trainer: str, task: Task) -> str | None:
    classifier, regressor = TRAINERS[trainer]
    return regressor if task == "regression" else classifier


def trainers_for(task: Task) -> list[str]:
    return [name for name in TRAINERS if trainer_class(name, task) is not None]


# scikit-learn's bundled data sets, for demos, and the task each one is.
BUILTIN_DATASETS: dict[str, Task] = {"breast_cancer": "binary", "iris": "multiclass",
                                     "wine": "multiclass", "diabetes": "regression"}
DATA_SUFFIXES = (".csv", ".parquet")
