"""The one-commit flow's steps up to the gateway reload, as the DAGs call them: small values in,
small values out. The traffic switch and its endings are in `rollout.py`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from mlflow.tracking import MlflowClient

from onecommit.clients.gateway import Gateway
from onecommit.commits import commit_checkout
from onecommit.errors import OnecommitError
from onecommit.lifecycle import containment, data, registry, sandbox, training, triton
from onecommit.lifecycle.evidence import judge
from onecommit.lifecycle.spec import ModelSpec, Source, parse_spec
from onecommit.secrets import local_store
from onecommit.settings import Settings
from onecommit.vocabulary import CHALLENGER, CHAMPION


class StepFailed(OnecommitError):
    """A step's check failed; the message is the reason recorded on the model version."""


def _mlflow(settings: Settings) -> MlflowClient:
    return registry.client(settings.url(settings.mlflow_port))


def _grpc(settings: Settings) -> str:
    return f"{settings.host}:{settings.triton_grpc_port}"


def needs_tree(spec: ModelSpec) -> bool:
    """Whether training reads the commit's files: a data file or training code in the repo."""
    in_repo = spec.data is not None and spec.data.in_repo
    return in_repo or (spec.training is not None and spec.training.entrypoint is not None)


@contextmanager
def commit_tree(spec: ModelSpec, repo: str | None, sha: str) -> Iterator[Path | None]:
    """The deployed commit's tree when training reads it (code and config of one commit train
    together), else nothing to check out."""
    if not needs_tree(spec):
        yield None
        return
    if not repo:
        raise StepFailed("the spec reads files of its commit, but the deploy run names no "
                         "gitops repository (conf `repo`)")
    with commit_checkout(repo, sha) as tree:
        yield tree


def training_split(settings: Settings, spec: ModelSpec,
                    tree: Path | None) -> tuple[data.Split, str]:
    """The split and where its rows came from: Feast's offline store (a point-in-time join) for
    the built-in breast-cancer set while the Optional layer is attached, else the spec's data.
    Both hold the same rows in the same order, so the holdout stays the champion's."""
    assert spec.data is not None
    if spec.data.builtin == "breast_cancer":
        from onecommit.features import dataset, offline, state

        feature_settings = state.attached_settings(settings)
        if feature_settings is not None:
            features, labels = offline.training_set(feature_settings)
            rows = data.Table(features, labels, dataset.feature_names())
            return data.split(rows, spec.data, spec.task), "feast"
    return contained_load(settings, spec, tree), "data"


def contained_load(settings: Settings, spec: ModelSpec, tree: Path | None) -> data.Split:
    """The spec's data, read only once its path passed the containment checks."""
    assert spec.data is not None
    containment.data_file(spec.data, tree, settings.data_roots)
    return data.load(spec.data, spec.task, tree)


def _trained(settings: Settings, spec: ModelSpec,
             tree: Path | None) -> tuple[registry.Artifact, data.Split, dict[str, Any]]:
    split, feature_source = training_split(settings, spec, tree)
    onnx_bytes = sandbox.trained(settings, spec, split, tree)
    assert spec.training is not None
    assert spec.data is not None
    artifact = registry.Artifact.trained(onnx_bytes, split.x_holdout, split.feature_names)
    params = {"task": spec.task, "trainer": spec.training.trainer or spec.training.entrypoint,
              **spec.training.params, "data": spec.data.source,
              "test_size": spec.data.test_size, "seed": spec.data.seed,
              "feature_source": feature_source}
    return artifact, split, params


def _promoted(settings: Settings, spec: ModelSpec, source: Source,
              ) -> tuple[registry.Artifact, dict[str, Any], dict[str, float]]:
    """The version another environment validated, fetched from its registry with its checksum
    checked, and its lineage."""
    url = settings.promotion_registries.get(source.env)
    if url is None:
        raise StepFailed(f"source.env: no registry known for env {source.env!r}: set "
                         f"ONECOMMIT_PROMOTION_REGISTRIES='{{\"{source.env}\": "
                         "\"<its MLflow URL>\"}'")
    upstream = MlflowClient(tracking_uri=url, registry_uri=url)
    version = source.version or registry.alias_version(upstream, spec.model, CHAMPION)
    if version is None:
        raise StepFailed(f"source: {spec.model} has no champion in {source.env} to promote")
    try:
        onnx_bytes = registry.load_onnx(upstream, spec.model, version)
        tags = registry.version_tags(upstream, spec.model, version)
        golden = registry.golden_rows(upstream, spec.model, version)
    except Exception as error:  # the other registry's answer, whatever it is, is the reason
        raise StepFailed(f"source: version {version} of {spec.model} in {source.env} cannot be "
                         f"fetched from {url}: {error}") from None
    run = upstream.get_run(str(upstream.get_model_version(spec.model, str(version)).run_id))
    lineage = {"source_env": source.env, "source_version": str(version),
               "source_run_id": run.info.run_id, "source_git_sha": tags.get("git_sha", "")}
    carried: dict[str, str] = {k: tags[k] for k in ("signature", "feature_names") if k in tags}
    artifact = registry.Artifact(onnx_bytes, golden, {**carried, **lineage})
    return artifact, {"task": spec.task, **lineage}, {
        f"source_{k}": v for k, v in run.data.metrics.items()
        if not k.startswith(("champion_", "source_"))}


def _same_signature(client: MlflowClient, spec: ModelSpec, champion: int,
                    artifact: registry.Artifact) -> None:
    """A challenger must take the requests its champion takes (its signature and features):
    clients send the same requests. Whether it was built from the same inputs is the sync's
    fingerprint (`registry.FINGERPRINT`), checked before anything is trained."""
    theirs = registry.version_tags(client, spec.model, champion)
    for key in ("signature", "feature_names"):
        mine = json.loads(artifact.tags.get(key, "null"))
        recorded = json.loads(theirs.get(key, "null"))
        if key == "signature":
            mine, recorded = (mine or {}).get("inputs"), (recorded or {}).get("inputs")
        if mine != recorded:
            raise StepFailed(f"inputs differ from the champion's (version {champion}): it takes "
                             f"{recorded}, this candidate {mine}; a model's inputs cannot change "
                             "under its name: deploy it as a new model (a new spec file)")


def train(settings: Settings, conf: dict[str, Any],
          context: registry.RunContext) -> dict[str, Any]:
    """Train (or fetch the promoted version), evaluate against the champion on the same
    holdout, gate, and log the candidate. A version built from the same inputs (the conf's
    `fingerprint`) is reused instead: nothing is trained. A re-run of the same DAG run reuses
    the candidate it logged the first time."""
    spec = parse_spec(conf["spec"])
    client = _mlflow(settings)
    if context.fingerprint:
        same = registry.version_with_fingerprint(client, spec.model, context.fingerprint)
        if same is not None:
            return {"model": spec.model, "reused_version": same}
    earlier = registry.logged_candidate(client, spec.model, context)
    if earlier is not None:
        return {"model": spec.model, "run_id": earlier.run_id, "model_uri": earlier.model_uri}
    logged: dict[str, float] = {}
    split: data.Split | None = None
    if spec.source is not None:
        artifact, params, logged = _promoted(settings, spec, spec.source)
        if spec.data is not None:
            split = contained_load(settings, spec, None)
    else:
        with commit_tree(spec, conf.get("repo"), context.git_sha) as tree:
            artifact, split, params = _trained(settings, spec, tree)
    champion = registry.alias_version(client, spec.model, CHAMPION)
    if champion is not None:
        _same_signature(client, spec, champion, artifact)
    if split is not None:
        logged |= _gated(client, spec, artifact, split, champion)
    candidate = registry.log_candidate(client, spec.model, artifact, params, logged, context)
    return {"model": spec.model, "run_id": candidate.run_id, "model_uri": candidate.model_uri}


def _gated(client: MlflowClient, spec: ModelSpec, artifact: registry.Artifact,
           split: data.Split, champion: int | None) -> dict[str, float]:
    """The candidate's holdout metrics and the champion's on the same rows, once the
    candidate passed the quality gate."""
    metrics = training.evaluate(artifact.onnx_bytes, split, spec.task)
    champion_metrics = (training.evaluate(registry.load_onnx(client, spec.model, champion),
                                          split, spec.task)
                        if champion is not None else None)
    failures = training.gate(spec, metrics, champion_metrics)
    if failures:
        raise StepFailed(f"quality gate: {'; '.join(failures)}")
    return {**metrics, **{f"champion_{k}": v for k, v in (champion_metrics or {}).items()}}


# The commit's own faults: its data, its code, its model or the gate. Final, never retried.
REFUSALS = (data.DataError, training.TrainingError, containment.ContainmentError,
            StepFailed)


def refused(settings: Settings, conf: dict[str, Any], reason: str) -> None:
    """Tell why training refused the commit in a notification (the DAG puts it on the commit's
    sync record too); nothing was registered, nothing that serves changed."""
    from onecommit.lifecycle.notify import send

    model = str(conf["spec"].get("model"))
    send(settings, "train refused", f"{model} at {conf['git_sha'][:12]}: {reason}",
         {"model": model, "git_sha": conf["git_sha"], "env": conf["env"], "reason": reason},
         model=model)


def register(settings: Settings, trained: dict[str, Any],
             context: registry.RunContext) -> dict[str, Any]:
    """Register the trained candidate as `challenger` (once per DAG run), or make the version
    built from the same inputs the challenger."""
    if "reused_version" in trained:
        version, before = registry.reuse(_mlflow(settings), trained["model"],
                                         trained["reused_version"], context)
        return {"model": trained["model"], "version": version, "before_version": before,
                "reused": True}
    candidate = registry.Candidate(run_id=trained["run_id"], model_uri=trained["model_uri"])
    version, before = registry.register(_mlflow(settings), trained["model"], candidate, context)
    return {"model": trained["model"], "version": version, "before_version": before}


def publish(settings: Settings, spec: ModelSpec, version: int) -> None:
    """Load the registered ONNX model (its checksum checked) in Triton beside the served one."""
    onnx_bytes = registry.load_onnx(_mlflow(settings), spec.model, version)
    faults = spec.faults.model_dump() if spec.faults.active else None
    triton.load_beside(_grpc(settings), settings.model_repository, spec.model, version,
                        onnx_bytes, local_store.triton_control_key(settings), faults=faults)


def ready(settings: Settings, model: str, version: int) -> dict[str, Any] | None:
    """The sensor's poke: READY in the registry and READY in Triton. What it saw when both
    held is the evidence of criterion `ready`; None while they do not."""
    status = _mlflow(settings).get_model_version(model, str(version)).status
    if status != "READY" or not triton.version_ready(_grpc(settings), model, version):
        return None
    return {"version": version, "registry_status": status, "triton_ready": True,
            "at": datetime.now(UTC).isoformat()}


def smoke(settings: Settings, spec: ModelSpec, version: int) -> dict[str, Any]:
    """Triton's answers on the version's golden rows against the registry model's own, run in
    ONNX Runtime here; the comparison is the evidence of criterion `smoke`. A difference fails
    the step (and tags the version)."""
    client = _mlflow(settings)
    golden = registry.golden_rows(client, spec.model, version)
    reference = training.OnnxModel(registry.load_onnx(client, spec.model, version))
    comparison = triton.smoke(_grpc(settings), spec.model, version,
                               reference.outputs(golden), golden)
    if comparison.problems:
        _fail(settings, spec.model, version, f"smoke test: {'; '.join(comparison.problems)}")
    return {"version": version, **comparison.as_dict()}


def _fail(settings: Settings, model: str, version: int, reason: str) -> NoReturn:
    """Tag the version with why it failed, then fail the step."""
    registry.set_status(_mlflow(settings), model, version, "failed", reason)
    raise StepFailed(reason)


def reload_challenger(settings: Settings, model: str, version: int) -> dict[str, Any]:
    """The gateway pins the challenger; what it pinned is the evidence of `gateway_reload`."""
    with Gateway(settings, model) as gateway:
        return gateway.reload(CHALLENGER, version)


def record_criteria(settings: Settings, model: str, version: int,
                    evidence: dict[str, dict[str, Any] | None]) -> dict[str, bool]:
    """Write each criterion's evidence and its verdict on the model version."""
    criteria = judge(version, evidence)
    client = _mlflow(settings)
    for name, passed in criteria.items():
        client.set_model_version_tag(model, str(version), f"evidence.{name}",
                                     json.dumps(evidence.get(name), default=str))
        client.set_model_version_tag(model, str(version), f"criterion.{name}",
                                     str(passed).lower())
    return criteria
