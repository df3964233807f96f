"""Git is the desired state, on the real local platform: every model the tip holds deploys
whatever the last commit touched, the same inputs redeploy their version without training, a
spec gone from the tip retires its model, a champion moved by hand is put back, a hostile
commit is recorded and never blocks the next, and models roll out side by side."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from onecommit import gitops_remote, loop, sync
from onecommit.clients.airflow import AirflowClient, platform_client
from onecommit.clients.gateway import Gateway, on_every_worker
from onecommit.lifecycle import registry
from onecommit.lifecycle.dags import DEPLOY_DAG
from onecommit.lifecycle.spec import dump_spec, parse_spec
from onecommit.settings import PROJECT_ROOT, Settings
from onecommit.vocabulary import CHALLENGER, CHAMPION
from tests.conftest import TEST_ROLLOUT, TEST_SYNC_POLICY, make_settings, running, settle

pytestmark = [pytest.mark.platform, pytest.mark.timeout(1800)]
# Two models of the tests' own, made from the seed's wine spec (a small XGBoost model).
FIRST, SECOND = "wine-first", "wine-second"


def _work(platform: Settings) -> Path:
    work = gitops_remote.work_dir(platform)
    gitops_remote.git("pull", "--quiet", "--ff-only", cwd=work)
    return work


def _push(platform: Settings, message: str, edit: Callable[[Path], None]) -> str:
    """Edit the working clone, commit everything and push; returns the commit."""
    work = _work(platform)
    edit(work)
    gitops_remote.git("add", "--all", cwd=work)
    gitops_remote.git("commit", "--quiet", "-m", message, cwd=work)
    gitops_remote.git("push", "--quiet", "origin", gitops_remote.BRANCH, cwd=work)
    return gitops_remote.git("rev-parse", "HEAD", cwd=work)


def _models(work: Path) -> Path:
    return work / "envs" / "dev" / "models"


def _wine(model: str, **training_params: Any) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(
        (PROJECT_ROOT / "gitops" / "envs" / "dev" / "models" / "wine.yaml").read_text())
    spec["model"], spec["rollout"] = model, TEST_ROLLOUT
    spec["analysis"]["min_requests"] = 10
    spec["training"]["params"] = {**spec["training"]["params"], **training_params}
    return spec


def _write(work: Path, spec: dict[str, Any]) -> None:
    (_models(work) / f"{spec['model']}.yaml").write_text(dump_spec(spec))


def _deployed(platform: Settings, airflow: AirflowClient, sha: str) -> dict[str, str]:
    """The commit's sync record's deploys, each waited for to its end: model → final state."""
    record = loop.wait_for_sync(platform, sha)
    assert record["action"] == "triggered", record
    return {model: airflow.wait_for_run(DEPLOY_DAG, run_id)
            for model, run_id in record["deploys"].items()}


def _one_pass(platform: Settings) -> None:
    """One sync pass, as the periodic resync runs it."""
    subprocess.run([sys.executable, "-m", "onecommit.sync", "--repo",
                    str(gitops_remote.remote_dir(platform))], cwd=PROJECT_ROOT, check=True,
                   env={**os.environ, **platform.as_environment()}, capture_output=True,
                   timeout=600)


def _champion(platform: Settings, model: str) -> int | None:
    return registry.alias_version(_registry(platform), model, CHAMPION)


def _registry(platform: Settings) -> Any:
    return registry.client(platform.url(platform.mlflow_port))


def _runs(platform: Settings, model: str) -> int:
    """How many training runs the registry holds for the model."""
    client = _registry(platform)
    experiment = client.get_experiment_by_name(model)
    return 0 if experiment is None else len(client.search_runs([experiment.experiment_id]))


@pytest.fixture(scope="module")
def airflow(platform: Settings) -> Iterator[AirflowClient]:
    client = platform_client(platform)
    yield client
    client.close()


@pytest.fixture(scope="module")
def two_models(platform: Settings, airflow: AirflowClient) -> Settings:
    """A commit adding two models, rejected for one field of one of them; then a fix of that
    field alone deploys both."""
    def add_both(work: Path) -> None:
        _write(work, _wine(FIRST))
        broken = _wine(SECOND)
        broken["quality_gate"]["min"] = {"acuracy": 0.8}
        _write(work, broken)

    rejected = _push(platform, "add two models, one with a typo", add_both)
    assert loop.wait_for_sync(platform, rejected)["action"] == "rejected"
    fixed = _push(platform, "fix the typo", lambda work: _write(work, _wine(SECOND)))
    assert _deployed(platform, airflow, fixed) == {FIRST: "success", SECOND: "success"}
    return platform


def test_a_fix_after_a_rejected_commit_deploys_every_model_it_held_back(
        two_models: Settings) -> None:
    for model in (FIRST, SECOND):
        assert _champion(two_models, model) is not None


def test_a_revert_redeploys_the_earlier_version_without_training(
        two_models: Settings, airflow: AirflowClient) -> None:
    platform = two_models
    earlier = _champion(platform, FIRST)
    changed = _push(platform, "retrain with deeper trees",
                    lambda work: _write(work, _wine(FIRST, max_depth=4)))
    with loop.live_traffic(platform, [parse_spec(_wine(FIRST))]):
        assert _deployed(platform, airflow, changed) == {FIRST: "success"}
        retrained = _champion(platform, FIRST)
        assert retrained != earlier
        runs = _runs(platform, FIRST)
        work = _work(platform)
        gitops_remote.git("revert", "--no-edit", "HEAD", cwd=work)
        gitops_remote.git("push", "--quiet", "origin", gitops_remote.BRANCH, cwd=work)
        reverted = gitops_remote.git("rev-parse", "HEAD", cwd=work)
        assert _deployed(platform, airflow, reverted) == {FIRST: "success"}
    assert _champion(platform, FIRST) == earlier
    assert _runs(platform, FIRST) == runs  # nothing was trained


def test_a_sync_of_what_already_serves_does_nothing(two_models: Settings) -> None:
    before = len(sync.read_syncs(two_models))
    _one_pass(two_models)
    assert len(sync.read_syncs(two_models)) == before


def test_a_champion_moved_by_hand_is_restored(two_models: Settings,
                                              airflow: AirflowClient) -> None:
    platform = two_models
    served = _champion(platform, FIRST)
    assert served is not None
    heal = _push(platform, "self-heal on", lambda work: (work / "envs" / "dev" / "sync.yaml")
                 .write_text("prune: true\nself_heal: true\n"))
    loop.wait_for_sync(platform, heal)
    client = _registry(platform)
    other = max(int(v.version) for v in client.search_model_versions(f"name = '{FIRST}'")
                if int(v.version) != served)
    client.set_registered_model_alias(FIRST, CHAMPION, str(other))
    try:
        with loop.live_traffic(platform, [parse_spec(_wine(FIRST))]):
            _one_pass(platform)
            record = loop.wait_for_sync(platform, heal)
            assert FIRST in record["deploys"], record
            assert airflow.wait_for_run(DEPLOY_DAG, record["deploys"][FIRST]) == "success"
        assert _champion(platform, FIRST) == served
        # Pins and traffic changed through the admin API outside a rollout: put back too.
        client.set_registered_model_alias(FIRST, CHALLENGER, str(other))
        with Gateway(platform, FIRST) as gateway:
            gateway.reload(CHALLENGER, other)
            gateway.traffic(strategy="canary", challenger_weight=0.5)
            _one_pass(platform)
            healed = [r for r in sync.read_syncs(platform) if r["action"] == "healed"]
            assert FIRST in healed[-1]["healed"], healed
        # Every gateway worker follows desired state within a second or so.
        on_every_worker(platform, f"/models/{FIRST}/traffic",
                        lambda answer: answer["challenger_weight"] == 0.0)
        on_every_worker(platform, f"/models/{FIRST}/variants",
                        lambda answer: CHALLENGER not in answer["variants"])
        client.delete_registered_model_alias(FIRST, CHALLENGER)
    finally:
        off = _push(platform, "self-heal off again",
                    lambda work: (work / "envs" / "dev" / "sync.yaml")
                    .write_text(TEST_SYNC_POLICY))
        loop.wait_for_sync(platform, off)


@pytest.mark.e2e  # a canary that pauses a minute per step, by design: the second tier's
def test_two_models_roll_out_side_by_side(two_models: Settings,
                                          airflow: AirflowClient) -> None:
    """One commit changes both models; the first's canary pauses a minute per step, the
    second's seconds: the second is promoted while the first's rollout still runs."""
    platform = two_models
    first = _wine(FIRST, n_estimators=55)
    # Held for the whole pause: evidence in early must not advance it.
    slow = {**first, "rollout": {**TEST_ROLLOUT, "pause_s": 60},
            "analysis": {**first["analysis"], "limits": {"min_dwell_s": 60}}}
    quick = _wine(SECOND, n_estimators=55)

    def both(work: Path) -> None:
        _write(work, slow)
        _write(work, quick)

    sha = _push(platform, "retrain both models", both)
    with loop.live_traffic(platform, [parse_spec(slow), parse_spec(quick)]):
        record = loop.wait_for_sync(platform, sha)
        assert set(record["deploys"]) == {FIRST, SECOND}, record
        assert airflow.wait_for_run(DEPLOY_DAG, record["deploys"][SECOND]) == "success"
        assert airflow.run_state(DEPLOY_DAG, record["deploys"][FIRST]) == "running"
        assert airflow.wait_for_run(DEPLOY_DAG, record["deploys"][FIRST]) == "success"


def test_a_deleted_spec_is_retired_within_one_pass(two_models: Settings) -> None:
    platform = two_models
    removed = _push(platform, f"retire {SECOND}",
                    lambda work: (_models(work) / f"{SECOND}.yaml").unlink())
    record = loop.wait_for_sync(platform, removed)
    assert record["pruned"] == [SECOND], record
    assert _champion(platform, SECOND) is None
    tags = _registry(platform).get_registered_model(SECOND).tags
    assert tags["retired_at_commit"] == removed
    rows = [[13.0, 2.0, 2.4, 19.0, 100.0, 2.5, 2.5, 0.3, 1.6, 5.0, 1.0, 3.0, 1000.0]]
    answer = httpx.post(f"{platform.gateway_url}/v2/models/{SECOND}/infer", timeout=10,
                        json={"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 13],
                                          "data": rows}]})
    assert answer.status_code == 404, answer.text
    assert f"retired at commit {removed[:12]}" in answer.json()["error"]


@pytest.mark.parametrize(("name", "poison"), [
    ("nested", lambda work: (_models(work) / "nested.yaml").write_text(
        "model: " + "[" * 800 + "]" * 800 + "\n")),
    # The second hostile kind in the e2e tier: one is enough to keep `make test` in 15 min.
    pytest.param("inf-label", lambda work: _add_csv_model(work, "inf-label", "inf"),
                 marks=pytest.mark.e2e),
])
def test_a_hostile_commit_is_recorded_and_the_next_good_one_deploys(
        two_models: Settings, airflow: AirflowClient, name: str,
        poison: Callable[[Path], None]) -> None:
    platform = two_models
    bad = _push(platform, f"poison: {name}", poison)
    record = loop.wait_for_sync(platform, bad)
    assert record["action"] == "rejected", record
    assert all("\n" not in p for p in record["problems"])

    def fix(work: Path) -> None:
        for path in _models(work).glob(f"{name}.yaml"):
            path.unlink()
        for path in (work / "data").glob(f"{name}.csv"):
            path.unlink()
        _write(work, _wine(FIRST, n_estimators=40 + len(name)))

    good = _push(platform, f"after {name}: retrain {FIRST}", fix)
    with loop.live_traffic(platform, [parse_spec(_wine(FIRST))]):
        assert _deployed(platform, airflow, good) == {FIRST: "success"}


def _add_csv_model(work: Path, model: str, label: str) -> None:
    """A regression model of a CSV in the repository whose last label is `label`."""
    (work / "data").mkdir(exist_ok=True)
    rows = "".join(f"{i},{i * 2},{i % 7}\n" for i in range(40))
    (work / "data" / f"{model}.csv").write_text(f"a,b,y\n{rows}1,2,{label}\n")
    spec = {"model": model, "task": "regression",
            "data": {"source": f"data/{model}.csv", "label": "y"},
            "training": {"trainer": "ridge"}, "rollout": TEST_ROLLOUT}
    (_models(work) / f"{model}.yaml").write_text(dump_spec(spec))


@pytest.mark.e2e
def test_a_push_while_the_platform_is_down_is_deployed_when_up_returns(
        tmp_path: Path) -> None:
    """A platform of its own: stopped, a commit pushed (its hook's sync cannot reach Airflow:
    recorded as an error), started again: `up`'s catch-up deploys it."""
    settings = make_settings(tmp_path / "state")
    with running(settings):
        settle(settings)
    work = _work(settings)
    _write(work, _wine(FIRST))
    gitops_remote.git("add", "--all", cwd=work)
    gitops_remote.git("commit", "--quiet", "-m", "pushed while down", cwd=work)
    gitops_remote.git("push", "--quiet", "origin", gitops_remote.BRANCH, cwd=work)
    pushed = gitops_remote.git("rev-parse", "HEAD", cwd=work)
    assert loop.wait_for_sync(settings, pushed)["action"] == "error"
    with running(settings):
        deadline = time.monotonic() + 600
        # The push's error record first, then the record of up's catch-up.
        while (record := loop.wait_for_sync(settings, pushed))["action"] != "triggered":
            assert time.monotonic() < deadline, record
            time.sleep(1)
        airflow = platform_client(settings)
        try:
            assert airflow.wait_for_run(DEPLOY_DAG, record["deploys"][FIRST]) == "success"
        finally:
            airflow.close()
        assert _champion(settings, FIRST) is not None
