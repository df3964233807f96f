"""The model specs a commit changes (`gitops/envs/<env>/models/<model>.yaml`, one file per model),
and their validation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from onecommit.analysis.spec import AnalysisSpec, Limits, Metric, from_thresholds
from onecommit.errors import OnecommitError
from onecommit.lifecycle.catalog import (
    BUILTIN_DATASETS,
    DATA_SUFFIXES,
    METRICS,
    PRIMARY_METRIC,
    TRAINERS,
    Task,
    trainer_class,
    trainers_for,
)
from onecommit.strategies import STRATEGIES
from onecommit.vocabulary import MODEL_NAME

Fraction = Annotated[float, Field(ge=0, le=1)]
# Bounds that keep one spec from stalling its model's deploys: a step's pause, an analysis
# paused on infrastructure faults, and an A/B test's sample are each at most an hour's worth.
MAX_PAUSE_S = 3600
PauseSeconds = Annotated[float, Field(ge=0, le=MAX_PAUSE_S)]
# A rollout's limits (`analysis.limits.max_seconds`) are at most four hours' worth.
MAX_ROLLOUT_S = 4 * MAX_PAUSE_S
# Measures of an answered class: a regressor has none.
CLASSIFIER_MEASURES = frozenset({"online_accuracy", "estimated_accuracy", "shadow_correctness",
                                 "shadow_agreement"})
# Measures the gateway does not observe yet: it does not log the requests' inputs.
UNOBSERVED = {"input_drift": "request inputs"}


class _Strict(BaseModel):
    # A typo in a key must fail validation, not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Data(_Strict):
    """Where the rows come from, which column is the label and which are the features."""

    # `builtin:<name>` (scikit-learn's bundled sets, for demos), a CSV or Parquet file in the
    # gitops repository (a relative path) or on this machine (an absolute path), or an object
    # store URI (`s3://bucket/key.csv`: MinIO on clusters).
    source: Annotated[str, Field(min_length=1)]
    label: Annotated[str, Field(min_length=1)] = "target"
    # Default: every column but the label. All must be numeric.
    features: Annotated[list[str], Field(min_length=1)] | None = None
    test_size: Annotated[float, Field(gt=0, lt=1)] = 0.25
    seed: int = 42

    @property
    def builtin(self) -> str | None:
        return self.source.removeprefix("builtin:") if self.source.startswith("builtin:") else None

    @property
    def is_s3(self) -> bool:
        return self.source.startswith("s3://")

    @property
    def in_repo(self) -> bool:
        """A file of the gitops repository, read from the deployed commit's tree."""
        return self.builtin is None and not self.is_s3 and not Path(self.source).is_absolute()

    @model_validator(mode="after")
    def _known_source(self) -> Data:
        name = self.builtin
        if name is not None:
            if name not in BUILTIN_DATASETS:
                raise ValueError(f"data.source: no built-in data set {name!r}; known: "
                                 f"{', '.join(f'builtin:{n}' for n in BUILTIN_DATASETS)}")
            return self
        if self.is_s3 and len(self.source.removeprefix("s3://").split("/", 1)) != 2:
            raise ValueError(f"data.source: {self.source!r} names no object: write "
                             "s3://<bucket>/<key>")
        if not self.source.endswith(DATA_SUFFIXES):
            raise ValueError(f"data.source: {self.source!r} is neither CSV nor Parquet: name a "
                             f"file ending in {' or '.join(DATA_SUFFIXES)}")
        if self.features is not None and self.label in self.features:
            raise ValueError(f"data.features: the label column {self.label!r} cannot also be a "
                             "feature")
        return self


class Training(_Strict):
    """A built-in trainer, or the user's own function in the commit (`path.py:function`)."""

    trainer: str | None = None
    entrypoint: Annotated[str, Field(pattern=r"^[^:\s]+\.py:[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    # Any JSON value (lists of layer sizes, mappings of class weights): the user's function
    # gets them as written, a built-in trainer's estimator as keyword arguments.
    params: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_way(self) -> Training:
        if (self.trainer is None) == (self.entrypoint is None):
            raise ValueError("training: give either `trainer` (one of "
                             f"{', '.join(TRAINERS)}) or `entrypoint` (path/to/file.py:function)")
        if self.trainer is not None and self.trainer not in TRAINERS:
            raise ValueError(f"training.trainer: unknown trainer {self.trainer!r}; known: "
                             f"{', '.join(TRAINERS)}")
        return self

    @property
    def entrypoint_file(self) -> str | None:
        return None if self.entrypoint is None else self.entrypoint.split(":")[0]


class QualityGate(_Strict):
    """Holdout metrics the candidate must reach, and how much worse than the champion it may
    be on the same holdout."""

    min: dict[str, float] = Field(default_factory=dict)
    max: dict[str, float] = Field(default_factory=dict)
    # Allowed regression against the champion on `compare` (in that metric's units).
    max_regression: Annotated[float, Field(ge=0)] = 0.02
    # Default: the task's primary metric (accuracy for classification, rmse for regression).
    compare: str | None = None


class Analysis(_Strict):
    max_error_rate: Fraction = 0.01
    max_p95_latency_ms: Annotated[float, Field(gt=0)] = 250
    # Online metrics from the feedback: accuracy for classifiers, mean absolute error for
    # regressors. Unset: not judged.
    min_online_accuracy: Fraction | None = None
    max_online_mae: Annotated[float, Field(gt=0)] | None = None
    min_requests: Annotated[int, Field(ge=1, le=100_000)] = 50
    # How long a step's analysis may stay paused on infrastructure faults (the inference
    # server or the gateway not answering) before the rollout aborts for want of a fair sample.
    max_infra_pause_s: PauseSeconds = 120
    # Judged besides the thresholds above, in the manner of Argo Rollouts' AnalysisTemplate:
    # comparisons with the champion, shadow correctness (README: "Rollout analysis"). A listed
    # metric replaces the threshold of the same measure and judgement.
    metrics: list[Metric] = Field(default_factory=list)
    # The rollout's limits; a field left out keeps what the thresholds and strategy imply.
    limits: Limits | None = None

    def thresholds(self) -> dict[str, Any]:
        """Today's keys, as `analysis.spec.from_thresholds` takes them."""
        return self.model_dump(exclude={"metrics", "limits"})


class Canary(_Strict):
    kind: Literal["canary"]
    steps: list[Annotated[int, Field(gt=0, le=100)]] = Field(default=[20, 50, 100], min_length=1)
    pause_s: PauseSeconds = 20

    @model_validator(mode="after")
    def _ascending_to_full(self) -> Canary:
        if self.steps != sorted(set(self.steps)) or self.steps[-1] != 100:
            raise ValueError("steps must be strictly increasing percentages ending at 100")
        return self


class BlueGreen(_Strict):
    kind: Literal["bluegreen"]
    pause_s: PauseSeconds = 20


class ABTest(_Strict):
    kind: Literal["ab"]
    sample_size: Annotated[int, Field(ge=10, le=100_000)] = 400
    # As the gateway's analysis takes it (smaller has no normal quantile in floating point).
    significance: Annotated[float, Field(ge=1e-9, lt=0.5)] = 0.05
    sticky_key: str = "x-user-id"


class Shadow(_Strict):
    kind: Literal["shadow"]
    pause_s: PauseSeconds = 30
    min_agreement: Fraction = 0.95


Rollout = Annotated[Canary | BlueGreen | ABTest | Shadow, Field(discriminator="kind")]


class ServingFaults(_Strict):
    """Serving-side fault injection for the version this spec deploys: the way to show a
    commit that passes offline evaluation and the smoke test, then fails under live traffic
    (`error_rate`: visibly, with errors) or serves without errors and is worse (`flip_rate`).

    The Triton python-backend model every publish writes beside the version applies them
    (`serving/onnx_runtime_model.py`, reading `faults.json`). Triton's onnxruntime backend
    (`triton_repo` target `onnxruntime`, which no publish selects today) and the gateway's
    in-process ONNX Runtime (`gateway_backend: onnx`) serve the version without them."""

    # Share of requests the served version answers with an error.
    error_rate: Fraction = 0.0
    # Share of requests a classifier answers with a wrong class, its label and probabilities
    # agreeing (no error, nothing malformed): only comparing accuracy with the champion on
    # the same traffic shows it. A regressor has no class to flip (refused: use error_rate).
    # Both count the same requests: one due both is answered with the error.
    flip_rate: Fraction = 0.0
    # Requests served normally first (warm-up and smoke test), before faults begin.
    after_requests: Annotated[int, Field(ge=0)] = 10

    @property
    def active(self) -> bool:
        """Any fault on: the version is published with them."""
        return self.error_rate > 0 or self.flip_rate > 0


class Source(_Strict):
    """Promotion: deploy a version another environment validated, without retraining."""

    env: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")]
    # A version number, or the version an alias of that environment's registry names.
    version: Annotated[int, Field(ge=1)] | None = None
    alias: Literal["champion"] | None = None

    @model_validator(mode="after")
    def _one_version(self) -> Source:
        if (self.version is None) == (self.alias is None):
            raise ValueError("source: give either `version: <n>` or `alias: champion`")
        return self


class ModelSpec(_Strict):
    model: Annotated[str, Field(pattern=MODEL_NAME)]
    task: Task
    data: Data | None = None
    training: Training | None = None
    source: Source | None = None
    quality_gate: QualityGate = QualityGate()
    rollout: Rollout
    analysis: Analysis = Analysis()
    faults: ServingFaults = ServingFaults()

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        for problem in (self._origin_problem(), self._data_problem(), self._trainer_problem(),
                        self._gate_problem(), self._online_problem(), self._rollout_problem(),
                        self._metrics_problem(), self._faults_problem()):
            if problem:
                raise ValueError(problem)
        return self

    def _origin_problem(self) -> str | None:
        if self.source is not None:
            if self.training is not None:
                return ("training: a promoted model (`source`) is not retrained: remove "
                        "`training`, or `source` to train here")
            return None
        missing = [name for name in ("data", "training") if getattr(self, name) is None]
        if missing:
            return (f"{missing[0]}: required (or `source: {{env: dev, alias: champion}}` to "
                    "promote a version another environment validated)")
        return None

    def _data_problem(self) -> str | None:
        builtin = self.data.builtin if self.data is not None else None
        if builtin is not None and BUILTIN_DATASETS[builtin] != self.task:
            return (f"data.source: builtin:{builtin} is a {BUILTIN_DATASETS[builtin]} data set, "
                    f"but task is {self.task}")
        return None

    def _trainer_problem(self) -> str | None:
        trainer = self.training.trainer if self.training is not None else None
        if trainer is not None and trainer_class(trainer, self.task) is None:
            return (f"training.trainer: {trainer} does not train {self.task} models; for "
                    f"{self.task}: {', '.join(trainers_for(self.task))}")
        return None

    def _gate_problem(self) -> str | None:
        known = METRICS[self.task]
        gate = self.quality_gate
        for bound, named in (("min", gate.min), ("max", gate.max),
                             ("compare", [gate.compare] if gate.compare else [])):
            for metric in named:
                if metric not in known:
                    return (f"quality_gate.{bound}: unknown metric {metric!r} for a {self.task} "
                            f"model; known: {', '.join(known)}")
        return None

    def _online_problem(self) -> str | None:
        analysis = self.analysis
        if self.task == "regression" and analysis.min_online_accuracy is not None:
            return ("analysis.min_online_accuracy: a regression model has no accuracy; use "
                    "max_online_mae")
        if self.task != "regression" and analysis.max_online_mae is not None:
            return ("analysis.max_online_mae: a classifier is judged by accuracy; use "
                    "min_online_accuracy")
        return None

    def _rollout_problem(self) -> str | None:
        if self.task == "regression" and STRATEGIES[self.rollout.kind].compares_classes:
            return (f"rollout.kind: {self.rollout.kind} compares predicted classes, which a "
                    "regression model has not; use canary or bluegreen")
        return None

    def _metrics_problem(self) -> str | None:
        strategy = STRATEGIES[self.rollout.kind]
        for index, metric in enumerate(self.analysis.metrics):
            where = f"analysis.metrics.{index}.measure"
            if metric.measure in UNOBSERVED:
                return (f"{where}: {metric.measure} is not observed yet (the gateway does not "
                        f"log {UNOBSERVED[metric.measure]}); judge online_accuracy or "
                        "shadow_correctness")
            if metric.measure in CLASSIFIER_MEASURES and self.task == "regression":
                return (f"{where}: {metric.measure} is a classifier's (a class answered, and "
                        "its probability); a regression model is judged by online_mae")
            if metric.measure == "online_mae" and self.task != "regression":
                return f"{where}: a {self.task} model is judged by online_accuracy"
            if metric.measure.startswith("shadow_") and not strategy.mirrors:
                return (f"{where}: {metric.measure} needs mirrored requests: use rollout.kind: "
                        "shadow, or judge online_accuracy")
            if (metric.judged == "vs_champion" and not metric.measure.startswith("shadow_")
                    and not strategy.splits):
                return (f"{where}: comparing {metric.measure} with the champion needs both "
                        f"serving at once, which {self.rollout.kind} never does: use canary or "
                        "ab (or shadow_correctness under shadow)")
        limits = self.analysis.limits
        if limits is not None and (limits.max_seconds > MAX_ROLLOUT_S
                                   or limits.min_dwell_s > MAX_PAUSE_S):
            return (f"analysis.limits: max_seconds is at most {MAX_ROLLOUT_S} and min_dwell_s "
                    f"at most {MAX_PAUSE_S}, so one spec cannot stall its model's deploys")
        return None

    def _faults_problem(self) -> str | None:
        # A flip answers another class; a regressor's prediction has none to answer instead.
        if self.task == "regression" and self.faults.flip_rate > 0:
            return ("faults.flip_rate: a regression model has no class to flip; use "
                    "faults.error_rate")
        return None

    def judged_by(self) -> AnalysisSpec:
        """What the rollout judges: today's thresholds (guards), the listed metrics, and the
        limits the strategy implies with the spec's own over them."""
        derived = from_thresholds(self.analysis.thresholds(), self.rollout.model_dump())
        listed = {metric.name: metric for metric in self.analysis.metrics}
        metrics = [listed.pop(metric.name, metric) for metric in derived.metrics]
        given = self.analysis.limits
        limits = derived.limits if given is None else derived.limits.model_copy(
            update=given.model_dump(exclude_unset=True))
        return AnalysisSpec(metrics=metrics + list(listed.values()), limits=limits)

    @property
    def compare_metric(self) -> str:
        return self.quality_gate.compare or PRIMARY_METRIC[self.task]


class SyncPolicy(_Strict):
    """An env's automated sync policy (`envs/<env>/sync.yaml`, optional), as Argo CD's
    `syncPolicy.automated`: retire a model whose spec is gone (prune), and put back what was
    changed outside git (self_heal)."""

    prune: bool = True
    self_heal: bool = True


def parse_policy(data: Any, source: str) -> SyncPolicy:
    try:
        return SyncPolicy.model_validate(data if data is not None else {})
    except ValidationError as error:
        problems = "; ".join(_problem(e) for e in error.errors())
        raise SpecError(f"{source} is invalid: {problems} (keys: prune, self_heal; both true "
                        "or false)") from None


class SpecError(OnecommitError, ValueError):
    """The spec is invalid; the message names the field and what is wrong with it."""


def _problem(error: Any) -> str:
    where = ".".join(str(p) for p in error["loc"])
    # A check across fields names its field itself.
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def parse_spec(data: Any, source: str = "model spec") -> ModelSpec:
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(_problem(e) for e in error.errors())
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
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"cannot read model spec {path}: {getattr(error, 'strerror', error)}"
                        ) from None
    return spec_from_text(text, path)


def spec_from_text(text: str, path: Path) -> ModelSpec:
    """The spec a file at `path` holds; the file must be named as its model."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(f"{path} is not valid YAML: {error}") from None
    spec = parse_spec(data, str(path))
    if spec.model != path.stem:  # the sync finds a model's spec by its name
        raise SpecError(f"{path} is invalid: model: {spec.model!r} differs from the file's name; "
                        f"name the file {spec.model}.yaml, or the model {path.stem!r}")
    return spec


def spec_files(tree: Path, env: str) -> list[Path]:
    """The env's model specs in a gitops tree, one per model."""
    return sorted((tree / "envs" / env / "models").glob("*.yaml"))
