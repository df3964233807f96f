"""The loop's pure logic: spec edits, rollout phases and verdicts, sync validation and ordering,
stage timings, and the proof's checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from onecommit import loop, proof, sync
from onecommit.analysis.report import (
    AnalysisReport,
    ArmCounts,
    Observations,
    ShadowCounts,
    Stratum,
    analyse,
)
from onecommit.analysis.verdict import Decision, Elapsed, verdict
from onecommit.lifecycle import rollout as strategy
from onecommit.lifecycle.dags import DEPLOY_DAG
from onecommit.lifecycle.notify import send
from onecommit.lifecycle.spec import SpecError, dump_spec, parse_spec
from onecommit.settings import PROJECT_ROOT, Settings
from onecommit.sync import git
from onecommit.vocabulary import CHAMPION

DEV_SPEC = PROJECT_ROOT / "gitops" / "envs" / "dev" / "models" / "breast-cancer.yaml"
MODEL = "breast-cancer"
SPEC_FILE = f"envs/dev/models/{MODEL}.yaml"


def _spec_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEV_SPEC.read_text())
    data.update(changes)
    return data


def test_good_edit_changes_a_trainer_parameter_and_clears_faults() -> None:
    edited, message = loop.edit_spec(_spec_data(faults={"error_rate": 0.5}), "good")
    spec = parse_spec(edited)
    assert spec.training is not None
    assert spec.training.params["C"] != _spec_data()["training"]["params"]["C"]
    assert spec.faults.error_rate == 0
    assert "C=" in message
    wine = yaml.safe_load((DEV_SPEC.parent / "wine.yaml").read_text())
    assert "n_estimators=" in loop.edit_spec(wine, "good")[1]


def test_a_demo_commit_refuses_a_model_with_its_own_training_code() -> None:
    own = _spec_data(training={"entrypoint": "training/m.py:train"})
    with pytest.raises(loop.LoopError, match="its own code"):
        loop.edit_spec(own, "good")


def test_bad_edit_passes_validation_and_injects_serving_faults() -> None:
    spec = parse_spec(loop.edit_spec(_spec_data(), "bad")[0])
    assert spec.faults.error_rate > spec.analysis.max_error_rate


def test_worse_edit_flips_classes_below_the_champion_but_above_the_floor() -> None:
    edited, message = loop.edit_spec(_spec_data(faults={"error_rate": 0.5}), "worse")
    spec = parse_spec(edited)
    assert spec.training is not None
    assert spec.training.params["C"] != _spec_data()["training"]["params"]["C"]
    assert (spec.faults.flip_rate, spec.faults.error_rate, spec.faults.after_requests) == \
        (0.1, 0, 10)
    assert "wrong class for 10% of requests" in message
    assert "only the comparison with the champion" in message
    assert loop.EXPECTED["worse"] == "rolled_back"
    # A ~0.96-accurate binary model whose answers flip 10 % of the time: still above the
    # absolute floor, and below the champion by more than the comparison's margin.
    accurate, flip = 0.96, spec.faults.flip_rate
    worse = accurate * (1 - flip) + (1 - accurate) * flip
    floor = spec.analysis.min_online_accuracy
    assert floor is not None
    assert worse > floor
    (comparison,) = [m for m in spec.judged_by().metrics if m.judged == "vs_champion"]
    assert comparison.margin is not None
    assert accurate - worse > comparison.margin


def test_worse_edit_refuses_a_regression_model() -> None:
    regression = _spec_data(task="regression", data={"source": "builtin:diabetes"},
                            training={"trainer": "ridge"})
    with pytest.raises(loop.LoopError, match=r"regression model has not; use --bad"):
        loop.edit_spec(regression, "worse")


def test_invalid_edit_is_refused_naming_the_field() -> None:
    broken, _ = loop.edit_spec(_spec_data(), "invalid")
    with pytest.raises(SpecError, match=r"training\.trainer"):
        parse_spec(broken)


def test_phases_follow_each_strategy() -> None:
    def phases(rollout: dict[str, Any]) -> list[strategy.Phase]:
        return strategy.phases(parse_spec(_analysed([], rollout=rollout)), 7)

    canary = phases({"kind": "canary", "steps": [10, 100], "pause_s": 1})
    assert [p.policy["challenger_weight"] for p in canary] == [0.1, 1.0]
    assert phases({"kind": "bluegreen"})[0].policy == {"strategy": "bluegreen",
                                                       "active": "challenger"}
    assert phases({"kind": "shadow"})[0].policy == {"strategy": "shadow"}
    ab = phases({"kind": "ab", "sticky_key": "x-user"})[0].policy
    assert ab["sticky_key"] == "x-user"
    assert ab["experiment"].endswith("-v7")


def _analysed(metrics: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    """The dev spec with these metrics listed besides today's keys."""
    data = _spec_data(**changes)
    data["analysis"] = {**data["analysis"], "metrics": metrics}
    return data


def _arm(requests: int, errors: int = 0, latency_ms: float = 5.0, right: float | None = 0.95,
         infra: int = 0, mae: float | None = None) -> ArmCounts:
    """An arm's counts: every answered request labelled, `right` of them correct (a share),
    or an absolute error of `mae` each (spread by ±10)."""
    answered = requests - errors
    if mae is not None:
        spread = [mae - 10, mae + 10] * (answered // 2)
        return ArmCounts(requests=requests, errors=errors, infra_errors=infra,
                         labelled=len(spread), abs_error_sum=sum(spread),
                         abs_error_squares=sum(v * v for v in spread),
                         latencies_ms=[latency_ms] * answered)
    return ArmCounts(requests=requests, errors=errors, infra_errors=infra,
                     labelled=answered if right is not None else 0,
                     correct=round(answered * (right or 0)),
                     latencies_ms=[latency_ms] * answered)


def _judge(spec_data: dict[str, Any], challenger: ArmCounts, champion: ArmCounts | None = None,
           shadow: ShadowCounts | None = None, step_s: float = 60, weight: float = 0.2,
           previous: AnalysisReport | None = None) -> Decision:
    """Today's keys judged as the rollout judges them: the spec's analysis, the gateway's
    observations, the sequential tests and the one verdict."""
    judged_by = parse_spec(spec_data).judged_by()
    observed = Observations(strata=[Stratum(
        challenger_weight=weight, champion=champion or _arm(400), challenger=challenger)],
        shadow=shadow or ShadowCounts())
    return verdict(judged_by, analyse(judged_by, observed), Elapsed(
        step_s=step_s, step_pause_s=15, rollout_s=step_s), previous)


@pytest.mark.parametrize(("challenger", "decision"), [
    (ArmCounts(), "wait"), (_arm(5), "wait"), (_arm(100), "continue"),
    (_arm(100, errors=50), "abort"), (_arm(100, latency_ms=900), "abort"),
    (_arm(100, right=0.5), "abort"),
])
def test_todays_canary_keys_keep_their_meaning(challenger: ArmCounts, decision: str) -> None:
    assert _judge(_analysed([]), challenger).action == decision


def test_the_dev_spec_aborts_a_challenger_worse_than_the_champion_above_the_floor() -> None:
    """10 points less accurate than the champion, and above the absolute floor of 0.85: only
    the comparison with the champion catches it, and its reason names the interval."""
    worse = _judge(_spec_data(), _arm(400, right=0.87), champion=_arm(400, right=0.97))
    assert worse.action == "abort"
    assert "accuracy from feedback 10.0 points lower than the champion's" in worse.reason
    assert "anytime-valid bounds [" in worse.reason
    assert "margin 3.0 points" in worse.reason
    assert _judge(_analysed([]), _arm(400, right=0.87),
                  champion=_arm(400, right=0.97)).action == "continue"


def test_a_regression_canary_is_judged_by_its_online_mae() -> None:
    spec = yaml.safe_load((PROJECT_ROOT / "examples" / "diabetes-lightgbm" / "envs" / "dev" /
                           "models" / "diabetes.yaml").read_text())
    assert _judge(spec, _arm(100, mae=40.0)).action == "continue"
    far = _judge(spec, _arm(100, mae=95.5))
    assert far.action == "abort"
    assert "mean absolute error 95.5" in far.reason


def test_ab_waits_for_its_sample_and_aborts_only_a_challenger_shown_worse() -> None:
    spec = _analysed([], rollout={"kind": "ab", "sample_size": 200})
    assert _judge(spec, _arm(150), champion=_arm(150), weight=0.5).action == "wait"
    assert _judge(spec, _arm(400), champion=_arm(400), weight=0.5).action == "continue"
    worse = _judge(spec, _arm(400, right=0.86), champion=_arm(400, right=0.97), weight=0.5)
    assert worse.action == "abort"


def test_infrastructure_failures_pause_until_they_stop() -> None:
    failing = _arm(100, errors=50, infra=40)
    decision = _judge(_analysed([]), failing)
    assert decision.action == "pause"
    assert "40 requests failed on infrastructure" in decision.reason
    assert _judge(_analysed([]), _arm(100), champion=_arm(100, infra=3)).action == "pause"
    # The same failures at the next look: the fault has passed; the step is judged again.
    judged_by = parse_spec(_analysed([])).judged_by()
    seen = analyse(judged_by, Observations(strata=[Stratum(
        challenger_weight=0.2, champion=_arm(400), challenger=_arm(100, infra=40))]))
    assert _judge(_analysed([]), _arm(100, infra=40), previous=seen).action == "continue"


def test_shadow_keys_judge_agreement() -> None:
    spec = _analysed([], rollout={"kind": "shadow", "min_agreement": 0.9})

    def shadow(compared: int, agree: int) -> str:
        return _judge(spec, ArmCounts(), champion=_arm(compared), weight=0.0,
                      shadow=ShadowCounts(compared=compared, agree=agree)).action

    assert shadow(3, 3) == "wait"
    assert shadow(99, 50) == "abort"
    assert shadow(200, 198) == "continue"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _commit(work: Path, path: str, text: str) -> str:
    (work / path).parent.mkdir(parents=True, exist_ok=True)
    (work / path).write_text(text)
    _git(work, "add", "--all")
    _git(work, "commit", "-qm", f"change {path}")
    return _git(work, "rev-parse", "HEAD")


def test_pending_commits_are_oldest_first_and_never_twice(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q", "-b", "main")
    shas = [_commit(tmp_path, SPEC_FILE, f"n: {i}\n") for i in range(3)]
    repo = tmp_path / ".git"
    # With no sync history (a cluster's sync Job), only the commit asked for.
    assert git.pending_commits(repo, shas[2], None) == [shas[2]]
    assert git.pending_commits(repo, shas[2], shas[0]) == shas[1:]
    # The sync converges on the branch's tip, whichever push's hook runs it: a tip already
    # synced has nothing pending.
    assert git.pending_commits(repo, shas[2], shas[2]) == []
    assert git.changed_files(repo, shas[1]) == [SPEC_FILE]


def test_validate_names_the_file_for_spec_and_yaml_errors(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    spec = tmp_path / SPEC_FILE
    spec.parent.mkdir(parents=True)
    spec.write_text(dump_spec(_spec_data()))
    assert sync.validate(tmp_path, [MODEL], settings, "dev") == []
    spec.write_text(dump_spec(loop.edit_spec(_spec_data(), "invalid")[0]))
    problems = sync.validate(tmp_path, [MODEL], settings, "dev")
    assert any(SPEC_FILE in p and "training.trainer" in p for p in problems)
    (tmp_path / "envs" / "dev" / "extra.yaml").write_text("key: [unclosed\n")
    problems = sync.validate(tmp_path, [], settings, "dev")
    assert any(p.startswith("envs/dev/extra.yaml:") for p in problems)


def test_the_project_gitops_tree_passes_the_sync(tmp_path: Path) -> None:
    """The tree `invoke up` seeds the gitops remote with is deployable as it is (Helm
    templates in it are YAML only once rendered)."""
    settings = Settings(state_dir=tmp_path / "state")
    assert sync.validate(PROJECT_ROOT / "gitops", [MODEL], settings, "dev") == []


def test_stage_seconds_from_task_timestamps() -> None:
    def task(name: str, start: int, end: int, state: str = "success") -> dict[str, Any]:
        return {"task_id": name, "start_date": f"2026-01-01T00:00:{start:02d}+00:00",
                "end_date": f"2026-01-01T00:00:{end:02d}+00:00", "state": state}

    pushed = loop._when("2026-01-01T00:00:00+00:00")
    assert pushed is not None
    stages = loop.stage_seconds(
        pushed, {"start_date": "2026-01-01T00:00:02+00:00"},
        [task("train", 3, 10), task("register", 10, 12), task("publish", 12, 14),
         task("ready", 14, 16), task("smoke", 16, 17), task("reload", 17, 18),
         task("promote", 40, 41)],
        [{"step": "canary 50%", "seconds": 10.5}],
        {"at": "2026-01-01T00:00:00.500+00:00", "triggered_at": "2026-01-01T00:00:01+00:00"})
    assert stages == {"push_to_sync": 1, "sync_to_dag_start": 1, "push_to_dag_start": 2,
                      "train": 7, "register": 2, "publish_ready": 4,
                      "smoke": 1, "reload": 1, "rollout canary 50%": 10.5, "promote": 1,
                      "push_to_challenger_serving": 18, "push_to_promoted": 41}
    # A deploy that failed in its rollout never reached promote, whatever its end date says.
    aborted = loop.stage_seconds(pushed, {}, [task("reload", 17, 18),
                                              task("promote", 40, 41, "upstream_failed")], [],
                                  {})
    assert aborted == {"reload": 1, "push_to_challenger_serving": 18}


def test_proof_finds_plaintext_secrets_and_private_keys(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text("kind: SealedSecret\nspec: {encryptedData: {a: b}}\n")
    assert proof._no_plaintext_secrets(tmp_path).holds
    (tmp_path / "bad.yaml").write_text("kind: Secret\nmetadata: {name: db}\nstringData: {p: x}\n")
    (tmp_path / "key.txt").write_text("-----BEGIN RSA PRIVATE KEY-----\nabc\n")
    found = proof._no_plaintext_secrets(tmp_path)
    assert not found.holds
    assert "bad.yaml: Secret db" in found.detail
    assert "key.txt: private key" in found.detail


def test_validate_renders_the_chart_whose_values_changed(tmp_path: Path) -> None:
    from tests.conftest import SHARED_ENVS

    settings = Settings(state_dir=tmp_path / "state", envs_path=SHARED_ENVS)
    tree = tmp_path / "tree"
    values = tree / "envs" / "dev" / "values"
    values.mkdir(parents=True)
    for chart in ("gateway", "airflow"):
        source = PROJECT_ROOT / "gitops" / "envs" / "dev" / "values" / f"{chart}.yaml"
        (values / f"{chart}.yaml").write_text(source.read_text())
    changed = ["envs/dev/values/gateway.yaml", "envs/dev/values/airflow.yaml"]
    assert sync.validate(tree, [], settings, "dev", changed) == []
    (values / "gateway.yaml").write_text("replicaCount: many\n")
    problems = sync.validate(tree, [], settings, "dev", changed)
    assert len(problems) == 1
    assert problems[0].startswith("envs/dev/values/gateway.yaml: helm template gateway failed")


def test_timeline_has_each_tasks_wait_for_the_scheduler_and_its_run() -> None:
    def at(second: float) -> str:
        return f"2026-01-01T00:00:{second:05.2f}+00:00"

    pushed = loop._when(at(0))
    assert pushed is not None
    tasks = [{"task_id": "train", "start_date": at(3), "end_date": at(10), "state": "success"},
             {"task_id": "register", "start_date": at(11.5), "end_date": at(12),
              "state": "failed"},
             {"task_id": "notify", "start_date": at(13), "end_date": at(13), "state": "skipped"},
             {"task_id": "promote", "start_date": None, "end_date": None, "state": None}]
    spans = loop.timeline(pushed, {"at": at(0.5), "triggered_at": at(1)},
                          {"start_date": at(2)}, tasks)
    assert spans == [loop.Span("sync", "queued", 0, 0.5), loop.Span("sync", "sync", 0.5, 1),
                     loop.Span("dag run", "queued", 1, 2), loop.Span("train", "queued", 2, 3),
                     loop.Span("train", "run", 3, 10),
                     loop.Span("register", "queued", 10, 11.5),
                     loop.Span("register", "run", 11.5, 12)]
    assert loop.task_seconds(spans) == {"train": {"queued": 1, "run": 7},
                                        "register": {"queued": 1.5, "run": 0.5}}


# The post-receive hook runs `python -m onecommit.sync` on every push, and every invoke command
# loads `tasks`: both must start in about a second, without MLflow or scikit-learn.
@pytest.mark.parametrize("entry", ["onecommit.sync", "tasks"])
def test_entry_points_import_no_training_library(entry: str) -> None:
    probe = (f"import sys, {entry}; "
             "print(sorted({'mlflow', 'sklearn', 'skl2onnx', 'tritonclient'} & set(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, cwd=PROJECT_ROOT).stdout.strip()
    assert loaded == "[]"


def test_a_rollback_is_proven_by_the_notification_naming_its_model_and_version(
        tmp_path: Path) -> None:
    """The proof reads who a notification is about from its fields, not from its text: a
    rollback of another model, or of another version, proves nothing for this one."""
    settings = Settings(state_dir=tmp_path)

    def rolled_back(model: str, version: int) -> None:
        send(settings, "rolled back", "whatever the text says", {}, model=model, version=version)

    state = {"dag_runs": {DEPLOY_DAG: [{"run_id": "run-2", "model": "iris", "state": "failed"}]},
             "models": {"iris": {"registry": {"aliases": {CHAMPION: 1}, "versions": {"2": {
                 "tags": {"dag_run_id": "run-2", "before_version": "1",
                          "status": "rolled_back"}}}}}}}
    rolled_back("wine", 2)
    rolled_back("iris", 3)
    state["notifications"] = proof._notifications(settings)
    assert [(n["model"], n["version"]) for n in state["notifications"]] == [("wine", 2),
                                                                             ("iris", 3)]
    assert not proof._last_deploy_whole(state, "iris").holds
    rolled_back("iris", 2)
    state["notifications"] = proof._notifications(settings)
    assert proof._last_deploy_whole(state, "iris").holds


def test_a_rollout_of_the_longest_limits_notes_fewer_looks_than_the_page_reads() -> None:
    """The page finds a rollout by its start note within its read of the history: the looks
    noted over the longest limits the spec allows must leave it in reach."""
    from onecommit.gateway.ui import HISTORY_LIMIT
    from onecommit.lifecycle.spec import MAX_ROLLOUT_S

    at, noted = 0.0, 0
    while at < MAX_ROLLOUT_S:
        at, noted = at + strategy.note_spacing(at), noted + 1
    assert strategy.note_spacing(0) == strategy.NOTE_EVERY_S
    assert noted < HISTORY_LIMIT - 100  # room for the decisions, pins and policies
