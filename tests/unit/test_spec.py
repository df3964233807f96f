"""The model spec: the committed specs are valid, and every mistake is refused naming its field
and, where there is one, the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from onecommit.lifecycle.spec import SpecError, load_spec, parse_spec, spec_files
from onecommit.settings import PROJECT_ROOT

GITOPS = PROJECT_ROOT / "gitops"


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_committed_specs_are_valid_and_named_as_their_model(env: str) -> None:
    specs = [load_spec(path) for path in spec_files(GITOPS, env)]
    assert "breast-cancer" in [spec.model for spec in specs]


def test_dev_deploys_several_models_of_different_tasks() -> None:
    tasks = {spec.model: spec.task for spec in map(load_spec, spec_files(GITOPS, "dev"))}
    assert tasks == {"breast-cancer": "binary", "wine": "multiclass"}


def _dev(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        (GITOPS / "envs" / "dev" / "models" / "breast-cancer.yaml").read_text())
    return {**data, **changes}


REGRESSION = {"task": "regression", "data": {"source": "builtin:diabetes"},
              "training": {"trainer": "lightgbm"}, "quality_gate": {"max": {"rmse": 80}},
              "analysis": {"max_online_mae": 60}}


@pytest.mark.parametrize(("change", "message"), [
    ({"training": {"trainer": "svm"}}, r"training\.trainer: unknown trainer 'svm'; known: "),
    ({"training": {"trainer": "linear_regression"}},
     r"training\.trainer: linear_regression does not train binary models; for binary: "),
    ({"training": {"trainer": "xgboost", "entrypoint": "t.py:train"}}, r"training: give either"),
    ({"training": {"entrypoint": "train.py"}}, r"training\.entrypoint: String should match"),
    ({"quality_gate": {"min": {"rocauc": 0.9}}},
     r"quality_gate\.min: unknown metric 'rocauc' for a binary model; known: accuracy, f1, "),
    ({"quality_gate": {"compare": "rmse"}}, r"quality_gate\.compare: unknown metric 'rmse'"),
    ({"quality_gate": {"min_accuracy": 0.9}}, r"quality_gate\.min_accuracy: Extra inputs"),
    ({"task": "ranking"}, r"task: Input should be 'binary', 'multiclass' or 'regression'"),
    ({"task": "multiclass"}, r"data\.source: builtin:breast_cancer is a binary data set"),
    ({"data": {"source": "builtin:mnist"}}, r"data\.source: no built-in data set 'mnist'"),
    ({"data": {"source": "data/rows.xlsx"}}, r"data\.source: 'data/rows\.xlsx' is neither"),
    ({"data": {"source": "s3://bucket"}}, r"data\.source: 's3://bucket' names no object"),
    ({"data": {"source": "d.csv", "label": "y", "features": ["a", "y"]}},
     r"data\.features: the label column 'y' cannot also be a feature"),
    ({"data": None}, r"data: required \(or `source: "),
    ({"source": {"env": "dev", "alias": "champion"}},
     r"training: a promoted model \(`source`\) is not retrained"),
    ({"source": {"env": "dev"}, "training": None}, r"source: give either `version: <n>`"),
    ({"rollout": {"kind": "canary", "steps": [50, 20]}}, r"rollout\.canary: "),
    ({"rollout": {"kind": "rainbow"}}, r"rollout: "),
    ({"rollout": {"kind": "ab", "significance": 0.9}}, r"rollout\.ab\.significance: "),
    ({"analysis": {"max_online_mae": 3}}, r"analysis\.max_online_mae: a classifier is judged"),
    ({"model": "Bad Name!"}, r"model: "),
    ({"faults": {"error_rate": -1}}, r"faults\.error_rate: "),
    ({**REGRESSION, "analysis": {"min_online_accuracy": 0.9}},
     r"analysis\.min_online_accuracy: a regression model has no accuracy"),
    ({**REGRESSION, "rollout": {"kind": "ab"}}, r"rollout\.kind: ab compares predicted classes"),
    ({"faults": {"flip_rate": 1.5}}, r"faults\.flip_rate: "),
    ({**REGRESSION, "faults": {"flip_rate": 0.1}},
     r"faults\.flip_rate: a regression model has no class to flip; use faults\.error_rate"),
])
def test_invalid_spec_names_the_field(change: dict[str, Any], message: str) -> None:
    data = {key: value for key, value in _dev(**change).items() if value is not None}
    with pytest.raises(SpecError, match=message):
        parse_spec(data, "envs/dev/models/breast-cancer.yaml")


def test_each_task_type_parses_with_its_metrics() -> None:
    regression = parse_spec(_dev(**REGRESSION))
    assert regression.compare_metric == "rmse"
    wine = parse_spec(_dev(task="multiclass", data={"source": "builtin:wine"},
                           quality_gate={"min": {"f1_macro": 0.9}}))
    assert wine.compare_metric == "accuracy"
    promoted = parse_spec(_dev(source={"env": "dev", "version": 7}, training=None))
    assert promoted.source is not None
    assert promoted.source.version == 7


def test_the_file_is_named_as_its_model(tmp_path: Path) -> None:
    misnamed = tmp_path / "cancer.yaml"
    misnamed.write_text(yaml.safe_dump(_dev()))
    with pytest.raises(SpecError, match=r"model: 'breast-cancer' differs from the file's name; "
                                        r"name the file breast-cancer\.yaml"):
        load_spec(misnamed)


def test_unreadable_and_non_yaml_specs(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    broken = tmp_path / "model.yaml"
    broken.write_text("model: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(broken)


def test_training_params_take_any_json_value_as_written() -> None:
    params = {"hidden": [16, 8], "class_weight": {"0": 1, "1": 3}, "C": 0.5, "name": "x",
              "fit_intercept": True, "none": None}
    spec = parse_spec(_dev(training={"trainer": "logistic_regression", "params": params}))
    assert spec.training is not None
    assert spec.training.params == params


@pytest.mark.parametrize(("change", "field"), [
    ({"rollout": {"kind": "canary", "steps": [100], "pause_s": 86400}}, "rollout.canary.pause_s"),
    ({"rollout": {"kind": "ab", "sample_size": 10_000_000}}, "rollout.ab.sample_size"),
    ({"analysis": {"max_infra_pause_s": 1e9}}, "analysis.max_infra_pause_s"),
])
def test_durations_and_samples_are_bounded(change: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        parse_spec(_dev(**change))


def test_faults_are_active_when_any_is_on_and_flips_are_for_classifiers() -> None:
    assert not parse_spec(_dev()).faults.active
    assert parse_spec(_dev(faults={"error_rate": 0.5})).faults.active
    flipping = parse_spec(_dev(faults={"flip_rate": 0.1, "after_requests": 10})).faults
    assert flipping.active
    assert (flipping.flip_rate, flipping.error_rate, flipping.after_requests) == (0.1, 0, 10)
    assert parse_spec(_dev(**REGRESSION, faults={"error_rate": 0.5})).faults.active


def test_dev_seed_gates_on_accuracy_against_the_champion() -> None:
    """A version answering wrong classes above the absolute floor is caught only by comparing it
    with the champion: the seed has that comparison as a gate, with the limits to show it."""
    judged = parse_spec(_dev()).judged_by()
    (comparison,) = [m for m in judged.metrics if m.judged == "vs_champion"]
    assert (comparison.measure, comparison.margin, comparison.is_gate) == ("online_accuracy",
                                                                           0.03, True)
    assert judged.limits.max_seconds == 600
    assert judged.limits.min_requests == 30  # today's key, kept


def _metrics(*metrics: dict[str, Any], rollout: dict[str, Any] | None = None,
             **changes: Any) -> dict[str, Any]:
    base = _dev(**changes)
    analysis = {k: v for k, v in base["analysis"].items() if k not in ("metrics", "limits")}
    return {**base, "rollout": rollout or base["rollout"],
            "analysis": {**analysis, "metrics": list(metrics)}}


SHADOW_CORRECT = {"measure": "shadow_correctness", "judged": "vs_champion", "margin": 0.02}


def test_metrics_fit_the_task_and_the_strategy() -> None:
    shadow = parse_spec(_metrics(SHADOW_CORRECT, rollout={"kind": "shadow"}))
    assert [m.name for m in shadow.judged_by().metrics][-1] == "shadow_correctness vs champion"
    mae = {"measure": "online_mae", "judged": "vs_champion", "margin": 5}
    regression = {**REGRESSION, "rollout": {"kind": "canary"}}
    assert parse_spec(_metrics(mae, **regression)).judged_by().metrics[-1].measure == \
        "online_mae"


@pytest.mark.parametrize(("data", "message"), [
    (_metrics({"measure": "online_mae", "judged": "bound", "bound": 5}),
     r"analysis\.metrics\.0\.measure: a binary model is judged by online_accuracy"),
    (_metrics({"measure": "online_accuracy", "judged": "bound", "bound": 0.5},
              **{**REGRESSION, "rollout": {"kind": "canary"}}),
     r"a regression model is judged by online_mae"),
    (_metrics(SHADOW_CORRECT), r"shadow_correctness needs mirrored requests"),
    (_metrics({"measure": "online_accuracy", "judged": "vs_champion", "margin": 0.01},
              rollout={"kind": "bluegreen"}), r"needs both serving at once"),
    (_metrics({"measure": "input_drift", "judged": "bound", "bound": 0.2}),
     r"input_drift is not observed yet"),
    (_metrics({"measure": "online_accuracy", "judged": "bound"}), r"takes `bound`"),
    (_metrics({"measure": "online_accuracy", "judged": "vs_champion", "margin": 0.01,
               "alpah": 0.1}), r"alpah: Extra inputs are not permitted"),
    ({**_dev(), "analysis": {**_dev()["analysis"], "limits": {"max_seconds": 1e6}}},
     r"analysis\.limits: max_seconds is at most 14400"),
])
def test_metrics_that_cannot_be_judged_are_refused_naming_the_fix(data: dict[str, Any],
                                                                  message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(data)


def test_a_listed_metric_replaces_the_key_of_the_same_name_and_limits_merge() -> None:
    floor = {"measure": "online_accuracy", "judged": "bound", "bound": 0.9, "alpha": 0.01}
    data = _metrics(floor)
    data["analysis"]["limits"] = {"min_dwell_s": 5}
    judged = parse_spec(data).judged_by()
    floors = [m for m in judged.metrics if m.name == "online_accuracy bound"]
    assert [(m.bound, m.alpha) for m in floors] == [(0.9, 0.01)]
    # Given: the dwell; implied by the canary (3 steps of 15 s, four times over): the rest.
    assert (judged.limits.min_dwell_s, judged.limits.max_seconds) == (5, 180)


def _listing(measure: str, **rest: Any) -> dict[str, Any]:
    return {"metrics": [{"measure": measure, "judged": "vs_champion", "margin": 0.03}],
            **rest}


def test_estimated_accuracy_is_judged_for_classifiers_and_refused_for_regression() -> None:
    """The gateway logs the answered class's probability, so a classifier's spec may judge the
    label-free estimate (CBPE); a regressor has no class, and inputs are still not logged."""
    judged = parse_spec(_dev(analysis=_listing("estimated_accuracy"))).judged_by()
    assert "estimated_accuracy" in [m.measure for m in judged.metrics]
    wine = yaml.safe_load((GITOPS / "envs" / "dev" / "models" / "wine.yaml").read_text())
    assert parse_spec({**wine, "analysis": _listing("estimated_accuracy")}).task == "multiclass"
    with pytest.raises(SpecError, match=r"analysis\.metrics\.0\.measure: estimated_accuracy is a "
                                        r"classifier's .* judged by online_mae"):
        parse_spec(_dev(**{**REGRESSION, "analysis": _listing("estimated_accuracy")}))
    with pytest.raises(SpecError, match=r"input_drift is not observed yet"):
        parse_spec(_dev(analysis={"metrics": [
            {"measure": "input_drift", "judged": "bound", "bound": 0.25}]}))


@pytest.mark.parametrize("measure", ["error_rate", "latency"])
def test_a_classifier_may_list_measures_of_any_model(measure: str) -> None:
    assert parse_spec(_dev(analysis=_listing(measure))).analysis.metrics[0].measure == measure
    with pytest.raises(SpecError, match=r"a binary model is judged by online_accuracy"):
        parse_spec(_dev(analysis=_listing("online_mae")))
