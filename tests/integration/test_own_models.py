"""A user's own models through the whole loop on the real platform: the three examples (an
XGBoost multiclass model from a CSV file, a LightGBM regression from Parquet, a binary model of
the user's own training code) added in one commit and deployed side by side, then each rolled out
under a canary with live traffic, then a commit whose training code fails and one whose data
file is empty: refused, with nothing registered and nothing that serves changed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from onecommit import gitops_remote, loop, proof, sync
from onecommit.clients.airflow import AirflowClient, platform_client
from onecommit.lifecycle import registry
from onecommit.lifecycle.dags import DEPLOY_DAG
from onecommit.lifecycle.notify import notifications_file
from onecommit.lifecycle.spec import dump_spec, parse_spec
from onecommit.settings import PROJECT_ROOT, Settings
from onecommit.vocabulary import CHAMPION, PREVIOUS

pytestmark = [pytest.mark.e2e, pytest.mark.platform, pytest.mark.timeout(1800)]
EXAMPLES = {"iris": "iris-xgboost", "diabetes": "diabetes-lightgbm", "churn": "churn-own-code"}


@pytest.fixture(scope="module")
def airflow(platform: Settings) -> Iterator[AirflowClient]:
    client = platform_client(platform)
    yield client
    client.close()


def _work(platform: Settings) -> Path:
    work = gitops_remote.work_dir(platform)
    gitops_remote.git("pull", "--quiet", "--ff-only", cwd=work)
    return work


def _push(platform: Settings, message: str) -> str:
    work = gitops_remote.work_dir(platform)
    gitops_remote.git("add", "--all", cwd=work)
    gitops_remote.git("commit", "--quiet", "-m", message, cwd=work)
    gitops_remote.git("push", "--quiet", "origin", gitops_remote.BRANCH, cwd=work)
    return gitops_remote.git("rev-parse", "HEAD", cwd=work)


def _deployed(platform: Settings, airflow: AirflowClient, sha: str) -> dict[str, str]:
    """Each model the commit deployed → how its deploy run ended."""
    record = loop.wait_for_sync(platform, sha)
    assert record["action"] == "triggered", record
    return {model: airflow.wait_for_run(DEPLOY_DAG, run, timeout_s=900)
            for model, run in record["deploys"].items()}


def _versions(platform: Settings, model: str) -> tuple[int | None, int]:
    client = registry.client(platform.url(platform.mlflow_port))
    return (registry.alias_version(client, model, CHAMPION),
            len(client.search_model_versions(f"name = '{model}'")))


@pytest.fixture(scope="module")
def examples(platform: Settings, airflow: AirflowClient) -> dict[str, int]:
    """The three examples copied into the gitops repository as a user would, in one commit:
    one deploy run each, each model's first version promoted. Returns the champions."""
    work = _work(platform)
    for project in EXAMPLES.values():
        shutil.copytree(PROJECT_ROOT / "examples" / project, work, dirs_exist_ok=True)
    sha = _push(platform, "Add three models: iris, diabetes and churn")
    assert _deployed(platform, airflow, sha) == dict.fromkeys(EXAMPLES, "success")
    champions = {model: _versions(platform, model)[0] for model in EXAMPLES}
    assert None not in champions.values(), champions
    return champions  # type: ignore[return-value]


def test_one_commit_deploys_each_model_and_the_gateway_serves_all(
        platform: Settings, examples: dict[str, int]) -> None:
    client = registry.client(platform.url(platform.mlflow_port))
    for model, champion in examples.items():
        assert loop.served_version(platform, model) == str(champion)
        tags = client.get_model_version(model, str(champion)).tags
        assert tags["criterion.smoke"] == "true"
        signature = json.loads(tags["signature"])
        assert signature["inputs"][0]["name"] == "X"
    # Each model answers by its own signature and convention: classes, or a real number.
    churn = json.loads(client.get_model_version("churn", str(examples["churn"])).tags[
        "signature"])
    assert [o["name"] for o in churn["outputs"]] == ["label", "probabilities"]
    diabetes = json.loads(client.get_model_version(
        "diabetes", str(examples["diabetes"])).tags["signature"])
    assert [o["name"] for o in diabetes["outputs"]] == ["prediction"]
    assert diabetes["inputs"][0]["shape"] == [-1, 10]


def test_a_second_commit_rolls_each_model_out_under_a_canary(
        platform: Settings, airflow: AirflowClient, examples: dict[str, int],
        tmp_path: Path) -> None:
    work = _work(platform)
    for model, change in (("iris", {"n_estimators": 60}), ("diabetes", {"n_estimators": 100})):
        path = work / "envs" / "dev" / "models" / f"{model}.yaml"
        spec = yaml.safe_load(path.read_text())
        spec["training"]["params"].update(change)
        path.write_text(dump_spec(spec))
    # Churn's change is its training code alone: that retrains it too.
    code = work / "training" / "churn.py"
    code.write_text(code.read_text().replace("max_iter=2000", "max_iter=3000"))
    specs = [parse_spec(loop.valid_spec(platform, model)) for model in EXAMPLES]
    with loop.live_traffic(platform, specs) as traffic:
        sha = _push(platform, "Retrain iris and diabetes with more trees, churn with new code")
        assert _deployed(platform, airflow, sha) == dict.fromkeys(EXAMPLES, "success")
    client = registry.client(platform.url(platform.mlflow_port))
    for model, before in examples.items():
        champion, _ = _versions(platform, model)
        assert champion is not None
        assert champion != before
        assert registry.alias_version(client, model, PREVIOUS) == before
        decisions = json.loads(client.get_model_version(model, str(champion)).tags[
            "rollout.decisions"])
        assert [d["step"] for d in decisions] == ["canary 50%", "canary 100%"], decisions
        assert all(d["decision"] == "continue" for d in decisions), decisions
        assert loop.served_version(platform, model) == str(champion)
    assert {g.model: g.failed for g in traffic} == dict.fromkeys(EXAMPLES, 0)
    directory, invariants = proof.prove(platform, loop.models(platform), root=tmp_path)
    assert all(i.holds for i in invariants), [i for i in invariants if not i.holds]
    assert all(f"## Model {model}" in (directory / "proof.md").read_text()
               for model in EXAMPLES)


def test_training_code_that_fails_is_refused_and_nothing_changes(
        platform: Settings, airflow: AirflowClient, examples: dict[str, int]) -> None:
    champion, versions = _versions(platform, "churn")
    code = _work(platform) / "training" / "churn_features.py"
    code.write_text(code.read_text() + "\n\ndef balanced_weights(labels):\n"
                    "    raise KeyError('region')\n")
    sha = _push(platform, "Break churn's training code")
    assert _deployed(platform, airflow, sha) == {"churn": "failed"}
    assert _versions(platform, "churn") == (champion, versions)
    assert loop.served_version(platform, "churn") == str(champion)
    refusal = next(r for r in sync.read_syncs(platform) if r["sha"] == sha
                   and r["action"] == "failed")
    assert (refusal["model"], refusal["problems"]) == (
        "churn", ["training.entrypoint training/churn.py:train raised KeyError: 'region'"])
    sent = [json.loads(line) for line in notifications_file(platform.state_dir)
            .read_text().splitlines()]
    assert any(n["event"] == "train refused" and "KeyError: 'region'" in n["payload"]["text"]
               for n in sent)


def test_an_empty_data_file_is_rejected_at_validate_time(
        platform: Settings, airflow: AirflowClient, examples: dict[str, int]) -> None:
    runs = {r["dag_run_id"] for r in airflow.runs(DEPLOY_DAG, limit=100)}
    champion, versions = _versions(platform, "iris")
    (_work(platform) / "data" / "iris.csv").write_text("")
    sha = _push(platform, "Empty iris's data")
    record = loop.wait_for_sync(platform, sha)
    assert record["action"] == "rejected"
    assert record["problems"] == ["envs/dev/models/iris.yaml: data.source data/iris.csv: the "
                                  "file is empty: commit rows with a header line"]
    assert {r["dag_run_id"] for r in airflow.runs(DEPLOY_DAG, limit=100)} == runs
    assert _versions(platform, "iris") == (champion, versions)
    # The data put back: the session's later tests commit to the same tip, and a model broken
    # there holds back every deploy of the commits after it (noted on #27's stop).
    work = _work(platform)
    gitops_remote.git("checkout", "HEAD~1", "--", "data/iris.csv", cwd=work)
    fixed = loop.wait_for_sync(platform, _push(platform, "Put iris's data back"))
    assert not fixed["problems"], fixed
