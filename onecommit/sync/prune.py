"""Prune: a model whose spec is gone from the tip is retired, when the env's sync policy
allows it (`prune: true`, the default, as the seed's Argo CD applications say). Traffic is
drained and every pin removed in one desired-state transaction, its versions are unloaded from
Triton, its aliases archived in the registry (its versions and runs are kept), and the
retirement is noted in desired state's history and notified."""

from __future__ import annotations

import json

from onecommit.lifecycle.notify import send
from onecommit.settings import Settings
from onecommit.vocabulary import ROLES

# Who a retirement's desired-state change and registry tags name.
ACTOR = "sync"
RETIRED = "retired_at_commit"


def retire(settings: Settings, model: str, sha: str) -> None:
    """Retire the model at commit `sha`; safe to repeat (a second call finds nothing left)."""
    from onecommit.lifecycle import registry, rollout
    from onecommit.serving.database import opened
    from onecommit.serving.state import StateStore

    with opened(settings.serving_db) as engine:
        StateStore(engine).retire(
            model, ACTOR, {"commit": sha, "reason": "its spec is gone from the gitops tip"})
    client = registry.client(settings.url(settings.mlflow_port))
    archived = {}
    for alias in ROLES:
        version = registry.alias_version(client, model, alias)
        if version is not None:
            archived[alias] = version
            client.set_model_version_tag(model, str(version), f"archived_alias.{alias}", sha)
            client.delete_registered_model_alias(model, alias)
    client.set_registered_model_tag(model, RETIRED, sha)
    client.set_registered_model_tag(model, "archived_aliases", json.dumps(archived))
    rollout.retire(settings, model)  # no alias names a version any more: all are unloaded
    send(settings, "model retired", f"{model} retired at commit {sha[:12]}: its spec is gone "
         "from the gitops tip", {"model": model, "git_sha": sha, "archived_aliases": archived},
         model=model)


def candidates(deployed: set[str], desired: set[str]) -> list[str]:
    """Models the sync deployed in this env that the tip no longer holds."""
    return sorted(deployed - desired)
