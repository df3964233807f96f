"""MLflow tracking and registry conventions: runs, versions and the aliases that say who serves.

`challenger` is the candidate, `champion` the served version, `previous` the one before it.
Every version records `before_version` (the champion when it was registered) and its `status`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from numpy.typing import NDArray

from onecommit.errors import OnecommitError
from onecommit.vocabulary import CHALLENGER, CHAMPION, PREVIOUS

# What loading a logged ONNX model needs, pinned to what exported it. Given, MLflow skips
# inferring them, which imports the model in a subprocess and cost 12 s of every training task.
_SERVING_REQUIREMENTS = [f"{name}=={importlib.metadata.version(name)}"
                         for name in ("onnx", "onnxruntime", "numpy")]
# The golden rows a version is smoke-tested on, logged beside the model in its run.
GOLDEN, GOLDEN_ROWS = "golden/rows.npy", 32
# Tags every version carries from its run: the served artifact's checksum, its signature, and
# where it came from when it was promoted from another environment.
CHECKSUM = "onnx_sha256"
_CARRIED = (CHECKSUM, "signature", "feature_names", "source_env", "source_version",
            "source_run_id", "source_git_sha")


class RegistryError(OnecommitError):
    """The registry does not hold what a step needs, or holds something else than recorded."""


def checksum(onnx_bytes: bytes) -> str:
    return hashlib.sha256(onnx_bytes).hexdigest()


@dataclass(frozen=True)
class Artifact:
    """What a candidate run logs: the ONNX model, the rows it is smoke-tested on, and tags
    (its signature, features and, when promoted, its lineage)."""

    onnx_bytes: bytes
    golden: NDArray[Any]
    tags: dict[str, str]

    @classmethod
    def trained(cls, onnx_bytes: bytes, holdout: NDArray[Any],
                feature_names: list[str]) -> Artifact:
        """A model trained here: smoke-tested on the first holdout rows."""
        from onecommit.lifecycle.export import signature

        return cls(onnx_bytes, holdout[:GOLDEN_ROWS], {
            "signature": json.dumps(signature(onnx_bytes)),
            "feature_names": json.dumps(feature_names)})


# The inputs fingerprint a version was built from (the sync's digest of what decides the
# artifact): a later deploy of the same inputs reuses the version instead of training again.
FINGERPRINT = "inputs_fingerprint"


@dataclass(frozen=True)
class RunContext:
    """Where a run comes from: recorded as tags on the run and the version."""

    git_sha: str
    env: str
    dag_run_id: str
    fingerprint: str = ""

    def tags(self) -> dict[str, str]:
        tags = {"git_sha": self.git_sha, "env": self.env, "dag_run_id": self.dag_run_id}
        return tags | ({FINGERPRINT: self.fingerprint} if self.fingerprint else {})


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


def log_candidate(mlflow_client: MlflowClient, model_name: str, artifact: Artifact,
                  params: dict[str, Any], metrics: dict[str, float],
                  context: RunContext) -> Candidate:
    """One MLflow run with params, metrics, the ONNX model with its signature, the golden rows
    and the artifact's checksum."""
    import onnx

    from onecommit.lifecycle.training import OnnxModel

    experiment = mlflow.set_experiment(model_name)
    before = alias_version(mlflow_client, model_name, CHAMPION)
    tags = {**context.tags(), **artifact.tags, "before_version": str(before or ""),
            CHECKSUM: checksum(artifact.onnx_bytes)}
    with mlflow.start_run(experiment_id=experiment.experiment_id, tags=tags) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        example = artifact.golden[:3]
        signature = infer_signature(example, OnnxModel(artifact.onnx_bytes).outputs(example))
        logged = mlflow.onnx.log_model(onnx.load_from_string(artifact.onnx_bytes), name="model",
                                       signature=signature,
                                       pip_requirements=_SERVING_REQUIREMENTS,
                                       save_as_external_data=False)
        with tempfile.TemporaryDirectory() as scratch:
            rows = Path(scratch) / Path(GOLDEN).name
            np.save(rows, artifact.golden)
            mlflow.log_artifact(str(rows), str(Path(GOLDEN).parent))
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


# The tag naming the latest DAG run that reused a version (built before from the same inputs).
REUSED_BY = "reused_by"


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
    carried = {k: v for k, v in mlflow_client.get_run(candidate.run_id).data.tags.items()
               if k in _CARRIED}
    tags = {**context.tags(), **carried, "before_version": str(before or ""),
            "status": "registered"}
    version = mlflow.register_model(candidate.model_uri, model_name, tags=tags)
    mlflow_client.set_registered_model_alias(model_name, CHALLENGER, version.version)
    return int(version.version), before


def version_with_fingerprint(mlflow_client: MlflowClient, model_name: str,
                             fingerprint: str) -> int | None:
    """The newest version built from these inputs that did not fail, if any."""
    try:
        found = mlflow_client.search_model_versions(
            f"name = '{model_name}' and tags.{FINGERPRINT} = '{fingerprint}'")
    except MlflowException:
        return None  # No such registered model yet.
    usable = [int(v.version) for v in found if v.tags.get("status") != "failed"]
    return max(usable, default=None)


def reuse(mlflow_client: MlflowClient, model_name: str, version: int,
          context: RunContext) -> tuple[int, int | None]:
    """An existing version as this run's challenger (same inputs, same artifact: nothing is
    trained or registered); returns (version, before_version)."""
    before = alias_version(mlflow_client, model_name, CHAMPION)
    mlflow_client.set_registered_model_alias(model_name, CHALLENGER, str(version))
    mlflow_client.set_model_version_tag(model_name, str(version), REUSED_BY,
                                        context.dag_run_id)
    mlflow_client.set_model_version_tag(model_name, str(version), "before_version",
                                        str(before or ""))
    return version, before


def reused_version(mlflow_client: MlflowClient, model_name: str,
                   dag_run_id: str) -> tuple[int, int | None] | None:
    """(version, before_version) of the version a DAG run reused, if it reused one."""
    found = mlflow_client.search_model_versions(
        f"name = '{model_name}' and tags.{REUSED_BY} = '{dag_run_id}'")
    if not found:
        return None
    before = found[0].tags.get("before_version") or None
    return int(found[0].version), int(before) if before else None


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


def load_onnx(mlflow_client: MlflowClient, model_name: str, version: int) -> bytes:
    """The version's ONNX model as the registry holds it, checked against the checksum
    recorded when it was logged: what is served is what was evaluated."""
    recorded = version_tags(mlflow_client, model_name, version).get(CHECKSUM)
    uri = mlflow_client.get_model_version_download_uri(model_name, str(version))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=scratch, tracking_uri=mlflow_client.tracking_uri))
        files = sorted(folder.rglob("*.onnx"))
        if len(files) != 1:
            raise RegistryError(f"version {version} of {model_name} holds {len(files)} ONNX "
                                "files, expected one: it was not logged by onecommit")
        onnx_bytes = files[0].read_bytes()
    if recorded != checksum(onnx_bytes):
        raise RegistryError(f"version {version} of {model_name}: the registry's ONNX model has "
                            f"checksum {checksum(onnx_bytes)[:12]}, the one recorded at "
                            f"training is {str(recorded)[:12]}: it changed since; deploy a "
                            "new version")
    return onnx_bytes


def golden_rows(mlflow_client: MlflowClient, model_name: str, version: int) -> NDArray[Any]:
    """The rows the version is smoke-tested on, logged in its run."""
    run_id = str(mlflow_client.get_model_version(model_name, str(version)).run_id)
    with tempfile.TemporaryDirectory() as scratch:
        path = mlflow_client.download_artifacts(run_id, GOLDEN, scratch)
        rows: NDArray[Any] = np.load(io.BytesIO(Path(path).read_bytes()))
        return rows


def version_tags(mlflow_client: MlflowClient, model_name: str, version: int) -> dict[str, str]:
    tags: dict[str, str] = mlflow_client.get_model_version(model_name, str(version)).tags
    return tags
