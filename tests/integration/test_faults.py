"""Faults survived, on the real platform: under steady traffic and mid-canary, kill -9 in turn
Triton, the gateway, MLflow and the Airflow scheduler, then `invoke down` + `invoke up` in the
middle of the rollout. After each fault the champion serves again within 10 s of the
component's restart, and no request fails after that; the deploy ends in a recorded outcome,
promoted (a fault is never the model's fault), with the registry's aliases, the gateway's pins
and Triton agreeing.
Each test prints the requests that failed.

The tests run in file order on two deploys, each waiting for its rollout to be mid-canary
(at a step of its own) before it strikes: the serving faults hit one long canary, the
orchestration faults (the scheduler, then the whole platform) another, whose rollout task is
run again after each.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from onecommit import loop, proof, sync
from onecommit.clients.airflow import platform_client
from onecommit.lifecycle import registry
from onecommit.lifecycle.dags import DEPLOY_DAG
from onecommit.lifecycle.spec import parse_spec
from onecommit.platform import local, supervisor
from onecommit.settings import Settings
from onecommit.traffic_generator import TrafficGenerator
from onecommit.vocabulary import CHAMPION

pytestmark = [pytest.mark.e2e, pytest.mark.platform, pytest.mark.timeout(1800)]
MODEL = "breast-cancer"
ADMIN_API = f"/models/{MODEL}"
RECOVERY_S = 10.0
# Enough steps that each serving fault lands in one of its own.
LONG_CANARY = {"kind": "canary", "steps": [5, 10, 20, 35, 50, 65, 80, 100], "pause_s": 6}
CANARY = {"kind": "canary", "steps": [25, 50, 100], "pause_s": 6}


@dataclass
class Rollout:
    """A deploy under live traffic, followed to its end in the background."""

    platform: Settings
    traffic: TrafficGenerator
    sha: str = ""
    struck_at: float | None = None  # the canary weight of the last fault
    outcome: str | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def follow(self) -> None:
        try:
            record = loop.wait_for_sync(self.platform, self.sha)
            assert record["action"] == "triggered", record
            airflow = platform_client(self.platform)
            try:
                self.outcome = airflow.wait_for_run(DEPLOY_DAG, record["deploys"][MODEL],
                                                    timeout_s=1500)
            finally:
                airflow.close()
        except BaseException as error:  # Reported by the last test.
            self.error = error
        finally:
            self.done.set()


def _champion(platform: Settings) -> int | None:
    client = registry.client(platform.url(platform.mlflow_port))
    return registry.alias_version(client, MODEL, CHAMPION)


def _ensure_champion(platform: Settings) -> None:
    """A champion for the canary to be judged against (the session may have none yet)."""
    if _champion(platform) is not None:
        return
    spec = loop.valid_spec(platform, MODEL)
    sha = loop.push_specs(platform, {MODEL: spec | {"rollout": CANARY}},
                          "First model for the fault tests")
    airflow = platform_client(platform)
    try:
        record = loop.wait_for_sync(platform, sha)
        assert record["action"] == "triggered", record
        assert airflow.wait_for_run(DEPLOY_DAG, record["deploys"][MODEL]) == "success"
    finally:
        airflow.close()


@contextmanager
def _deploy_under_traffic(platform: Settings, canary: dict[str, Any],
                          why: str) -> Iterator[Rollout]:
    _ensure_champion(platform)
    spec, message = loop.edit_spec(loop.valid_spec(platform, MODEL), "good")
    spec = {**spec, "rollout": canary,
            "analysis": {**spec["analysis"], "min_requests": 10, "max_infra_pause_s": 300,
                         # Every step held for its pause, so each fault lands mid-canary.
                         "limits": {"min_dwell_s": canary["pause_s"]}}}
    with loop.live_traffic(platform, [parse_spec(spec)]) as (traffic,):
        deploy = Rollout(platform, traffic)
        deploy.sha = loop.push_specs(platform, {MODEL: spec}, f"{message} ({why})")
        threading.Thread(target=deploy.follow, daemon=True).start()
        yield deploy
        deploy.done.wait(timeout=1500)


@pytest.fixture(scope="module")
def serving_rollout(platform: Settings) -> Iterator[Rollout]:
    with _deploy_under_traffic(platform, LONG_CANARY, "under serving faults") as deploy:
        yield deploy


@pytest.fixture(scope="module")
def orchestration_rollout(platform: Settings, serving_rollout: Rollout) -> Iterator[Rollout]:
    assert serving_rollout.done.wait(timeout=1500)
    with _deploy_under_traffic(platform, CANARY, "under orchestration faults") as deploy:
        yield deploy


def _mid_canary(deploy: Rollout, timeout_s: float = 600) -> float:
    """Wait until the canary sends the challenger part, not all, of the traffic, at another
    step than the last fault's."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert not deploy.done.is_set(), f"the deploy ended ({deploy.outcome}) before the fault"
        try:
            traffic = httpx.get(f"{deploy.platform.gateway_url}{ADMIN_API}/traffic", timeout=2,
                                verify=deploy.platform.gateway_verify()).json()
        except httpx.HTTPError:
            traffic = {}
        weight = traffic.get("challenger_weight", 0)
        if traffic.get("strategy") == "canary" and 0 < weight < 1 and weight != deploy.struck_at:
            deploy.struck_at = weight
            return float(weight)
        time.sleep(0.3)
    raise AssertionError("the rollout never reached a canary step")


def _restarted(platform: Settings, program: str, old_pid: int) -> float:
    """When supervisor has the program running again under a new pid (monotonic time)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        info = supervisor.processes(platform).get(program)
        if info is not None and info.state == "RUNNING" and info.pid != old_pid:
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"supervisor did not restart {program}")


def _pinned_champion(platform: Settings) -> str:
    variants = httpx.get(f"{platform.gateway_url}{ADMIN_API}/variants", timeout=10).json()
    return str(variants["variants"]["champion"]["version"])


def _serves_champion(platform: Settings, champion: str, since: float) -> float:
    """Seconds from `since` until an inference is answered by the champion's version."""
    while time.monotonic() - since < 60:
        try:
            if loop.served_version(platform, MODEL) == champion:
                return time.monotonic() - since
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the champion (version {champion}) did not serve again within 60 s")


def _strike(deploy: Rollout, what: str, fault: Callable[[], float]) -> None:
    """Run the fault mid-canary (it returns when the component is back), then hold the
    recovery criteria against the live traffic."""
    weight = _mid_canary(deploy)
    champion = _pinned_champion(deploy.platform)
    failed_before, sent_before = deploy.traffic.failed, deploy.traffic.sent
    struck = time.monotonic()
    back = fault()
    to_serving = _serves_champion(deploy.platform, champion, back)
    # Requests sent in the 2 s after the recovery window (about 100) must all succeed.
    time.sleep(max(back + RECOVERY_S + 2 - time.monotonic(), 0))
    failures = [(at, why) for at, why in deploy.traffic.failures if at >= struck]
    late = [why for at, why in failures if at > back + RECOVERY_S]
    why = dict(Counter(w for _, w in failures))
    print(f"\n{what} at canary {weight:.0%}: back after {back - struck:.1f} s, champion served "
          f"{to_serving:.1f} s later; failed requests {deploy.traffic.failed - failed_before} "
          f"of {deploy.traffic.sent - sent_before} sent since {why}"
          + (f", the last {max(at for at, _ in failures) - back:.1f} s after the restart"
             if failures else ""))
    assert to_serving <= RECOVERY_S, f"the champion served {to_serving:.1f} s after the restart"
    assert not late, f"{len(late)} requests failed more than {RECOVERY_S} s after the restart"


def _kill(deploy: Rollout, program: str) -> float:
    pid = supervisor.processes(deploy.platform)[program].pid
    os.kill(pid, signal.SIGKILL)
    return _restarted(deploy.platform, program, pid)


@pytest.mark.parametrize("program", ["triton", "gateway", "mlflow"])
def test_kill_9_mid_canary(serving_rollout: Rollout, program: str) -> None:
    _strike(serving_rollout, f"kill -9 {program}", lambda: _kill(serving_rollout, program))


def test_the_deploy_under_serving_faults_ends_recorded(serving_rollout: Rollout,
                                                       tmp_path: Path) -> None:
    _ended_recorded(serving_rollout, tmp_path)


def test_kill_9_of_the_scheduler_mid_canary(orchestration_rollout: Rollout) -> None:
    _strike(orchestration_rollout, "kill -9 airflow-scheduler",
            lambda: _kill(orchestration_rollout, "airflow-scheduler"))


def test_down_and_up_mid_rollout(orchestration_rollout: Rollout) -> None:
    deploy = orchestration_rollout
    in_force: dict[str, Any] = {}

    def down_up() -> float:
        in_force.update(httpx.get(f"{deploy.platform.gateway_url}{ADMIN_API}/traffic").json())
        local.down(deploy.platform)
        local.up(deploy.platform, report=lambda _: None)
        return time.monotonic()

    _strike(deploy, "invoke down + invoke up", down_up)
    # The restarted gateway served the policy that was in force (unless the resumed rollout
    # has moved it on since, which bumps the revision).
    after = httpx.get(f"{deploy.platform.gateway_url}{ADMIN_API}/traffic").json()
    if after["revision"] == in_force["revision"]:
        assert after["challenger_weight"] == in_force["challenger_weight"]


def test_the_deploy_under_orchestration_faults_ends_recorded(orchestration_rollout: Rollout,
                                                             tmp_path: Path) -> None:
    _ended_recorded(orchestration_rollout, tmp_path)


def _ended_recorded(deploy: Rollout, tmp_path: Path) -> None:
    """A good commit struck by platform faults is promoted: a fault pauses the analysis (or
    runs the rollout task again), it never counts against the model. The proof's invariants
    hold: aliases, pins and Triton agree."""
    assert deploy.done.wait(timeout=1500), "the deploy is still running after 25 minutes"
    assert deploy.error is None, deploy.error
    report = loop.CommitReport(git_sha=deploy.sha, kind="good", model=MODEL,
                               dag_run_id=sync.dag_run_id(deploy.sha, "dev", MODEL))
    airflow = platform_client(deploy.platform)
    try:
        loop.follow(deploy.platform, airflow, report, time.time(), MODEL)
    finally:
        airflow.close()
    print(f"\ndeploy outcome: {deploy.outcome} ({report.outcome}: {report.reason}); traffic "
          f"{deploy.traffic.sent} sent, {deploy.traffic.failed} failed")
    assert (deploy.outcome, report.outcome) == ("success", "promoted"), report
    assert _champion(deploy.platform) == report.challenger_version
    _, invariants = proof.prove(deploy.platform, loop.models(deploy.platform), root=tmp_path)
    assert all(i.holds for i in invariants), invariants
