"""What the tip asks for against what serves, per model, as Argo CD compares them: each
model's inputs fingerprint from the tip, its champion's fingerprint from the registry, Synced or
OutOfSync, and which deploys to start so the platform converges on the tip."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from onecommit.clients.airflow import AirflowClient
from onecommit.lifecycle.dags import DEPLOY_DAG
from onecommit.lifecycle.spec import ModelSpec
from onecommit.settings import Settings
from onecommit.sync.git import object_id
from onecommit.vocabulary import CHAMPION

if TYPE_CHECKING:  # MLflow loads in the functions that talk to it: a pass that finds nothing
    from mlflow.tracking import MlflowClient  # new to do starts fast (the hook's, each push).

SyncStatus = Literal["Synced", "OutOfSync"]
# The spec's fields that decide the served artifact; the rollout, its analysis and the quality
# gate decide how it is judged, not what it is.
_ARTIFACT_FIELDS = {"task", "data", "training", "source", "faults"}
# Artifact fields added after fingerprints were first recorded: left out while at their
# default, so that an upgrade does not call every served model OutOfSync and retrain it.
_ADDED_LATER = {"faults": {"flip_rate": 0.0}}
# A deploy run in one of these states still holds its model.
_ACTIVE = ("queued", "running")


def fingerprint(repo: Path, sha: str, spec: ModelSpec, settings: Settings) -> str:
    """The digest of what decides the model's artifact at this commit: the spec's artifact
    fields, the data file's content, the training code's folder, the promoted source version."""
    fields = spec.model_dump(mode="json", include=_ARTIFACT_FIELDS)
    for name, defaults in _ADDED_LATER.items():
        for key, default in defaults.items():
            if fields[name].get(key) == default:
                del fields[name][key]
    parts: dict[str, Any] = {"spec": fields}
    if spec.data is not None and spec.data.in_repo:
        parts["data"] = object_id(repo, sha, spec.data.source)
    elif spec.data is not None and spec.data.builtin is None and not spec.data.is_s3:
        local = Path(spec.data.source)
        parts["data"] = (hashlib.sha256(local.read_bytes()).hexdigest()
                         if local.is_file() else None)
    code = spec.training.entrypoint_file if spec.training is not None else None
    if code:
        # Code in a folder is the whole folder (the modules it imports beside it).
        parts["code"] = object_id(repo, sha, str(Path(code).parent) if "/" in code else code)
    if spec.source is not None and spec.source.alias is not None:
        parts["source_version"] = _source_champion(spec, settings)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _source_champion(spec: ModelSpec, settings: Settings) -> int | None:
    """The version the promoting env's champion alias names now (None when unknown here)."""
    from onecommit.lifecycle import registry

    assert spec.source is not None
    url = settings.promotion_registries.get(spec.source.env)
    if url is None:
        return None
    return registry.alias_version(registry.client(url), spec.model, CHAMPION)


@dataclass(frozen=True)
class Served:
    """What serves a model, as the registry says: its champion and what it was built from."""

    champion: int | None
    fingerprint: str | None
    git_sha: str | None


def served(client: MlflowClient, model: str) -> Served:
    from onecommit.lifecycle import registry

    champion = registry.alias_version(client, model, CHAMPION)
    if champion is None:
        return Served(None, None, None)
    tags = registry.version_tags(client, model, champion)
    return Served(champion, tags.get(registry.FINGERPRINT), tags.get("git_sha"))


@dataclass
class ModelDiff:
    """One model's comparison, and what the sync does about it."""

    model: str
    desired: str | None  # None: the spec is gone from the tip.
    served: Served
    # What this sync does: "deploy", "wait" (with why), or "none".
    action: str = "none"
    reason: str = ""
    # Waits for its own running deploy: a later pass deploys the newest inputs.
    queued: bool = False

    @property
    def sync(self) -> SyncStatus:
        if self.desired is None:  # Gone from the tip: Synced once nothing serves it.
            return "Synced" if self.served.champion is None else "OutOfSync"
        return "Synced" if self.desired == self.served.fingerprint else "OutOfSync"

    def lines(self) -> list[str]:
        """The model's diff, as `argocd app diff` prints one resource's."""
        if self.sync == "Synced":
            return []
        head = f"===== {self.model} ======"
        live = (f"champion: v{self.served.champion} (commit {(self.served.git_sha or '?')[:12]},"
                f" inputs {(self.served.fingerprint or 'unknown')[:12]})"
                if self.served.champion is not None else "champion: none")
        wanted = (f"inputs {self.desired[:12]}" if self.desired is not None
                  else "no spec at the tip (pruned when the env allows it)")
        then = f"→ {self.action}{f': {self.reason}' if self.reason else ''}"
        return [head, f"< {live}", "---", f"> {wanted}", then]


def last_deploys(records: list[dict[str, Any]], model: str) -> list[tuple[str, str, str]]:
    """(commit, run id, fingerprint) of each deploy the sync started for the model, oldest
    first."""
    return [(r["sha"], r["deploys"][model], r.get("fingerprints", {}).get(model, ""))
            for r in records if model in r.get("deploys", {})]


def run_state(airflow: AirflowClient, run_id: str) -> str | None:
    """The deploy run's state; None when Airflow does not know the run."""
    try:
        return airflow.run_state(DEPLOY_DAG, run_id)
    except httpx.HTTPStatusError as error:
        if error.response.status_code == httpx.codes.NOT_FOUND:
            return None
        raise


def deployed_models(records: list[dict[str, Any]]) -> set[str]:
    """Models the sync deployed and has not retired since."""
    models: set[str] = set()
    for record in records:
        models |= set(record.get("deploys", {}))
        models -= set(record.get("pruned", []))
    return models


def plan(diff: ModelDiff, tip: str, records: list[dict[str, Any]],
         airflow: AirflowClient, self_heal: bool = True) -> int | None:
    """Decide what to do for an OutOfSync model (sets `diff.action`); returns the attempt
    number of the deploy to start at the tip. A model's deploys run one at a time, in order:
    while its last run is active, the newest desired inputs wait for it (and supersede every
    commit in between). Inputs whose deploy failed are not deployed again until a commit
    changes them; inputs that were deployed and no longer serve (a drift) are put back."""
    earlier = last_deploys(records, diff.model)
    if earlier:
        _, run_id, inputs = earlier[-1]
        state = run_state(airflow, run_id)
        if state in _ACTIVE:
            diff.action, diff.reason = "wait", f"its deploy run {run_id} is {state}"
            diff.queued = True
            return None
        if inputs == diff.desired and state == "failed":
            diff.action, diff.reason = "wait", (f"deploy run {run_id} of these inputs failed: "
                                                "push a commit that changes them")
            return None
        if inputs == diff.desired and state == "success":
            # Deployed, and moved away since (an alias moved by hand): drift.
            if not self_heal:
                diff.action, diff.reason = "wait", ("drift: the champion was moved away from "
                                                    "what the tip asks for; self_heal is off")
                return None
            diff.reason = "put back: the champion was moved away from what the tip asks for"
    diff.action = "deploy"
    return sum(1 for sha, _, _ in earlier if sha == tip)


def registry_client(settings: Settings) -> MlflowClient:
    from onecommit.lifecycle import registry

    # A registry that does not answer fails the pass in seconds (the next pass retries), not
    # after MLflow's default minutes of retries with backoff.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    return registry.client(settings.url(settings.mlflow_port))


def compare(client: MlflowClient, desired: dict[str, str | None],
            only: str | None = None) -> list[ModelDiff]:
    """Each model (or just `only`) against what serves it; a desired None is a model the tip
    no longer holds."""
    return [ModelDiff(model, fp, served(client, model)) for model, fp in sorted(desired.items())
            if only is None or model == only]


def spec_conf(spec: ModelSpec) -> dict[str, Any]:
    """The spec as a deploy run's conf carries it."""
    return spec.model_dump(mode="json")
