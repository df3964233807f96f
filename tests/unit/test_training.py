"""A user's own model: the examples train, export and pass their gate offline; each mistake in
a user's data or code is refused with the file, the field and the fix, at validate time where it
can be known there (the sync), else by training."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from onecommit import sync
from onecommit.lifecycle import data, training
from onecommit.lifecycle.export import signature
from onecommit.lifecycle.spec import dump_spec, load_spec, parse_spec
from onecommit.settings import PROJECT_ROOT, Settings

EXAMPLES = sorted(p for p in (PROJECT_ROOT / "examples").iterdir() if p.is_dir())
CHURN = PROJECT_ROOT / "examples" / "churn-own-code"
SPEC = "envs/dev/models/churn.yaml"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_each_example_trains_exports_and_passes_its_gate(example: Path) -> None:
    (path,) = (example / "envs" / "dev" / "models").glob("*.yaml")
    spec = load_spec(path)
    split = data.load(spec.data, spec.task, example)  # type: ignore[arg-type]
    onnx_bytes = training.candidate(spec, split, example)
    metrics = training.evaluate(onnx_bytes, split, spec.task)
    assert training.gate(spec, metrics, None) == []
    served = signature(onnx_bytes)
    assert served["inputs"] == [{"name": "X", "datatype": "FP32",
                                 "shape": [-1, len(split.feature_names)]}]
    expected = "prediction" if spec.task == "regression" else "label"
    assert expected in [output["name"] for output in served["outputs"]]


def test_the_gate_compares_lower_is_better_metrics_the_right_way() -> None:
    spec = load_spec(PROJECT_ROOT / "examples" / "diabetes-lightgbm" / "envs" / "dev" /
                     "models" / "diabetes.yaml")
    better, worse = {"rmse": 50.0, "r2": 0.5, "mae": 40.0}, {"rmse": 60.0, "r2": 0.5, "mae": 40}
    assert training.gate(spec, better, worse) == []
    assert training.gate(spec, worse, better) == [
        "rmse regresses 10.0000 against the champion (50.0000 → 60.0000, allowed 5.0)"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A gitops tree holding the churn example."""
    shutil.copytree(CHURN, tmp_path, dirs_exist_ok=True)
    return tmp_path


def _spec(tree: Path, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((tree / SPEC).read_text())
    for key, value in changes.items():
        spec[key] = {**spec[key], **value}
    (tree / SPEC).write_text(dump_spec(spec))
    return spec


def _problems(tree: Path, changed: list[str] | None = None) -> list[str]:
    settings = Settings(state_dir=tree / ".state")
    return sync.validate(tree, ["churn"], settings, "dev", changed or [SPEC])


def test_the_example_tree_is_valid(tree: Path) -> None:
    assert _problems(tree) == []


@pytest.mark.parametrize(("change", "message"), [
    ({"data": {"label": "churn"}},
     "data.label: no column 'churn' in data/churn.csv; its columns: tenure_months, "),
    ({"data": {"features": ["tenure_months", "age"]}}, "data.features: 'age' not in "),
    ({"data": {"source": "data/missing.csv"}},
     "data.source data/missing.csv: no such file in the commit: commit it, or fix the path"),
    ({"training": {"entrypoint": "training/nope.py:train"}},
     "training.entrypoint: no file training/nope.py in the commit"),
    ({"training": {"entrypoint": "training/churn.py:fit"}},
     "training.entrypoint: training/churn.py defines no top-level function 'fit'; it "
     "defines train"),
    ({"training": {"entrypoint": None, "trainer": "logistic_regression",
                   "params": {"Cee": 1}}},
     "training.params for logistic_regression: "),
])
def test_a_mistake_the_sync_can_see_is_refused_naming_file_field_and_fix(
        tree: Path, change: dict[str, Any], message: str) -> None:
    _spec(tree, **change)
    problems = _problems(tree)
    assert any(p.startswith(f"{SPEC}: ") and message in p for p in problems), problems


@pytest.mark.parametrize(("content", "message"), [
    (b"", "the file is empty: commit rows with a header line"),
    (b"\xff\xfe\x00garbage\x00\x01", "not readable as CSV"),
    (b"tenure_months,churned\n1,0\n", "1 rows; training and a holdout need at least 10"),
    (b"tenure_months,churned\n" + b"".join(b"%d,yes\n" % i for i in range(20)),
     "data.label: column 'churned' in data/churn.csv must be finite numbers"),
    (b"tenure_months,churned\n" + b"".join(b"%d,%d\n" % (i, i % 2) for i in range(20))
     + b"3,inf\n", "data.label: column 'churned' in data/churn.csv must be finite numbers"),
    (b"tenure_months,churned\n" + b"".join(b"%d,%d\n" % (i, i % 2) for i in range(20))
     + b"inf,1\n", "data.features: 'tenure_months' in data/churn.csv hold inf"),
])
def test_a_bad_data_file_is_refused_at_validate_time(tree: Path, content: bytes,
                                                     message: str) -> None:
    (tree / "data" / "churn.csv").write_bytes(content)
    problems = _problems(tree, ["data/churn.csv"])
    assert any(p.startswith(f"{SPEC}: ") and message in p for p in problems), problems


def test_an_old_single_model_spec_is_refused_with_the_move_to_make(tree: Path) -> None:
    (tree / "envs" / "dev" / "model.yaml").write_text((tree / SPEC).read_text())
    assert "envs/dev/model.yaml: one spec per model now: `git mv envs/dev/model.yaml " \
           "envs/dev/models/<model>.yaml`" in " ".join(_problems(tree))


@pytest.mark.parametrize(("code", "message"), [
    ("def train(data, params):\n    raise ValueError('no rows for region EU')\n",
     "training.entrypoint training/churn.py:train raised ValueError: no rows for region EU"),
    ("def train(data, params):\n    return {'weights': [1, 2]}\n",
     "training.entrypoint training/churn.py:train: the model cannot be served: the model is a "
     "builtins.dict; expected a fitted "
     "scikit-learn estimator or pipeline, an XGBoost or LightGBM model"),
    ("import nonexistent_module\n\ndef train(data, params):\n    return None\n",
     "training.entrypoint: importing training/churn.py raised ModuleNotFoundError"),
])
def test_a_training_function_that_fails_or_returns_the_wrong_type_is_refused(
        tree: Path, code: str, message: str) -> None:
    (tree / "training" / "churn.py").write_text(code)
    spec = load_spec(tree / SPEC)
    split = data.load(spec.data, spec.task, tree)  # type: ignore[arg-type]
    with pytest.raises(training.TrainingError, match=re.escape(message)):
        training.candidate(spec, split, tree)


def test_a_training_function_sees_only_the_training_rows(tree: Path) -> None:
    (tree / "training" / "churn.py").write_text(
        "import numpy as np\n"
        "from sklearn.linear_model import LogisticRegression\n\n"
        "def train(data, params):\n"
        "    assert data.task == 'binary' and data.classes == [0, 1]\n"
        "    assert len(data.feature_names) == data.x.shape[1] == 8 and len(data.x) == 900\n"
        "    shuffled = np.random.default_rng(0).permutation(data.y)\n"
        "    return LogisticRegression().fit(data.x, shuffled)\n")
    spec = load_spec(tree / SPEC)
    split = data.load(spec.data, spec.task, tree)  # type: ignore[arg-type]
    assert len(split.x_train) == 900
    assert len(split.x_holdout) == 300
    onnx_bytes = training.candidate(spec, split, tree)
    metrics = training.evaluate(onnx_bytes, split, spec.task)
    # A model of shuffled labels learns nothing: the gate refuses it on its merits.
    assert metrics["roc_auc"] < 0.65
    assert any(f.startswith("roc_auc 0.") and f.endswith(" < 0.8")
               for f in training.gate(spec, metrics, None))


def test_a_multiclass_label_must_hold_the_classes_as_integers() -> None:
    spec = parse_spec({"model": "m1", "task": "multiclass",
                       "data": {"source": "/nowhere.csv", "label": "y"},
                       "training": {"trainer": "xgboost"}, "rollout": {"kind": "canary"}})
    import pandas as pd

    frame = pd.DataFrame({"a": np.arange(30.0), "y": [1, 2, 5] * 10})
    assert spec.data is not None
    with pytest.raises(data.DataError, match=r"classes as integers 0\.\.k-1; column 'y' holds "
                                             r"\[1, 2, 5\]"):
        data.table(frame, spec.data, spec.task)
