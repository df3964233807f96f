"""The one-commit loop end to end on the real platform: push → post-receive hook → sync →
Airflow → MLflow → Triton → gateway → promote or roll back → notifications → proof."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onecommit import loop, proof, sync
from onecommit.clients.airflow import AirflowClient, platform_client
from onecommit.clients.gateway import Gateway
from onecommit.lifecycle import flow, registry
from onecommit.lifecycle.dags import DEPLOY_DAG
from onecommit.lifecycle.spec import parse_spec
from onecommit.settings import Settings
from onecommit.sync import convergence
from onecommit.vocabulary import CHAMPION, PREVIOUS
from tests.conftest import WebhookReceiver

# The module fixture deploys a first model; on a loaded machine that takes a while.
pytestmark = [pytest.mark.platform, pytest.mark.timeout(1800)]
MODEL = "breast-cancer"


@pytest.fixture(scope="module")
def airflow(platform: Settings) -> Iterator[AirflowClient]:
    client = platform_client(platform)
    yield client
    client.close()


def _wait_deployed(platform: Settings, airflow: AirflowClient, sha: str) -> str:
    record = loop.wait_for_sync(platform, sha)
    assert record["action"] == "triggered", record
    return airflow.wait_for_run(DEPLOY_DAG, record["deploys"][MODEL])


@pytest.fixture(scope="module")
def short_canary(platform: Settings, airflow: AirflowClient) -> Settings:
    """A platform whose model has a champion, so commits roll out under the tests' short
    canary (the test seed's, `conftest.TEST_ROLLOUT`): on an empty registry, a first commit
    through the loop, promoted directly."""
    if _champion(platform) is None:
        (first,) = loop.demo_commit(platform, "good", [MODEL])
        assert first.outcome == "promoted", first
    return platform


def _champion(platform: Settings, alias: str = CHAMPION) -> int | None:
    client = registry.client(platform.url(platform.mlflow_port))
    return registry.alias_version(client, MODEL, alias)


def _proof_holds(platform: Settings, tmp_path: Path) -> None:
    directory, invariants = proof.prove(platform, loop.models(platform), root=tmp_path)
    assert all(i.holds for i in invariants), invariants
    assert (directory / "proof.json").exists()
    assert "## Invariants" in (directory / "proof.md").read_text()
    # The latest rollout's timeline, drawn and linked.
    assert (directory / f"rollout-{MODEL}.png").read_bytes()[:4] == b"\x89PNG"
    assert f"![rollout timeline](rollout-{MODEL}.png)" in (directory / "proof.md").read_text()


def _page_shows_the_rollout(platform: Settings, version: int, state: str) -> None:
    """What the rollout recorded while it ran is what the gateway's rollout page shows: its
    version, each decision the version's tag holds, and how it ended."""
    with Gateway(platform, MODEL) as gateway:
        page = gateway.rollout_page()
    client = registry.client(platform.url(platform.mlflow_port))
    decisions = json.loads(client.get_model_version(MODEL, str(version)).tags[
        "rollout.decisions"])
    assert page["rollout"]["version"] == version
    assert [e["text"] for e in page["timeline"] if e["kind"] == "decision"] == [
        f"{d['step']}: {d['decision']} ({d['reason']})" for d in decisions]
    assert page["verdict"]["state"] == state


def test_good_commit_is_promoted(short_canary: Settings, webhook: WebhookReceiver,
                                 tmp_path: Path) -> None:
    platform = short_canary
    before, sent_before = _champion(platform), len(webhook.payloads)
    (report,) = loop.demo_commit(platform, "good", [MODEL])
    assert report.outcome == "promoted", report
    assert report.champion_version == report.challenger_version
    assert report.champion_version != before
    assert _champion(platform, PREVIOUS) == before
    assert loop.served_version(platform, MODEL) == str(report.champion_version)
    # Zero requests failed through reloads, traffic steps and the old version's unload.
    assert report.traffic["failed"] == 0
    assert report.traffic["sent"] > 0
    for stage in ("push_to_dag_start", "train", "register", "publish_ready", "smoke", "reload",
                  "rollout canary 50%", "rollout canary 100%", "promote", "push_to_promoted"):
        assert stage in report.stage_seconds, report.stage_seconds
    client = registry.client(platform.url(platform.mlflow_port))
    tags = client.get_model_version(MODEL, str(report.champion_version)).tags
    assert {k: v for k, v in tags.items() if k.startswith("criterion.")} == {
        "criterion.registered": "true", "criterion.ready": "true", "criterion.smoke": "true",
        "criterion.gateway_reload": "true", "criterion.notification_sent": "true"}
    assert tags["git_sha"] == report.git_sha
    _page_shows_the_rollout(platform, report.champion_version, "promoted")
    _proof_holds(platform, tmp_path)
    _notified(webhook, sent_before, {"deploy started", "rollout step", "promoted"})


def test_bad_commit_is_rolled_back(short_canary: Settings, webhook: WebhookReceiver,
                                   tmp_path: Path) -> None:
    platform = short_canary
    champion, sent_before = _champion(platform), len(webhook.payloads)
    (report,) = loop.demo_commit(platform, "bad", [MODEL])
    assert report.outcome == "rolled_back", report
    assert report.champion_version == champion
    assert loop.served_version(platform, MODEL) == str(champion)
    failed = report.challenger_version
    assert failed is not None
    client = registry.client(platform.url(platform.mlflow_port))
    tags = client.get_model_version(MODEL, str(failed)).tags
    assert tags["status"] == "rolled_back"
    assert tags["reason"].startswith("rollout aborted at canary 50%: error rate")
    assert "abort_to_champion" in report.stage_seconds
    assert not flow.ready(platform, MODEL, failed), "the failed version is still loaded"
    _page_shows_the_rollout(platform, failed, "rolled back")
    _proof_holds(platform, tmp_path)
    _notified(webhook, sent_before, {"deploy started", "rolled back", "DAG failure"})


def test_invalid_commit_is_rejected_and_triggers_nothing(
        short_canary: Settings, airflow: AirflowClient, webhook: WebhookReceiver) -> None:
    platform = short_canary
    runs = {r["dag_run_id"] for r in airflow.runs(DEPLOY_DAG, limit=100)}
    champion, sent_before = _champion(platform), len(webhook.payloads)
    (report,) = loop.demo_commit(platform, "invalid", [MODEL])
    assert report.outcome == "rejected"
    assert report.reason is not None
    assert f"envs/dev/models/{MODEL}.yaml" in report.reason
    assert "training.trainer" in report.reason
    assert report.dag_run_id is None
    assert {r["dag_run_id"] for r in airflow.runs(DEPLOY_DAG, limit=100)} == runs
    assert _champion(platform) == champion
    rejected = _notified(webhook, sent_before, {"sync rejected"})
    assert report.git_sha[:12] in rejected["sync rejected"]["text"]


def test_two_commits_pushed_back_to_back_deploy_in_order(short_canary: Settings,
                                                         airflow: AirflowClient) -> None:
    """The newest commit is what serves in the end; the first is deployed before it, or
    superseded by it while its deploy had not started (recorded, never deployed after it)."""
    platform = short_canary
    first = loop.commit_and_push(platform, "good", [MODEL])
    second = loop.commit_and_push(platform, "good", [MODEL])
    with loop.live_traffic(platform, [parse_spec(loop.valid_spec(platform, MODEL))]):
        assert _wait_deployed(platform, airflow, second) == "success"
    records = sync.read_syncs(platform)
    shas = [r["sha"] for r in records]
    assert shas.index(first) < shas.index(second)
    # The champion is built from the second commit's inputs (a version of its own, or an
    # earlier one built from the same inputs: the demo's parameters come round again).
    (deployed,) = [r for r in records if r["sha"] == second and MODEL in r["deploys"]]
    client = registry.client(platform.url(platform.mlflow_port))
    assert convergence.served(client, MODEL).fingerprint == deployed["fingerprints"][MODEL]
    second_run = deployed["deploys"][MODEL]
    first_deploys = [r["deploys"][MODEL] for r in records
                     if r["sha"] == first and MODEL in r["deploys"]]
    if first_deploys:  # deployed, then followed by the second: in commit order
        runs = [airflow.get(f"/dags/{DEPLOY_DAG}/dagRuns/{run}")
                for run in (first_deploys[0], second_run)]
        assert runs[0]["end_date"] <= runs[1]["start_date"]


def _slack_well_formed(payload: dict[str, Any]) -> bool:
    blocks = payload["blocks"]
    header = blocks[0]
    fields = [f for b in blocks[1:] for f in b.get("fields", [])]
    return (isinstance(payload["text"], str) and header["type"] == "header"
            and header["text"]["type"] == "plain_text" and len(header["text"]["text"]) <= 150
            and all(b["type"] == "section" for b in blocks[1:])
            and all(len(b.get("fields", [])) <= 10 for b in blocks[1:])
            and all(f["type"] == "mrkdwn" and len(f["text"]) <= 2000 for f in fields))


def _notified(webhook: WebhookReceiver, since: int,
              events: set[str]) -> dict[str, dict[str, Any]]:
    """The Slack payloads this test caused (posted after `since`) include `events`, each
    well-formed; returns the last payload of each event."""
    latest = {p["blocks"][0]["text"]["text"].removeprefix("onecommit · "): p
              for p in webhook.payloads[since:]}
    assert events <= set(latest), f"notified: {sorted(latest)}; expected {sorted(events)}"
    malformed = [p["text"] for p in webhook.payloads[since:] if not _slack_well_formed(p)]
    assert not malformed, malformed
    return latest
