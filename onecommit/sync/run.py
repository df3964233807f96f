"""One sync pass: record each commit pushed since the last pass, then converge on the tip.
A failure of one commit, whatever it is, becomes that commit's `error` record and the pass
goes on: nothing a commit holds can block the loop."""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Any

from onecommit.clients.airflow import AirflowClient, AirflowError, platform_client
from onecommit.gitops_remote import last_synced_file
from onecommit.lifecycle.dags import DEPLOY_DAG
from onecommit.lifecycle.notify import send
from onecommit.settings import Settings
from onecommit.sync import convergence, git, heal, prune, records, validation
from onecommit.sync.records import SyncRecord


@dataclass
class Pass:
    """What one pass did: the records it appended and the tip's per-model diff."""

    records: list[SyncRecord] = field(default_factory=list)
    diffs: list[convergence.ModelDiff] = field(default_factory=list)


@contextmanager
def _sync_lock(settings: Settings) -> Iterator[None]:
    """One pass at a time per platform (the hook's, the periodic resync's, `invoke sync`)."""
    marker = last_synced_file(settings)
    marker.parent.mkdir(parents=True, exist_ok=True)
    with (marker.parent / "sync.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _one_line(error: BaseException) -> str:
    """The reason an error record gives: its kind and first line, bounded (never a file's
    content beyond what a message of ours quotes)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else 'no message'}"


def _guarded(settings: Settings, sha: str, env: str,
             work: Callable[[], SyncRecord]) -> SyncRecord:
    try:
        with validation.time_limit(settings.sync_step_timeout_s, f"the sync of {sha[:12]}"):
            return work()
    except Exception as error:  # any failure of one commit is that commit's record
        return SyncRecord(sha=sha, env=env, changed=[], action="error",
                          problems=[_one_line(error)])


def _record_commit(settings: Settings, repo: Path, sha: str, env: str) -> SyncRecord:
    """A commit a newer tip supersedes: validated and recorded, nothing deployed from it."""
    record = SyncRecord(sha=sha, env=env, changed=git.changed_files(repo, sha))
    with git.checkout(repo, sha) as tree:
        record.problems = validation.validate(tree, [], settings, env, record.changed)
    if record.problems:
        record.action = "rejected"
        _notify_rejected(settings, record)
    return record


def _converge(settings: Settings, repo: Path, tip: str, env: str, origin: str, *,
              new: bool, only: str | None, dry_run: bool, result: Pass) -> SyncRecord:
    """Deploy every OutOfSync model of the tip (or only `only`)."""
    record = SyncRecord(sha=tip, env=env, changed=git.changed_files(repo, tip) if new else [])
    history = records.read_syncs(settings)
    with git.checkout(repo, tip) as tree:
        if new or _rejected_before(history, tip):
            record.problems = validation.tree_problems(tree, settings, record.changed)
        if record.problems:
            record.action = "rejected"
            return record
        specs, _ = validation.specs_of(tree, env, settings)
        policy, _ = validation.policy_of(tree, env, settings)
        desired: dict[str, str | None] = {
            model: convergence.fingerprint(repo, tip, spec, settings)
            for model, spec in specs.items()}
        gone = convergence.deployed_models(history) - set(desired)
        desired |= dict.fromkeys(gone)
        result.diffs = convergence.compare(convergence.registry_client(settings), desired, only)
        for diff in result.diffs:
            if diff.desired is None and diff.sync == "OutOfSync":
                diff.action, diff.reason = ("prune", "") if policy.prune else (
                    "wait", "its spec is gone; prune is off")
        for diff in [] if dry_run else [d for d in result.diffs if d.action == "prune"]:
            prune.retire(settings, diff.model, tip)
            record.pruned.append(diff.model)
        if not dry_run:
            _observe(settings, tip, history, result.diffs, record, policy.self_heal)
        out_of_sync = [d for d in result.diffs if d.sync == "OutOfSync" and d.desired]
        if not out_of_sync:
            return _settled(record)
        airflow = platform_client(settings)
        try:
            attempts = {d.model: convergence.plan(d, tip, history, airflow, policy.self_heal)
                        for d in out_of_sync}
            deploying = [model for model, attempt in attempts.items() if attempt is not None]
            record.problems = validation.deep_problems(tree, specs, deploying, settings, env)
            if record.problems:
                record.action = "rejected"
                return record
            record.waiting = {d.model: d.reason for d in out_of_sync if d.action == "wait"}
            record.queued = [d.model for d in out_of_sync if d.queued]
            for model in deploying if not dry_run else []:
                attempt = attempts[model]
                assert attempt is not None
                run_id = records.dag_run_id(tip, env, model, attempt)
                fingerprint = desired[model]
                assert fingerprint is not None
                _trigger(airflow, run_id, {"git_sha": tip, "env": env, "repo": origin,
                                           "spec": convergence.spec_conf(specs[model]),
                                           "fingerprint": fingerprint})
                record.deploys[model], record.fingerprints[model] = run_id, fingerprint
        finally:
            airflow.close()
    return _settled(record)


def _observe(settings: Settings, tip: str, history: list[dict[str, Any]],
             diffs: list[convergence.ModelDiff], record: SyncRecord, self_heal: bool) -> None:
    """Each model's drift between the registry's champion and serving: pins or traffic changed
    while no deploy of it runs (a rollout changes both legitimately). Put back when the env
    says `self_heal`; noted with the model's sync status for the rollout page either way."""
    with heal.serving_store(settings) as store:
        for diff in diffs:
            if diff.desired is None:
                continue  # gone from the tip: prune's
            champion = diff.served.champion
            drift = (heal.serving_drift(store, diff.model, champion)
                     if diff.sync == "Synced" and champion is not None else [])
            if drift and _deploying(settings, history, diff.model):
                drift = []
            if drift and self_heal:
                assert champion is not None  # drift is only looked for under a champion
                heal.put_back(store, diff.model, champion, tip, drift)
                record.healed[diff.model], drift = drift, []
            heal.note_status(store, diff.model, {
                "kind": "sync", "status": diff.sync, "tip": tip,
                "deployed": diff.served.git_sha, "drift": drift})


def _deploying(settings: Settings, history: list[dict[str, Any]], model: str) -> bool:
    earlier = convergence.last_deploys(history, model)
    if not earlier:
        return False
    airflow = platform_client(settings)
    try:
        return convergence.run_state(airflow, earlier[-1][1]) in ("queued", "running")
    finally:
        airflow.close()


def _settled(record: SyncRecord) -> SyncRecord:
    """The record's action from what the pass did."""
    if record.deploys:
        record.action, record.triggered_at = "triggered", records.now()
    elif record.pruned:
        record.action = "pruned"
    elif record.healed:
        record.action = "healed"
    return record


def _rejected_before(history: list[dict[str, object]], sha: str) -> bool:
    """Whether the commit's last record rejected it (a tip that is not deployable stays so:
    the resync validates it again, and finds it still rejected)."""
    mine = [r for r in history if r.get("sha") == sha and r.get("action") != "failed"]
    return bool(mine) and mine[-1].get("action") == "rejected"


def _trigger(airflow: AirflowClient, run_id: str, conf: dict[str, object]) -> None:
    airflow.wait_for_dag(DEPLOY_DAG)
    try:
        airflow.trigger(DEPLOY_DAG, conf, run_id)
    except AirflowError as error:
        if error.status != HTTPStatus.CONFLICT:  # 409: the run exists already.
            raise


def _notify_rejected(settings: Settings, record: SyncRecord) -> None:
    send(settings, "sync rejected", f"commit {record.sha[:12]} failed validation; nothing "
         "was deployed", {"sha": record.sha, "env": record.env,
                          "problems": "\n".join(record.problems[:5])})


def _worth_recording(record: SyncRecord, new: bool,
                     history: list[dict[str, object]]) -> bool:
    """A periodic pass records only news: a new tip, a deploy started, or a new problem."""
    if new or record.deploys or record.pruned or record.healed:
        return True
    if not record.problems and not record.waiting:
        return False  # Nothing to do: what serves is what the tip asks for.
    mine = [r for r in history if r.get("sha") == record.sha and r.get("action") != "failed"]
    last = mine[-1] if mine else {}
    return (record.action, record.problems, record.waiting) != (
        last.get("action"), last.get("problems"), last.get("waiting"))


def sync(settings: Settings, repo: Path, tip: str, env: str, origin: str | None = None, *,
         only: str | None = None, dry_run: bool = False) -> Pass:
    """Record every commit up to `tip` not seen yet, oldest first, then converge on `tip`.
    `origin` is where deploy runs read the commit from (the repository's path or URL; default
    `repo`). A dry run records, triggers and marks nothing: it only compares."""
    result = Pass()
    with _sync_lock(settings):
        last = records.last_synced(settings)
        rewritten = git.rewritten(repo, tip, last)
        pending = git.pending_commits(repo, tip, last)
        for commit in pending[:-1] if not dry_run else []:
            record = _guarded(settings, commit, env,
                              partial(_record_commit, settings, repo, commit, env))
            records.append(settings, record)
            records.mark_synced(settings, commit)
            result.records.append(record)
        new = bool(pending)
        history = records.read_syncs(settings)
        record = _guarded(settings, tip, env, lambda: _converge(
            settings, repo, tip, env, origin or str(repo), new=new, only=only, dry_run=dry_run,
            result=result))
        record.rewritten = rewritten
        if dry_run:
            return result
        if record.action == "rejected" and new:
            _notify_rejected(settings, record)
        if _worth_recording(record, new, history):
            records.append(settings, record)
            result.records.append(record)
        records.mark_synced(settings, tip)
    return result
