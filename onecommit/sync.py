"""Sync a pushed gitops commit: validate it, then trigger one deploy DAG run per model whose
spec, data file or training code it changed, or only record the sync. The same code runs in
the local profile (the gitops remote's post-receive hook) and on clusters (Argo CD's PostSync
hook Job):

    python -m onecommit.sync --repo <path or URL> [--sha <commit>] [--env <env>]

Commits are synced in order, one at a time: a sync takes every commit on `main` since the last
synced one, oldest first, so two pushes back to back can never trigger out of order.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from onecommit.clients.airflow import AirflowError, platform_client
from onecommit.commands import CommandError, last_lines, run
from onecommit.commits import checkout, local_repo
from onecommit.errors import OnecommitError
from onecommit.gitops_remote import last_synced_file
from onecommit.lifecycle import containment
from onecommit.lifecycle.dags import DEPLOY_DAG
from onecommit.lifecycle.notify import send
from onecommit.lifecycle.spec import ModelSpec, SpecError, load_spec, spec_files
from onecommit.lint import upstream
from onecommit.lint.helm import is_template
from onecommit.settings import PROJECT_ROOT, Settings


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class SyncRecord:
    """What one sync saw and did; appended to `<state dir>/gitops/syncs.jsonl`."""

    sha: str
    env: str
    changed: list[str]
    problems: list[str] = field(default_factory=list)
    # "triggered" (a model to deploy), "recorded" (nothing to deploy), "rejected", "error"
    # (the sync could not finish), or "failed" (a deploy's training refused the commit).
    action: str = "recorded"
    # Model → its deploy run.
    deploys: dict[str, str] = field(default_factory=dict)
    # The model a "failed" record is about (its deploy's training refused the commit).
    model: str | None = None
    # When the sync took up the commit, and when Airflow accepted its deploy run.
    at: str = field(default_factory=_now)
    triggered_at: str | None = None


def syncs_file(settings: Settings) -> Path:
    return settings.state_dir / "gitops" / "syncs.jsonl"


def read_syncs(settings: Settings) -> list[dict[str, Any]]:
    path = syncs_file(settings)
    if not path.exists():
        return []
    records: list[dict[str, Any]] = [json.loads(line) for line in path.read_text().splitlines()
                                     if line.strip()]
    return records


def dag_run_id(sha: str, env: str, model: str) -> str:
    """One deploy run per commit, env and model: re-syncing a commit never deploys it twice."""
    return f"commit-{sha[:12]}-{env}-{model}"


def _git(repo: Path, *args: str) -> str:
    return run(["git", "--git-dir", repo, *args]).stdout


class SyncError(OnecommitError):
    """The sync itself could not run (not a validation failure of the commit)."""


def changed_files(repo: Path, sha: str) -> list[str]:
    """Files the commit changed against its first parent (every file for a root commit)."""
    listing = _git(repo, "diff-tree", "--no-commit-id", "--name-only", "-r", "--root",
                   "-m", "--first-parent", sha)
    return sorted(set(listing.split()))


def pending_commits(repo: Path, sha: str, last_synced: str | None) -> list[str]:
    """Commits on the first-parent chain after `last_synced` up to `sha`, oldest first; just
    `sha` when nothing was synced here before (a cluster's sync Job starts with no history)."""
    if not last_synced or not _git_ok(repo, "cat-file", "-e", f"{last_synced}^{{commit}}"):
        return [sha]
    if _git_ok(repo, "merge-base", "--is-ancestor", sha, last_synced):
        return []  # Already synced by a later push's sync.
    return _git(repo, "rev-list", "--reverse", "--first-parent", f"{last_synced}..{sha}").split()


def _git_ok(repo: Path, *args: str) -> bool:
    return run(["git", "--git-dir", repo, *args], check=False).returncode == 0


@cache
def _yamllint_config() -> YamlLintConfig:
    # The same rules `invoke lint` applies to the gitops tree.
    return YamlLintConfig(file=str(PROJECT_ROOT / "onecommit" / "lint" / "yamllint.yaml"))


def validate(tree: Path, changed: list[str], settings: Settings, env: str) -> list[str]:
    """Everything wrong with the tree, each naming the file; empty when it may be deployed.
    Every spec must parse; the specs this commit deploys are checked deeper (`_deep`)."""
    problems = containment.tree_problems(tree)  # nothing is read from a tree holding links
    if problems:
        return problems
    for path in sorted(tree.rglob("*.y*ml")):
        if is_template(path):
            continue  # Helm templates are YAML only once rendered (the lint renders them).
        relative = path.relative_to(tree)
        for issue in linter.run(path.read_text(), _yamllint_config(), str(relative)):
            if issue.level == "error":
                problems.append(f"{relative}:{issue.line}: {issue.desc} ({issue.rule})")
    for old in sorted(tree.glob("envs/*/model.yaml")):
        relative = old.relative_to(tree)
        problems.append(f"{relative}: one spec per model now: `git mv {relative} "
                        f"{relative.parent}/models/<model>.yaml` (the file named as its model)")
    specs = {}
    for path in sorted(tree.glob("envs/*/models/*.yaml")):
        try:
            specs[path] = load_spec(path)
        except SpecError as error:
            problems.append(str(error).replace(str(tree) + "/", ""))
    for path, spec in specs.items():
        if path.parent.parent.name == env and _deploys(spec, path, tree, changed):
            contained = containment.spec_problems(spec, tree, settings.data_roots)
            problems += [f"{path.relative_to(tree)}: {problem}"
                         for problem in contained or _deep(spec, tree)]
    problems += _render_changed_values(tree, changed, settings)
    return problems


def _deploys(spec: ModelSpec, path: Path, tree: Path, changed: list[str]) -> bool:
    """Whether the commit changed what the model is made of: its spec, its data file in the
    repository, or the folder of its training code."""
    made_of = {path.relative_to(tree).as_posix()}
    if spec.data is not None and spec.data.in_repo:
        made_of.add(Path(spec.data.source).as_posix())
    code = spec.training.entrypoint_file if spec.training is not None else None
    # Code at the repository's root is just its file; code in a folder is the whole folder
    # (the modules it imports beside it).
    folder = (Path(code).parent.as_posix() + "/") if code and "/" in code else None
    if code:
        made_of.add(code)
    return any(p in made_of or (folder is not None and p.startswith(folder)) for p in changed)


def _deep(spec: ModelSpec, tree: Path) -> list[str]:
    """What can be known before training: the data file readable with the columns named, the
    training code's entry point, the trainer's parameters. Object stores are read at
    training."""
    from onecommit.lifecycle import data, training

    problems = []
    if spec.data is not None and spec.data.builtin is None and not spec.data.is_s3:
        try:
            data.table(data.read_frame(spec.data, tree), spec.data, spec.task)
        except data.DataError as error:
            problems.append(str(error))
    if spec.training is not None and spec.training.entrypoint is not None:
        problem = training.entrypoint_problem(spec.training, tree)
        problems += [problem] if problem else []
    elif spec.training is not None and spec.data is not None:
        try:
            training.estimator(spec.training, spec.task, spec.data.seed)
        except training.TrainingError as error:
            problems.append(str(error))
    return problems


def _render_changed_values(tree: Path, changed: list[str], settings: Settings) -> list[str]:
    """`helm template` of each chart whose values changed, with the commit's values file."""
    values = [p for p in changed if p.startswith("envs/") and "/values/" in p
              and (tree / p).exists()]
    if not values:
        return []
    helm = helm_binary(settings)
    if helm is None:
        return [f"{values[0]}: chart values changed but helm could not be installed: run "
                "`invoke lint` to see why (it installs helm into the state dir)"]
    problems = []
    with tempfile.TemporaryDirectory(prefix="onecommit-charts-") as scratch:
        for relative in values:
            chart = PROJECT_ROOT / "charts" / Path(relative).stem.removesuffix("-gpu")
            if not chart.is_dir():
                problems.append(f"{relative}: no chart named {chart.name} under charts/")
                continue
            # Charts over an upstream dependency render without it offline, as in the lint.
            source = upstream.renderable(chart, Path(scratch))
            result = run([helm, "template", chart.name, source, "-f", tree / relative],
                         check=False)
            if result.returncode != 0:
                problems.append(f"{relative}: helm template {chart.name} failed: "
                                f"{last_lines(result.stderr, 1)}")
    return problems


def helm_binary(settings: Settings) -> str | None:
    """helm from the state dir, else installed there from the lint environment (the pinned
    binary `invoke lint` uses), else from PATH."""
    installed = settings.state_dir / "tools" / "bin" / "helm"
    if not installed.exists():
        from onecommit.platform.envs import EnvironmentError_, ensure_env

        try:
            python = ensure_env(settings, "lint") / "bin" / "python"
        except EnvironmentError_:
            return shutil.which("helm")
        # A failed install leaves helm from PATH, or none: validate() says so.
        run([python, "-c", "import sys, pathlib; from onecommit.lint.tools import ensure_tools; "
             "ensure_tools(pathlib.Path(sys.argv[1]))", settings.state_dir], cwd=PROJECT_ROOT,
            check=False)
    return str(installed) if installed.exists() else shutil.which("helm")


def sync_commit(settings: Settings, repo: Path, sha: str, env: str,
                origin: str) -> SyncRecord:
    """Validate one commit and trigger a deploy of each model of the env it changed."""
    record = SyncRecord(sha=sha, env=env, changed=changed_files(repo, sha))
    with checkout(repo, sha) as tree:
        record.problems = validate(tree, record.changed, settings, env)
        if record.problems:
            record.action = "rejected"
            _notify_rejected(settings, record)
            return record
        for path in spec_files(tree, env):
            spec = load_spec(path)
            if _deploys(spec, path, tree, record.changed):
                data: dict[str, Any] = yaml.safe_load(path.read_text())
                record.deploys[spec.model] = _trigger(settings, sha, env, data, origin)
    if record.deploys:
        record.action, record.triggered_at = "triggered", _now()
    return record


def _trigger(settings: Settings, sha: str, env: str, spec: dict[str, Any], origin: str) -> str:
    run_id = dag_run_id(sha, env, spec["model"])
    client = platform_client(settings)
    try:
        client.wait_for_dag(DEPLOY_DAG)
        try:
            client.trigger(DEPLOY_DAG, {"git_sha": sha, "env": env, "spec": spec,
                                        "repo": origin}, run_id)
        except AirflowError as error:
            if error.status != HTTPStatus.CONFLICT:  # 409: this commit's run exists already.
                raise
    finally:
        client.close()
    return run_id


def record_failure(settings: Settings, sha: str, env: str, model: str, reason: str) -> None:
    """A deploy's training refused the commit (its data or code): the reason goes on the
    commit's sync record, as a validation problem would."""
    _append(settings, SyncRecord(sha=sha, env=env, changed=[], action="failed", model=model,
                                 problems=[reason]))


def _notify_rejected(settings: Settings, record: SyncRecord) -> None:
    send(settings, "sync rejected", f"commit {record.sha[:12]} failed validation; nothing "
         "was deployed", {"sha": record.sha, "env": record.env,
                          "problems": "\n".join(record.problems[:5])})


@contextmanager
def _sync_lock(settings: Settings) -> Iterator[Path]:
    """One sync at a time per platform; yields the file holding the last synced commit."""
    marker = last_synced_file(settings)
    marker.parent.mkdir(parents=True, exist_ok=True)
    with (marker.parent / "sync.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield marker


def sync(settings: Settings, repo: Path, sha: str, env: str,
         origin: str | None = None) -> list[SyncRecord]:
    """Sync every commit up to `sha` that has not been synced yet, oldest first. `origin` is
    where deploy runs read the commit from (the repository's path or URL; default `repo`)."""
    records = []
    with _sync_lock(settings) as marker:
        last = marker.read_text().strip() if marker.exists() else None
        for commit in pending_commits(repo, sha, last):
            try:
                record = sync_commit(settings, repo, commit, env, origin or str(repo))
            except (SyncError, CommandError, AirflowError, httpx.HTTPError) as error:
                # Not marked synced: the next push (or a re-run) tries this commit again.
                _append(settings, SyncRecord(sha=commit, env=env, changed=[], action="error",
                                             problems=[f"{type(error).__name__}: {error}"]))
                raise SyncError(f"sync of {commit[:12]} did not finish: {error}") from error
            _append(settings, record)
            marker.write_text(commit)
            records.append(record)
    return records


def _append(settings: Settings, record: SyncRecord) -> None:
    syncs_file(settings).parent.mkdir(parents=True, exist_ok=True)
    with syncs_file(settings).open("a") as out:
        out.write(json.dumps(asdict(record)) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onecommit.sync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", required=True, help="gitops repository: path or URL")
    parser.add_argument("--sha", default="refs/heads/main", help="commit to sync up to")
    parser.add_argument("--env", default=None, help="gitops env (default: ONECOMMIT_GITOPS_ENV)")
    args = parser.parse_args(argv)
    settings = Settings()
    env = args.env or settings.gitops_env
    # A hook inherits GIT_DIR and friends; the git calls here name their repository.
    for variable in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        os.environ.pop(variable, None)
    try:
        with local_repo(args.repo) as repo:
            sha = _git(repo, "rev-parse", "--verify", f"{args.sha}^{{commit}}").strip()
            for record in sync(settings, repo, sha, env, args.repo):
                print(json.dumps(asdict(record)), flush=True)
    except (SyncError, CommandError, AirflowError) as error:
        print(f"sync failed: {error}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
