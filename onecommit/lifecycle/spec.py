"""The model spec a commit changes (`gitops/envs/<env>/model.yaml`), and its validation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from onecommit.errors import OnecommitError

Fraction = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    # A typo in a key must fail validation, not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dataset(_Strict):
    name: Literal["breast_cancer"] = "breast_cancer"
    test_size: Annotated[float, Field(gt=0, lt=1)] = 0.25
    seed: int = 42


class Algorithm(_Strict):
    name: Literal["logistic_regression", "random_forest", "gradient_boosting"]
    params: dict[str, float | int | str | bool | None] = Field(default_factory=dict)


class QualityGate(_Strict):
    min_accuracy: Fraction = 0.9
    min_roc_auc: Fraction = 0.9
    # How much worse than the champion on the same holdout the candidate may be.
    max_regression: Fraction = 0.02


class Analysis(_Strict):
    max_error_rate: Fraction = 0.01
    max_p95_latency_ms: Annotated[float, Field(gt=0)] = 250
    min_online_accuracy: Fraction = 0.85
    min_requests: Annotated[int, Field(ge=1)] = 50
    # How long a step's analysis may stay paused on infrastructure faults (the inference
    # server or the gateway not answering) before the rollout aborts for want of a fair sample.
    max_infra_pause_s: Annotated[float, Field(ge=0)] = 120


class Canary(_Strict):
    kind: Literal["canary"]
    steps: list[Annotated[int, Field(gt=0, le=100)]] = Field(default=[20, 50, 100], min_length=1)
    pause_s: Annotated[float, Field(ge=0)] = 20

    @model_validator(mode="after")
    def _ascending_to_full(self) -> Canary:
        if self.steps != sorted(set(self.steps)) or self.steps[-1] != 100:
            raise ValueError("steps must be strictly increasing percentages ending at 100")
        return self


class BlueGreen(_Strict):
    kind: Literal["bluegreen"]
    pause_s: Annotated[float, Field(ge=0)] = 20


class ABTest(_Strict):
    kind: Literal["ab"]
    sample_size: Annotated[int, Field(ge=10)] = 400
    significance: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    sticky_key: str = "x-user-id"


class Shadow(_Strict):
    kind: Literal["shadow"]
    pause_s: Annotated[float, Field(ge=0)] = 30
    min_agreement: Fraction = 0.95


Rollout = Annotated[Canary | BlueGreen | ABTest | Shadow, Field(discriminator="kind")]


class ServingFaults(_Strict):
    """Serving-side fault injection for the version this spec deploys: the way to show a
    commit that passes offline evaluation and the smoke test, then fails under live traffic."""

    # Share of requests the served version answers with an error.
    error_rate: Fraction = 0.0
    # Requests served normally first (warm-up and smoke test), before faults begin.
    after_requests: Annotated[int, Field(ge=0)] = 10


class ModelSpec(_Strict):
    model: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{1,62}$")]
    dataset: Dataset = Dataset()
    algorithm: Algorithm
    quality_gate: QualityGate = QualityGate()
    rollout: Rollout
    analysis: Analysis = Analysis()
    faults: ServingFaults = ServingFaults()


class SpecError(OnecommitError, ValueError):
    """The spec is invalid; the message names the field and what is wrong with it."""


def parse_spec(data: Any, source: str = "model spec") -> ModelSpec:
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in error.errors()
        )
        raise SpecError(f"{source} is invalid: {problems}") from None


class _IndentedDumper(yaml.SafeDumper):
    """Indents list items under their key, as the gitops tree's yamllint rules require."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def dump_spec(data: dict[str, Any]) -> str:
    """A spec mapping as YAML that passes the sync's lint, keys in their given order."""
    return yaml.dump(data, Dumper=_IndentedDumper, sort_keys=False, default_flow_style=False)


def load_spec(path: Path) -> ModelSpec:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SpecError(f"{path} is not valid YAML: {error}") from None
    except OSError as error:
        raise SpecError(f"cannot read model spec {path}: {error.strerror}") from None
    return parse_spec(data, str(path))
