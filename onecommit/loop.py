"""The one-commit loop as a user drives it (`invoke demo-commit`): edit the model spec in the
gitops working clone, commit, push, keep live traffic flowing through the gateway, follow what
the push set off, and report the outcome with per-stage timings."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import yaml

from onecommit import gitops_remote, sync
from onecommit.clients.airflow import AirflowClient, platform_client
from onecommit.errors import OnecommitError
from onecommit.lifecycle import data, registry, rollout
from onecommit.lifecycle.dags import DEPLOY_DAG, ROLLBACK_DAG
from onecommit.lifecycle.spec import ModelSpec, SpecError, dump_spec, parse_spec, spec_files
from onecommit.platform.components import gateway_admin_token
from onecommit.settings import Settings
from onecommit.traffic_generator import TrafficGenerator, served_input
from onecommit.vocabulary import CHAMPION

CommitKind = Literal["good", "bad", "worse", "invalid"]
# held: the rollout ended inconclusive and its spec says hold (the challenger left serving).
Outcome = Literal["promoted", "rolled_back", "held", "rejected", "failed"]
EXPECTED: dict[CommitKind, Outcome] = {"good": "promoted", "bad": "rolled_back",
                                       "worse": "rolled_back", "invalid": "rejected"}
# A worse commit's flipped answers: 10 points of accuracy lost, which leaves a ~0.96-accurate
# model above the dev spec's absolute floor (min_online_accuracy 0.85), so only the comparison
# with the champion on the same traffic catches it.
_WORSE_FAULTS = {"flip_rate": 0.1, "after_requests": 10}
# The parameter a demo commit changes per built-in trainer, and the values it cycles through:
# each is a real change of the model.
_DEMO_PARAMS: dict[str, tuple[str, tuple[float, ...]]] = {
    "logistic_regression": ("C", (0.25, 0.5, 1.0, 2.0, 4.0)),
    "ridge": ("alpha", (0.25, 0.5, 1.0, 2.0, 4.0)),
    **{trainer: ("n_estimators", (40, 60, 80, 100, 120))
       for trainer in ("random_forest", "gradient_boosting", "xgboost", "lightgbm")},
}


class LoopError(OnecommitError):
    """The loop could not be followed to its end; the message says where it stopped."""


@dataclass(frozen=True)
class Span:
    """One bar of a commit's timeline, in seconds after the push: the sync's work, a task
    waiting for the scheduler (`queued`: from when its upstream ended to its start), or a
    task running."""

    lane: str
    kind: Literal["sync", "queued", "run"]
    start_s: float
    end_s: float


@dataclass
class CommitReport:
    """One model's deploy from one commit."""

    git_sha: str
    kind: CommitKind
    model: str
    outcome: Outcome | None = None
    champion_version: int | None = None
    challenger_version: int | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    dag_run_id: str | None = None
    rollback_run_id: str | None = None
    reason: str | None = None
    traffic: dict[str, int] = field(default_factory=dict)
    # The rollout pauses the spec mandates, and push → promoted beyond them.
    mandated_seconds: float = 0.0
    overhead_seconds: float | None = None
    # Each task's wait for the scheduler and its run, as Airflow recorded them.
    task_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    timeline: list[Span] = field(default_factory=list)

    @property
    def as_expected(self) -> bool:
        return self.outcome == EXPECTED[self.kind]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def served_version(settings: Settings, model: str) -> str | None:
    """The version the gateway's routed path answers with, asked with one real inference of
    zeros shaped as the served model's input."""
    served = served_input(settings.gateway_url, model, settings.gateway_verify())
    if served is None:
        return None
    row = np.zeros((1, served.features), dtype=np.float32)
    response = httpx.post(f"{settings.gateway_url}/v2/models/{model}/infer",
                          json=served.body(row), timeout=10, verify=settings.gateway_verify())
    return response.headers.get("x-onecommit-version") if response.status_code == 200 else None


def champion_version(settings: Settings, model: str) -> int | None:
    return registry.alias_version(registry.client(settings.url(settings.mlflow_port)), model,
                                  CHAMPION)


def spec_path(settings: Settings, model: str) -> Path:
    return gitops_remote.work_dir(settings) / "envs" / settings.gitops_env / "models" / \
        f"{model}.yaml"


def models(settings: Settings) -> list[str]:
    """The models of the platform's env, as the gitops working clone holds their specs."""
    return [path.stem for path in spec_files(gitops_remote.work_dir(settings),
                                             settings.gitops_env)]


def edit_spec(base: dict[str, Any], kind: CommitKind) -> tuple[dict[str, Any], str]:
    """The spec a demo commit pushes, made from a valid one, and a line of its commit message.
    Good, bad and worse commits change a parameter of the built-in trainer; bad also turns on
    serving-side errors for the new version, so it passes offline evaluation and the smoke test
    and then fails under live traffic; worse makes it answer a wrong class for a share of
    requests, without errors, so only the comparison with the champion rolls it back."""
    training = base.get("training", {})
    if kind == "invalid":
        return ({**base, "training": {**training, "trainer": "svm"}},
                "try an unknown trainer (the sync must reject it)")
    if kind == "worse" and base.get("task") == "regression":
        raise LoopError(f"model {base['model']}: a worse commit flips answered classes, which a "
                        "regression model has not; use --bad (serving errors) for it")
    if training.get("trainer") not in _DEMO_PARAMS:
        raise LoopError(f"model {base['model']}: a demo commit changes a built-in trainer's "
                        "parameter, and this model trains with its own code: edit it and push")
    name, values = _DEMO_PARAMS[training["trainer"]]
    params = training.get("params", {})
    old = params.get(name, values[0])
    new = values[(values.index(old) + 1) % len(values)] if old in values else values[0]
    edited = {**base, "training": {**training, "params": {**params, name: new}}}
    edited.pop("faults", None)
    message = f"retrain {base['model']} with {name}={new} (was {old})"
    if kind == "bad":
        edited["faults"] = {"error_rate": 0.5, "after_requests": 10}
        message += ", with serving faults injected in the new version"
    elif kind == "worse":
        edited["faults"] = dict(_WORSE_FAULTS)
        message += (f", answering a wrong class for {_WORSE_FAULTS['flip_rate']:.0%} of requests "
                    "in the new version (no errors, above the accuracy floor: only the "
                    "comparison with the champion catches it)")
    return edited, message


def valid_spec(settings: Settings, model: str) -> dict[str, Any]:
    """The newest spec of the model in the clone's history that passes validation: a rejected
    commit must not poison the next one."""
    work = gitops_remote.work_dir(settings)
    if not (work / ".git").is_dir():
        raise LoopError(f"no gitops working clone at {work}: start the platform with "
                        "`invoke up`, which creates it")
    relative = spec_path(settings, model).relative_to(work).as_posix()
    for sha in gitops_remote.git("log", "--format=%H", "--", relative, cwd=work).split():
        data = yaml.safe_load(gitops_remote.git("show", f"{sha}:{relative}", cwd=work))
        try:
            parse_spec(data)
        except SpecError:
            continue
        valid: dict[str, Any] = data
        return valid
    raise LoopError(f"no valid {relative} in the gitops history: fix it and push")


def push_specs(settings: Settings, specs: dict[str, dict[str, Any]], message: str) -> str:
    """Write the models' specs into the working clone, commit them together and push; returns
    the new commit."""
    work = gitops_remote.work_dir(settings)
    for model, spec in specs.items():
        path = spec_path(settings, model)
        header = "".join(line + "\n" for line in path.read_text().splitlines()
                         if line.startswith("#")) if path.exists() else ""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + dump_spec(spec))
        gitops_remote.git("add", str(path), cwd=work)
    gitops_remote.git("commit", "--quiet", "-m", message, cwd=work)
    gitops_remote.git("push", "--quiet", "origin", gitops_remote.BRANCH, cwd=work)
    return gitops_remote.git("rev-parse", "HEAD", cwd=work)


def commit_and_push(settings: Settings, kind: CommitKind, models: list[str]) -> str:
    gitops_remote.git("pull", "--quiet", "--ff-only", cwd=gitops_remote.work_dir(settings))
    edits = {model: edit_spec(valid_spec(settings, model), kind) for model in models}
    message = "; ".join(line for _, line in edits.values())
    return push_specs(settings, {model: spec for model, (spec, _) in edits.items()},
                      message[0].upper() + message[1:])


def wait_for_sync(settings: Settings, sha: str, timeout_s: float = 180) -> dict[str, Any]:
    """The commit's sync record once it says what became of the commit: a record whose models
    wait for their running deploy to end is followed by the pass that deploys them (a model
    that waits for a commit, such as a drift with self_heal off, ends the wait)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records: list[dict[str, Any]] = [r for r in sync.read_syncs(settings)
                                         if r["sha"] == sha and r["action"] != "failed"
                                         and not (r["action"] == "recorded" and r.get("queued"))]
        if records:
            return records[-1]
        time.sleep(0.5)
    raise LoopError(f"commit {sha[:12]} was not synced within {timeout_s:.0f} s: see "
                    f"{gitops_remote.sync_log(settings)}")


@contextmanager
def live_traffic(settings: Settings, specs: list[ModelSpec]) -> Iterator[list[TrafficGenerator]]:
    """Per model, its held-out rows (a data file in the repository read from the working
    clone) replayed through the gateway with their ground truth as feedback."""
    generators = []
    for spec in specs:
        split = data.of_spec(spec, gitops_remote.work_dir(settings))
        generators.append(TrafficGenerator(settings.gateway_url, gateway_admin_token(settings),
                                           spec.model, split.x_holdout, split.y_holdout,
                                           verify=settings.gateway_verify()))
    for generator in generators:
        generator.start()
    try:
        yield generators
    finally:
        for generator in generators:
            generator.stop()


def _when(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def stage_seconds(pushed_at: float, run: dict[str, Any], tasks: list[dict[str, Any]],
                  decisions: list[dict[str, Any]],
                  record: dict[str, Any]) -> dict[str, float]:
    """Per-stage seconds of a deploy run, from the sync record's and Airflow's timestamps."""
    # Only tasks that ran to success: a skipped or upstream-failed task has an end date too.
    spans = {t["task_id"]: (_when(t["start_date"]), _when(t["end_date"])) for t in tasks
             if t["state"] == "success"}
    stages: dict[str, float] = {}
    started, triggered = _when(run.get("start_date")), _when(record.get("triggered_at"))
    if triggered:
        stages["push_to_sync"] = triggered - pushed_at
    if started and triggered:
        stages["sync_to_dag_start"] = started - triggered
    if started:
        stages["push_to_dag_start"] = started - pushed_at

    def span(name: str, first: str, last: str) -> None:
        begin, end = spans.get(first, (None, None))[0], spans.get(last, (None, None))[1]
        if begin and end:
            stages[name] = end - begin

    span("train", "train", "train")
    span("register", "register", "register")
    span("publish_ready", "publish", "ready")
    span("smoke", "smoke", "smoke")
    span("reload", "reload", "reload")
    for decision in decisions:
        stages[f"rollout {decision['step']}"] = decision["seconds"]
        if "abort_to_champion_s" in decision:
            stages["abort_to_champion"] = decision["abort_to_champion_s"]
    span("promote", "promote", "promote")
    if end := spans.get("reload", (None, None))[1]:
        stages["push_to_challenger_serving"] = end - pushed_at
    if end := spans.get("promote", (None, None))[1]:
        stages["push_to_promoted"] = end - pushed_at
    return {name: round(seconds, 2) for name, seconds in stages.items()}


def timeline(pushed_at: float, record: dict[str, Any], run: dict[str, Any],
             tasks: list[dict[str, Any]]) -> list[Span]:
    """A deploy's spans from its own records: the sync record's times, the DAG run's start and
    each task instance's start and end. A task is `queued` from the latest end of a task
    before it (or the run's start) to its own start: the scheduler's latency."""
    spans: list[Span] = []
    synced, triggered = _when(record.get("at")), _when(record.get("triggered_at"))
    started = _when(run.get("start_date"))
    if synced and triggered:
        spans += [Span("sync", "queued", 0.0, synced - pushed_at),
                  Span("sync", "sync", synced - pushed_at, triggered - pushed_at)]
        if started:
            spans.append(Span("dag run", "queued", triggered - pushed_at, started - pushed_at))
    # A skipped task has dates too, but never ran.
    ran = sorted((begin, end, t["task_id"]) for t in tasks if t["state"] in ("success", "failed")
                 and (begin := _when(t["start_date"])) and (end := _when(t["end_date"])))
    ends = [started] if started else []
    for begin, end, task_id in ran:
        ready = max((e for e in ends if e <= begin), default=begin)
        spans += [Span(task_id, "queued", ready - pushed_at, begin - pushed_at),
                  Span(task_id, "run", begin - pushed_at, end - pushed_at)]
        ends.append(end)
    return [Span(s.lane, s.kind, round(s.start_s, 2), round(s.end_s, 2)) for s in spans]


def task_seconds(spans: list[Span]) -> dict[str, dict[str, float]]:
    """Per task: seconds queued and seconds running."""
    found: dict[str, dict[str, float]] = {}
    for span in spans:
        if span.lane not in ("sync", "dag run"):
            found.setdefault(span.lane, {})[span.kind] = round(span.end_s - span.start_s, 2)
    return found


def follow(settings: Settings, airflow: AirflowClient, report: CommitReport, pushed_at: float,
           model: str, record: dict[str, Any] | None = None, timeout_s: float = 900) -> None:
    """Wait for the deploy run (and its rollback) and fill in the report; `record` is the
    sync's record of the commit."""
    assert report.dag_run_id is not None
    state = airflow.wait_for_run(DEPLOY_DAG, report.dag_run_id, timeout_s)
    run = airflow.get(f"/dags/{DEPLOY_DAG}/dagRuns/{report.dag_run_id}")
    version, before = _registered(settings, model, report.dag_run_id)
    report.challenger_version = version
    client = registry.client(settings.url(settings.mlflow_port))
    tags = client.get_model_version(model, str(version)).tags if version else {}
    decisions = json.loads(tags.get("rollout.decisions", "[]"))
    tasks = airflow.task_instances(DEPLOY_DAG, report.dag_run_id)
    report.stage_seconds |= stage_seconds(pushed_at, run, tasks, decisions, record or {})
    report.timeline = timeline(pushed_at, record or {}, run, tasks)
    report.task_seconds = task_seconds(report.timeline)
    if state == "success":
        report.outcome = "promoted"
    elif version is None:
        report.outcome, report.reason = "rejected", "refused before registration"
    else:
        report.reason = tags.get("reason")
        report.rollback_run_id = _follow_rollback(airflow, version, timeout_s)
        rollback = (airflow.get(f"/dags/{ROLLBACK_DAG}/dagRuns/{report.rollback_run_id}")
                    if report.rollback_run_id else {})
        begin, end = _when(rollback.get("start_date")), _when(rollback.get("end_date"))
        if begin and end:
            report.stage_seconds["rollback"] = round(end - begin, 2)
            report.stage_seconds["push_to_rolled_back"] = round(end - pushed_at, 2)
            report.timeline.append(Span("rollback", "run", round(begin - pushed_at, 2),
                                        round(end - pushed_at, 2)))
        report.outcome = "rolled_back" if rollback.get("state") == "success" else "failed"
        if tags.get("status") == "held":
            report.outcome = "held"
    champion = registry.alias_version(client, model, CHAMPION)
    report.champion_version = champion
    if report.outcome == "rolled_back" and champion != before:
        report.outcome, report.reason = "failed", f"champion is {champion}, not {before}"


def _registered(settings: Settings, model: str, run_id: str) -> tuple[int | None, int | None]:
    """The version the run registered, or reused (built before from the same inputs)."""
    client = registry.client(settings.url(settings.mlflow_port))
    context = registry.RunContext(git_sha="", env="", dag_run_id=run_id)
    found = registry.registered_version(client, model, context)
    if found is None:
        found = registry.reused_version(client, model, run_id)
    return found if found else (None, None)


def _follow_rollback(airflow: AirflowClient, failed_version: int, timeout_s: float) -> str | None:
    """The rollback run triggered for the failed version, waited for; None if none came."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for run in airflow.runs(ROLLBACK_DAG):
            if str(run["conf"].get("failed_version")) == str(failed_version):
                run_id = str(run["dag_run_id"])
                airflow.wait_for_run(ROLLBACK_DAG, run_id, timeout_s)
                return run_id
        time.sleep(1)
    return None


def demo_commit(settings: Settings, kind: CommitKind, models: list[str],
                say: Callable[[str], None] = print) -> list[CommitReport]:
    """Push one demo commit that changes the models' specs, and follow each model's deploy to
    the end of the loop, under live traffic for the models already served."""
    specs = [parse_spec(valid_spec(settings, model)) for model in models]
    started = time.time()
    serving = [spec for spec in specs if champion_version(settings, spec.model) is not None]
    for spec in specs:
        if spec not in serving:
            say(f"no champion of {spec.model} yet: this commit promotes it directly (no live "
                "traffic to judge it by)")
    with live_traffic(settings, serving) as traffic:
        sha = commit_and_push(settings, kind, models)
        pushed_at = time.time()
        say(f"pushed {sha[:12]} ({kind}); waiting for the sync")
        record = wait_for_sync(settings, sha)
        if record["action"] == "error":
            raise LoopError(f"sync of {sha[:12]} failed: {'; '.join(record['problems'])}")
        reports = [_followed(settings, spec, kind, sha, pushed_at, record, spec in serving, say)
                   for spec in specs]
        sent = {g.model: {"sent": g.sent, "failed": g.failed} for g in traffic}
        for report in reports:
            report.traffic = sent.get(report.model, {})
    for report in reports:
        report.total_seconds = round(time.time() - started, 2)
    return reports


def _followed(settings: Settings, spec: ModelSpec, kind: CommitKind, sha: str,
              pushed_at: float, record: dict[str, Any], serving: bool,
              say: Callable[[str], None]) -> CommitReport:
    report = CommitReport(git_sha=sha, kind=kind, model=spec.model)
    if record["action"] == "rejected":
        report.outcome, report.reason = "rejected", "; ".join(record["problems"])
        return report
    report.dag_run_id = record["deploys"].get(spec.model)
    if report.dag_run_id is None:
        raise LoopError(f"the sync of {sha[:12]} deployed {sorted(record['deploys'])}, not "
                        f"{spec.model}: see {gitops_remote.sync_log(settings)}")
    say(f"sync triggered {DEPLOY_DAG} run {report.dag_run_id}; following it")
    airflow = platform_client(settings)
    try:
        follow(settings, airflow, report, pushed_at, spec.model, record)
    finally:
        airflow.close()
    if report.outcome == "rejected":
        refusals = [p for r in sync.read_syncs(settings) if r["sha"] == sha
                    and r["action"] == "failed" and r.get("model") == spec.model
                    for p in r["problems"]]
        report.reason = refusals[-1] if refusals else report.reason
    report.mandated_seconds = rollout.mandated_seconds(spec) if serving else 0.0
    if report.outcome == "promoted" and "push_to_promoted" in report.stage_seconds:
        report.overhead_seconds = round(
            report.stage_seconds["push_to_promoted"] - report.mandated_seconds, 2)
    return report
