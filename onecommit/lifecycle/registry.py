"""MLflow tracking and registry conventions: runs, versions and the aliases that say who serves.

`challenger` is the candidate, `champion` the served version, `previous` the one before it.
Every version records `before_version` (the champion when it was registered) and its `status`.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from numpy.typing import NDArray

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
# What loading a logged pipeline needs, pinned to what trained it. Given, MLflow skips inferring
# them, which imports the model in a subprocess and cost 12 s of every training task.
_SERVING_REQUIREMENTS = [f"{name}=={importlib.metadata.version(name)}"
                         for name in ("scikit-learn", "skops", "numpy", "scipy")]


@dataclass(frozen=True)
class RunContext:
    """Where a run comes from: recorded as tags on the run and the version."""

    git_sha: str
    env: str
    dag_run_id: str

    def tags(self) -> dict[str, str]:
        return {"git_sha": self.git_sha, "env": self.env, "dag_run_id": self.dag_run_id}


@dataclass(frozen=True)
class Candidate:
    """A trained model logged to a run; `model_uri` is MLflow 3's logged-model URI."""

    run_id: str
    model_uri: str


def client(tracking_uri: str) -> MlflowClient:
    mlflow.set_tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def alias_version(mlflow_client: MlflowClient, model: str, alias: str) -> int | None:
    try:
        return int(mlflow_client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def log_candidate(mlflow_client: MlflowClient, model_name: str, pipeline: Any,
                  x_example: NDArray[Any], params: dict[str, Any], metrics: dict[str, float],
                  context: RunContext) -> Candidate:
    """One MLflow run with params, metrics, the model, its signature and input example."""
    experiment = mlflow.set_experiment(model_name)
    before = alias_version(mlflow_client, model_name, CHAMPION)
    tags = {**context.tags(), "before_version": str(before or "")}
    with mlflow.start_run(experiment_id=experiment.experiment_id, tags=tags) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        signature = infer_signature(x_example, pipeline.predict_proba(x_example))
        logged = mlflow.sklearn.log_model(pipeline, name="model", signature=signature,
                                          input_example=x_example[:3],
                                          pip_requirements=_SERVING_REQUIREMENTS)
        mlflow.set_tag("model_uri", logged.model_uri)
    return Candidate(run_id=str(run.info.run_id), model_uri=str(logged.model_uri))


def logged_candidate(mlflow_client: MlflowClient, model_name: str,
                     context: RunContext) -> Candidate | None:
    """The candidate an earlier attempt of the same DAG run logged, if any: a re-run reuses it
    instead of training a second one."""
    experiment = mlflow_client.get_experiment_by_name(model_name)
    if experiment is None:
        return None
    runs = mlflow_client.search_runs(
        [experiment.experiment_id], max_results=1,
        filter_string=f"tags.dag_run_id = '{context.dag_run_id}' and tags.model_uri != ''")
    if not runs:
        return None
    return Candidate(run_id=runs[0].info.run_id, model_uri=runs[0].data.tags["model_uri"])


def registered_version(mlflow_client: MlflowClient, model_name: str,
                       context: RunContext) -> tuple[int, int | None] | None:
    """(version, before_version) that an earlier attempt of the same DAG run registered."""
    found = mlflow_client.search_model_versions(
        f"name = '{model_name}' and tags.dag_run_id = '{context.dag_run_id}'")
    if not found:
        return None
    before = found[0].tags.get("before_version") or None
    return int(found[0].version), int(before) if before else None


def register(mlflow_client: MlflowClient, model_name: str, candidate: Candidate,
             context: RunContext) -> tuple[int, int | None]:
    """Register the run's model as a new version with alias `challenger`, once per DAG run;
    returns (version, before_version)."""
    earlier = registered_version(mlflow_client, model_name, context)
    if earlier is not None:
        return earlier
    before = alias_version(mlflow_client, model_name, CHAMPION)
    tags = {**context.tags(), "before_version": str(before or ""), "status": "registered"}
    version = mlflow.register_model(candidate.model_uri, model_name, tags=tags)
    mlflow_client.set_registered_model_alias(model_name, CHALLENGER, version.version)
    return int(version.version), before


def set_status(mlflow_client: MlflowClient, model_name: str, version: int, status: str,
               reason: str = "") -> None:
    mlflow_client.set_model_version_tag(model_name, str(version), "status", status)
    if reason:
        mlflow_client.set_model_version_tag(model_name, str(version), "reason", reason)


def promote(mlflow_client: MlflowClient, model_name: str, version: int) -> int | None:
    """champion → version, previous → the old champion, challenger removed; returns previous."""
    old = alias_version(mlflow_client, model_name, CHAMPION)
    if old is not None and old != version:
        mlflow_client.set_registered_model_alias(model_name, PREVIOUS, str(old))
    mlflow_client.set_registered_model_alias(model_name, CHAMPION, str(version))
    if alias_version(mlflow_client, model_name, CHALLENGER) == version:
        mlflow_client.delete_registered_model_alias(model_name, CHALLENGER)
    set_status(mlflow_client, model_name, version, "champion")
    return old if old != version else alias_version(mlflow_client, model_name, PREVIOUS)


def restore(mlflow_client: MlflowClient, model_name: str, before_version: int | None,
            failed_version: int, reason: str) -> str:
    """Roll back: champion back to before_version, the failed version tagged with why;
    returns the reason recorded."""
    if before_version is not None:
        mlflow_client.set_registered_model_alias(model_name, CHAMPION, str(before_version))
    if alias_version(mlflow_client, model_name, CHALLENGER) == failed_version:
        mlflow_client.delete_registered_model_alias(model_name, CHALLENGER)
    # The failing step tagged the precise reason already; the rollback's own reason is the
    # fallback for failures that could not (a crashed task).
    tags = mlflow_client.get_model_version(model_name, str(failed_version)).tags
    recorded = tags.get("reason") or reason
    set_status(mlflow_client, model_name, failed_version, "rolled_back", recorded)
    return str(recorded)


def load_model(mlflow_client: MlflowClient, model_name: str, version: int) -> Any:
    """The registered sklearn model, downloaded from the client's tracking server."""
    uri = mlflow_client.get_model_version_download_uri(model_name, str(version))
    return mlflow.sklearn.load_model(uri)
