from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from onecommit.lifecycle.spec import SpecError, load_spec, parse_spec
from onecommit.settings import PROJECT_ROOT


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_committed_specs_are_valid(env: str) -> None:
    spec = load_spec(PROJECT_ROOT / "gitops" / "envs" / env / "model.yaml")
    assert spec.model == "breast-cancer"


def _dev() -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load(
        (PROJECT_ROOT / "gitops" / "envs" / "dev" / "model.yaml").read_text())
    return data


@pytest.mark.parametrize(("change", "field"), [
    ({"algorithm": {"name": "svm"}}, "algorithm.name"),
    ({"quality_gate": {"min_acuracy": 0.9}}, "quality_gate.min_acuracy"),
    ({"quality_gate": {"min_accuracy": 1.5}}, "quality_gate.min_accuracy"),
    ({"rollout": {"kind": "canary", "steps": [50, 20]}}, "rollout.canary"),
    ({"rollout": {"kind": "rainbow"}}, "rollout"),
    ({"rollout": {"kind": "ab", "significance": 0.9}}, "rollout.ab.significance"),
    ({"model": "Bad Name!"}, "model"),
    ({"faults": {"error_rate": -1}}, "faults.error_rate"),
])
def test_invalid_spec_names_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError, match=rf"{field}: "):
        parse_spec({**_dev(), **change})


def test_unreadable_and_non_yaml_specs(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    broken = tmp_path / "model.yaml"
    broken.write_text("model: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(broken)
