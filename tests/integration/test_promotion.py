"""Promotion from dev to prod by commit, on the local profile running the prod env: a second
platform whose gitops env is prod and whose promotions fetch from the session's (dev) registry.
A prod commit that names dev's champion deploys that very artifact through prod's own loop,
without retraining: its checksum checked, its lineage recorded and shown by the proof."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from onecommit import gitops_remote, loop, proof, sync
from onecommit.clients.airflow import platform_client
from onecommit.lifecycle import registry
from onecommit.lifecycle.dags import DEPLOY_DAG
from onecommit.lifecycle.spec import dump_spec, parse_spec
from onecommit.settings import Settings
from onecommit.vocabulary import CHAMPION
from tests.conftest import make_settings, running, settle

pytestmark = [pytest.mark.e2e, pytest.mark.platform, pytest.mark.timeout(1800)]
MODEL = "breast-cancer"


@pytest.fixture(scope="module")
def dev_champion(platform: Settings) -> int:
    """The session platform is dev; its champion (a first one deployed if it has none)."""
    client = registry.client(platform.url(platform.mlflow_port))
    if registry.alias_version(client, MODEL, CHAMPION) is None:
        # A commit that changes the spec (the seed's own spec may be there unchanged already).
        (first,) = loop.demo_commit(platform, "good", [MODEL])
        assert first.outcome == "promoted", first.reason
    champion = registry.alias_version(client, MODEL, CHAMPION)
    assert champion is not None
    return champion


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory, platform: Settings) -> Iterator[Settings]:
    settings = make_settings(tmp_path_factory.mktemp("prod"), gitops_env="prod",
                             gateway_workers=1,
                             promotion_registries={"dev": platform.url(platform.mlflow_port)})
    with running(settings):
        settle(settings)  # prod's seed model, deployed by `up`'s catch-up sync
        yield settings


def _promote(prod: Settings, source: dict[str, Any]) -> tuple[str, str]:
    """Push a prod spec promoting `source`; returns the commit and how its deploy ended."""
    work = gitops_remote.work_dir(prod)
    path = work / "envs" / "prod" / "models" / f"{MODEL}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec.pop("training", None)
    spec |= {"source": source, "rollout": {"kind": "canary", "steps": [100], "pause_s": 2},
             "analysis": {**spec["analysis"], "min_requests": 10}}
    path.write_text(dump_spec(spec))
    gitops_remote.git("commit", "--quiet", "-am", f"Promote {MODEL} from {source}", cwd=work)
    gitops_remote.git("push", "--quiet", "origin", gitops_remote.BRANCH, cwd=work)
    sha = gitops_remote.git("rev-parse", "HEAD", cwd=work)
    record = loop.wait_for_sync(prod, sha)
    assert record["action"] == "triggered", record
    airflow = platform_client(prod)
    # Prod serves the seed's champion (`up` deployed it): the promotion is a canary, judged
    # on live traffic.
    try:
        with loop.live_traffic(prod, [parse_spec(spec)]):
            return sha, airflow.wait_for_run(DEPLOY_DAG, record["deploys"][MODEL])
    finally:
        airflow.close()


def test_prod_deploys_devs_champion_without_retraining(
        prod: Settings, platform: Settings, dev_champion: int, tmp_path: Path) -> None:
    sha, state = _promote(prod, {"env": "dev", "alias": "champion"})
    assert state == "success"
    dev = registry.client(platform.url(platform.mlflow_port))
    ours = registry.client(prod.url(prod.mlflow_port))
    version = registry.alias_version(ours, MODEL, CHAMPION)
    assert version is not None
    tags = ours.get_model_version(MODEL, str(version)).tags
    source = dev.get_model_version(MODEL, str(dev_champion))
    # The same artifact, byte for byte, and where it came from.
    assert tags[registry.CHECKSUM] == source.tags[registry.CHECKSUM]
    assert registry.checksum(registry.load_onnx(ours, MODEL, version)) == tags[registry.CHECKSUM]
    assert (tags["source_env"], tags["source_version"], tags["source_run_id"]) == (
        "dev", str(dev_champion), source.run_id)
    assert tags["git_sha"] == sha
    run = ours.get_run(ours.get_model_version(MODEL, str(version)).run_id)
    assert run.data.params["source_env"] == "dev"
    assert "source_accuracy" in run.data.metrics  # dev's figures, beside prod's own gate
    assert "accuracy" in run.data.metrics
    assert loop.served_version(prod, MODEL) == str(version)
    directory, invariants = proof.prove(prod, [MODEL], root=tmp_path)
    assert all(i.holds for i in invariants), [i for i in invariants if not i.holds]
    assert f"promoted from dev version {dev_champion}" in (directory / "proof.md").read_text()


def test_a_promotion_of_a_version_dev_does_not_have_is_refused(prod: Settings) -> None:
    ours = registry.client(prod.url(prod.mlflow_port))
    before = (registry.alias_version(ours, MODEL, CHAMPION),
              len(ours.search_model_versions(f"name = '{MODEL}'")))
    sha, state = _promote(prod, {"env": "dev", "version": 9999})
    assert state == "failed"
    assert (registry.alias_version(ours, MODEL, CHAMPION),
            len(ours.search_model_versions(f"name = '{MODEL}'"))) == before
    refusal = next(r for r in sync.read_syncs(prod) if r["sha"] == sha
                   and r["action"] == "failed")
    assert refusal["model"] == MODEL
    assert refusal["problems"][0].startswith(f"source: version 9999 of {MODEL} in dev "
                                             "cannot be fetched from ")
