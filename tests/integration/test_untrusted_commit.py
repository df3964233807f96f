"""A commit is untrusted input, tried as an attacker would on the real local platform: training
code that goes for the admin token, the network and its own tree; a symlink to the token named as
the data file; an entry point outside the tree. Each fails, and no token reaches a record, a log
or a notification."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from onecommit import gitops_remote, loop, sync
from onecommit.clients.airflow import platform_client
from onecommit.lifecycle.dags import DEPLOY_DAG
from onecommit.lifecycle.notify import notifications_file
from onecommit.lifecycle.spec import dump_spec
from onecommit.platform.components import gateway_admin_token
from onecommit.settings import Settings
from tests.conftest import DEV_SPEC, TEST_MIN_REQUESTS, TEST_ROLLOUT, WebhookReceiver

pytestmark = [pytest.mark.platform, pytest.mark.timeout(900)]

# The training code of the first attack: what it finds, as the reason its training fails.
PROBE = '''
import json, os, socket


def train(data, params):
    found = {{"uid": os.getuid(), "environment": sorted(os.environ)}}
    try:
        found["token"] = open({token!r}).read()
    except OSError as error:
        found["token"] = type(error).__name__
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
        found["network"] = "reached MLflow"
    except OSError as error:
        found["network"] = type(error).__name__
    try:
        open(os.path.join(os.path.dirname(__file__), "planted.py"), "w").close()
        found["tree"] = "written"
    except OSError as error:
        found["tree"] = type(error).__name__
    raise RuntimeError("PROBE" + json.dumps(found) + "PROBE")
'''


# Pushes files (text, or a symlink's target as a Path) as one commit; returns its sync record.
Push = Callable[[dict[str, str | Path], str], dict[str, Any]]


def _spec(model: str, **changes: object) -> str:
    spec = yaml.safe_load(DEV_SPEC.read_text())
    spec.update(model=model, rollout=TEST_ROLLOUT, **changes)
    spec["analysis"]["min_requests"] = TEST_MIN_REQUESTS
    return dump_spec(spec)


@pytest.fixture
def commit(platform: Settings) -> Iterator[Push]:
    """A Push; afterwards what it added is removed in another commit, so the next test starts
    clean."""
    work = gitops_remote.work_dir(platform)
    gitops_remote.git("pull", "--quiet", "--ff-only", cwd=work)
    added: list[str] = []

    def push(files: dict[str, str | Path], message: str) -> dict[str, Any]:
        for relative, content in files.items():
            path = work / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                path.symlink_to(content)
            else:
                path.write_text(content)
            added.append(relative)
        return loop.wait_for_sync(platform, _push(platform, message))

    yield push
    if added:
        gitops_remote.git("rm", "--quiet", "-r", *added, cwd=work)
        loop.wait_for_sync(platform, _push(platform, "Remove the attack"))


def _push(platform: Settings, message: str) -> str:
    work = gitops_remote.work_dir(platform)
    gitops_remote.git("add", "--all", cwd=work)
    gitops_remote.git("commit", "--quiet", "-m", message, cwd=work)
    gitops_remote.git("push", "--quiet", "origin", gitops_remote.BRANCH, cwd=work)
    return gitops_remote.git("rev-parse", "HEAD", cwd=work).strip()


def _leaked(platform: Settings, webhook: WebhookReceiver, token: str) -> list[str]:
    """Where the token shows: records, the sync's log, notifications (sent and filed)."""
    files = [sync.syncs_file(platform), gitops_remote.sync_log(platform),
             notifications_file(platform.state_dir)]
    places = [str(path) for path in files if path.exists() and token in path.read_text()]
    return places + (["webhook"] if token in json.dumps(webhook.payloads) else [])


def test_training_code_cannot_read_the_token_reach_the_network_or_write_its_tree(
        platform: Settings, webhook: WebhookReceiver, commit: Push) -> None:
    token_file = platform.state_dir / "gateway" / "admin_token"
    model = "untrusted-probe"
    record = commit({
        f"envs/dev/models/{model}.yaml": _spec(
            model, training={"entrypoint": "probe/train.py:train"}),
        "probe/train.py": PROBE.format(token=str(token_file), port=platform.mlflow_port)},
        "Training code that goes for the admin token")
    assert record["action"] == "triggered", record
    client = platform_client(platform)
    try:
        state = client.wait_for_run(DEPLOY_DAG, record["deploys"][model], timeout_s=600)
    finally:
        client.close()
    assert state == "failed"
    refusal = next(r for r in sync.read_syncs(platform)
                   if r["sha"] == record["sha"] and r["action"] == "failed")
    found = json.loads(refusal["problems"][0].split("PROBE")[1])
    assert found["uid"] == 65534
    assert found["token"] in ("FileNotFoundError", "PermissionError")
    assert found["network"] in ("ConnectionRefusedError", "OSError")
    assert found["tree"] == "OSError"  # a read-only file system
    assert not [name for name in found["environment"]
                if name.startswith(("ONECOMMIT_", "AIRFLOW", "AWS_", "MLFLOW"))]
    assert _leaked(platform, webhook, gateway_admin_token(platform)) == []


def test_a_symlink_to_the_token_is_refused_without_quoting_it(
        platform: Settings, webhook: WebhookReceiver, commit: Push) -> None:
    model = "untrusted-leak"
    record = commit({
        f"envs/dev/models/{model}.yaml": _spec(
            model, data={"source": "data/leak.csv", "label": "target"},
            training={"trainer": "logistic_regression"}),
        "data/leak.csv": platform.state_dir / "gateway" / "admin_token"},
        "A data file that links to the admin token")
    assert record["action"] == "rejected"
    assert record["problems"] == ["data/leak.csv: a symbolic link; the platform follows no "
                                  "links in a commit: commit the file itself"]
    assert _leaked(platform, webhook, gateway_admin_token(platform)) == []


def test_an_entry_point_outside_the_tree_is_refused_at_validation(
        platform: Settings, commit: Push, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.py"
    evil.write_text(f"def train(data, params):\n    open({str(marker)!r}, 'w').close()\n")
    model = "untrusted-escape"
    entrypoint = f"../../../../../../..{evil}:train"
    record = commit({
        f"envs/dev/models/{model}.yaml": _spec(model, training={"entrypoint": entrypoint})},
        "An entry point outside the tree")
    assert record["action"] == "rejected"
    assert record["problems"] == [
        f"envs/dev/models/{model}.yaml: training.entrypoint: {entrypoint.split(':')[0]} leaves "
        "the commit: name a file of the gitops repository by its path from the repository's "
        "root"]
    assert record["deploys"] == {}
    assert not marker.exists()
