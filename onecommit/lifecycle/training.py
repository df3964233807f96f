"""Train a candidate the way its spec says (a built-in trainer, or the user's own function in
the commit), export it to ONNX, and judge it on the holdout: the same ONNX model that will be
served is the one evaluated, the champion's ONNX model on the same rows beside it.

The contract of a user's training function (`training.entrypoint: path/file.py:function`):

    def train(data: onecommit.lifecycle.training.TrainingData, params: dict) -> model

It receives the training rows (never the holdout) and the spec's `training.params`, and returns
a fitted scikit-learn estimator or pipeline, an XGBoost or LightGBM model (their scikit-learn
classes: XGBClassifier, LGBMRegressor, ...), or an `onnx.ModelProto` that follows the serving
convention (`catalog.py`). Its file is imported from the commit's tree, with the tree's root on
`sys.path`, so it may import its own modules beside it.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from onecommit.errors import OnecommitError
from onecommit.lifecycle import containment, export
from onecommit.lifecycle.catalog import (
    LABEL,
    METRICS,
    PREDICTION,
    PROBABILITIES,
    Task,
    trainer_class,
)
from onecommit.lifecycle.data import Split
from onecommit.lifecycle.spec import ModelSpec, QualityGate, Training

# Linear models learn better on standardised features; trees do not need it.
_SCALED = {"logistic_regression", "linear_regression", "ridge"}


class TrainingError(OnecommitError):
    """Training could not produce a model; the message names the spec field or the file."""


@dataclass(frozen=True)
class TrainingData:
    """What a user's training function receives."""

    x: NDArray[np.float32]
    y: NDArray[Any]
    feature_names: list[str]
    task: Task
    seed: int
    classes: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, spec: ModelSpec, x: NDArray[np.float32], y: NDArray[Any],
           feature_names: list[str]) -> TrainingData:
        """The training rows of a spec's split, with the classes a classifier learns."""
        assert spec.data is not None
        classes = sorted(int(c) for c in np.unique(y)) if spec.task != "regression" else []
        return cls(x, y, feature_names, spec.task, spec.data.seed, classes)


def _import(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def estimator(training: Training, task: Task, seed: int) -> Any:
    """The built-in trainer's estimator with the spec's params (a scaler first for linear
    models); TrainingError naming `training.params` when the estimator refuses one."""
    assert training.trainer is not None
    path = trainer_class(training.trainer, task)
    assert path is not None  # the spec checked the trainer suits the task
    estimator_type = _import(path)
    params: dict[str, Any] = dict(training.params)
    if "random_state" in inspect.signature(estimator_type).parameters:
        params.setdefault("random_state", seed)
    if training.trainer == "lightgbm":
        params.setdefault("verbose", -1)
    try:
        model = estimator_type(**params)
    except TypeError as error:
        raise TrainingError(f"training.params for {training.trainer}: {error}") from None
    if training.trainer not in _SCALED:
        return model
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("model", model)])


def entrypoint_problem(training: Training, tree: Path) -> str | None:
    """What is wrong with the entrypoint that can be known without running it: the file, its
    syntax, the function and its parameters. None when it may be called."""
    assert training.entrypoint is not None
    file, name = training.entrypoint.split(":")
    try:
        path = containment.entrypoint_file(training, tree)
    except containment.ContainmentError as error:
        return str(error)
    if not path.is_file():
        return f"training.entrypoint: no file {file} in the commit: commit it, or fix the path"
    try:
        module = ast.parse(path.read_text(), filename=file)
    except (SyntaxError, UnicodeDecodeError) as error:
        return f"training.entrypoint: {file} does not parse: {error}"
    functions = {node.name: node for node in module.body if isinstance(node, ast.FunctionDef)}
    if name not in functions:
        return (f"training.entrypoint: {file} defines no top-level function {name!r}"
                + (f"; it defines {', '.join(functions)}" if functions else ""))
    arguments = functions[name].args
    if len(arguments.posonlyargs) + len(arguments.args) < 2 and arguments.vararg is None:
        return (f"training.entrypoint: {file}:{name} must take (data, params): the training "
                "rows and the spec's training.params")
    return None


def _user_function(training: Training, tree: Path) -> Callable[..., Any]:
    problem = entrypoint_problem(training, tree)
    if problem:
        raise TrainingError(problem)
    assert training.entrypoint is not None
    file, name = training.entrypoint.split(":")
    spec = importlib.util.spec_from_file_location(f"onecommit_user.{Path(file).stem}",
                                                  containment.entrypoint_file(training, tree))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(tree))
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise TrainingError(f"training.entrypoint: importing {file} raised "
                            f"{type(error).__name__}: {error}") from None
    finally:
        sys.path.remove(str(tree))
    function: Callable[..., Any] = getattr(module, name)
    return function


def fit(spec: ModelSpec, rows: TrainingData, tree: Path | None) -> Any:
    """The fitted model, before export."""
    assert spec.training is not None
    training = spec.training
    if training.trainer is not None:
        model = estimator(training, spec.task, rows.seed)
        try:
            return model.fit(rows.x, rows.y)
        except (ValueError, TypeError) as error:
            raise TrainingError(f"training: {training.trainer} failed to fit: {error}") from None
    if tree is None:
        raise TrainingError("training.entrypoint: the commit's tree is not checked out here")
    function = _user_function(training, tree)
    try:
        return function(rows, dict(training.params))
    except Exception as error:
        raise TrainingError(f"training.entrypoint {training.entrypoint} raised "
                            f"{type(error).__name__}: {error}") from None


def exported(spec: ModelSpec, rows: TrainingData, tree: Path | None) -> bytes:
    """Train on the rows and export: the ONNX model to evaluate, register and serve. The
    deploy runs this in the sandbox (`sandbox.py`)."""
    model = fit(spec, rows, tree)
    try:
        proto = export.to_onnx(model, len(rows.feature_names), spec.task)
    except export.ExportError as error:
        assert spec.training is not None
        origin = (f"training.entrypoint {spec.training.entrypoint}" if spec.training.entrypoint
                  else f"training.trainer {spec.training.trainer}")
        raise TrainingError(f"{origin}: the model cannot be served: {error}") from None
    return bytes(proto.SerializeToString())


def candidate(spec: ModelSpec, split: Split, tree: Path | None) -> bytes:
    """Train on the split's training rows and export, in this process: for the platform's own
    trainings (benchmarks, tests); a commit's training runs in the sandbox."""
    rows = TrainingData.of(spec, split.x_train, split.y_train, split.feature_names)
    return exported(spec, rows, tree)


class OnnxModel:
    """An ONNX model in ONNX Runtime, fed rows as its one input's datatype."""

    def __init__(self, onnx_bytes: bytes) -> None:
        import onnxruntime

        self._session = onnxruntime.InferenceSession(onnx_bytes,
                                                     providers=["CPUExecutionProvider"])
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise TrainingError(f"the ONNX model takes {len(inputs)} inputs; a model of a "
                                "table takes one, [rows, features]")
        self.input = inputs[0]

    def outputs(self, rows: NDArray[Any]) -> dict[str, NDArray[Any]]:
        dtype = np.float64 if self.input.type == "tensor(double)" else np.float32
        names = [output.name for output in self._session.get_outputs()]
        values = self._session.run(names, {self.input.name: rows.astype(dtype)})
        return dict(zip(names, values, strict=True))


def evaluate(onnx_bytes: bytes, split: Split, task: Task) -> dict[str, float]:
    """Every metric of the task on the holdout, from the ONNX model's own answers (roc_auc
    only for a model that answers probabilities)."""
    from sklearn import metrics as sk

    answers = OnnxModel(onnx_bytes).outputs(split.x_holdout)
    truth = split.y_holdout
    if task == "regression":
        predicted = answers[PREDICTION].reshape(-1)
        return {"rmse": float(np.sqrt(sk.mean_squared_error(truth, predicted))),
                "mae": float(sk.mean_absolute_error(truth, predicted)),
                "r2": float(sk.r2_score(truth, predicted))}
    labels = answers[LABEL].reshape(-1)
    scores = {"accuracy": float(sk.accuracy_score(truth, labels))}
    if task == "multiclass":
        return scores | {"f1_macro": float(sk.f1_score(truth, labels, average="macro"))}
    scores["f1"] = float(sk.f1_score(truth, labels))
    if PROBABILITIES in answers:
        scores["roc_auc"] = float(sk.roc_auc_score(truth, answers[PROBABILITIES][:, 1]))
    return scores


def gate(spec: ModelSpec, candidate_metrics: dict[str, float],
         champion_metrics: dict[str, float] | None) -> list[str]:
    """Reasons the candidate fails the quality gate; empty when it passes."""
    gate_: QualityGate = spec.quality_gate
    failures = [f"{name} {candidate_metrics[name]:.4f} < {bound}"
                for name, bound in gate_.min.items() if candidate_metrics[name] < bound]
    failures += [f"{name} {candidate_metrics[name]:.4f} > {bound}"
                 for name, bound in gate_.max.items() if candidate_metrics[name] > bound]
    if champion_metrics is not None:
        name = spec.compare_metric
        worse = champion_metrics[name] - candidate_metrics[name]
        if not METRICS[spec.task][name].higher_is_better:
            worse = -worse
        if worse > gate_.max_regression:
            failures.append(f"{name} regresses {worse:.4f} against the champion "
                            f"({champion_metrics[name]:.4f} → {candidate_metrics[name]:.4f}, "
                            f"allowed {gate_.max_regression})")
    return failures
