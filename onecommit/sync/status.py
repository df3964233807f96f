"""Per model, what Argo CD shows for an application: sync status (Synced or OutOfSync, with
the tip's commit and the deployed one), health as observed (Healthy, Progressing, Degraded,
Missing), drift between git, the registry and serving, and the last operation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from onecommit.clients.airflow import AirflowError, platform_client
from onecommit.errors import OnecommitError
from onecommit.gitops_remote import remote_dir
from onecommit.platform.health import serving
from onecommit.settings import Settings
from onecommit.sync import convergence, git, heal, records, validation

if TYPE_CHECKING:
    from onecommit.serving.state import StateStore


def _desired(settings: Settings, repo: Path, tip: str) -> dict[str, str | None]:
    with git.checkout(repo, tip) as tree:
        specs, _ = validation.specs_of(tree, settings.gitops_env, settings)
        return {model: convergence.fingerprint(repo, tip, spec, settings)
                for model, spec in specs.items()}


def _last_operation(history: list[dict[str, Any]], model: str) -> dict[str, Any] | None:
    for record in reversed(history):
        if model in record.get("deploys", {}):
            return {"kind": "deploy", "commit": record["sha"], "at": record.get("triggered_at"),
                    "run": record["deploys"][model]}
        if model in record.get("pruned", []):
            return {"kind": "prune", "commit": record["sha"], "at": record["at"]}
        if record.get("model") == model and record["action"] == "failed":
            return {"kind": "refused", "commit": record["sha"], "at": record["at"],
                    "reason": record["problems"][0] if record["problems"] else ""}
    return None


def _health(store: StateStore, diff: convergence.ModelDiff, live: dict[str, Any] | None,
            run_state: str | None) -> tuple[str, list[str]]:
    """Health from what is observed (the gateway's view: whether the champion it pins answers
    in Triton), and the drift between the registry and serving's desired state."""
    if run_state in ("queued", "running"):
        return "Progressing", []
    if diff.served.champion is None or live is None or live.get("champion") is None:
        return "Missing", []
    drift = heal.serving_drift(store, diff.model, diff.served.champion)
    if not live.get("serving"):
        drift.append(f"v{live['champion']} is pinned but not served by Triton")
    degraded = bool(drift) or (run_state == "failed" and diff.sync == "OutOfSync")
    return ("Degraded" if degraded else "Healthy"), drift


def models_status(settings: Settings) -> dict[str, Any]:
    """`invoke status`'s per-model sync and health; "error" when it cannot be known."""
    try:
        repo = remote_dir(settings)
        tip = git.resolve(repo, "refs/heads/main")
        history = records.read_syncs(settings)
        desired = _desired(settings, repo, tip)
        desired |= dict.fromkeys(convergence.deployed_models(history) - set(desired))
        diffs = convergence.compare(convergence.registry_client(settings), desired)
    except (OnecommitError, OSError) as error:
        return {"error": str(error)}
    except Exception as error:  # the registry's client raises its own kinds
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
    live = serving(settings).get("models", {})
    airflow = platform_client(settings)
    try:
        with heal.serving_store(settings) as store:
            report = {}
            for diff in diffs:
                operation = _last_operation(history, diff.model)
                state = None
                if operation is not None and operation["kind"] == "deploy":
                    try:
                        state = convergence.run_state(airflow, operation["run"])
                    except (AirflowError, httpx.HTTPError):
                        state = "unknown"
                    operation["state"] = state
                health, drift = _health(store, diff, live.get(diff.model), state)
                report[diff.model] = {
                    "sync": {"status": diff.sync, "tip": tip,
                             "deployed": diff.served.git_sha, "champion": diff.served.champion,
                             "desired_inputs": diff.desired, "served_inputs":
                             diff.served.fingerprint},
                    "health": {"status": health, "drift": drift},
                    "last_operation": operation}
            return {"models": report}
    finally:
        airflow.close()


def describe(report: dict[str, Any]) -> list[str]:
    """One line per model for `invoke status`, as `argocd app list` shows applications."""
    if "error" in report:
        return [f"sync: not known ({report['error']})"]
    lines = []
    for model, entry in sorted(report["models"].items()):
        sync, health = entry["sync"], entry["health"]
        deployed = (sync["deployed"] or "-")[:12]
        operation = entry["last_operation"] or {}
        last = (f", last {operation['kind']} of {operation['commit'][:12]}"
                + (f" ({operation['state']})" if operation.get("state") else "")
                if operation else "")
        lines.append(f"sync {model}: {sync['status']} (tip {sync['tip'][:12]}, deployed "
                     f"{deployed}), {health['status']}{last}"
                     + "".join(f"\n  drift: {d}" for d in health["drift"]))
    return lines
