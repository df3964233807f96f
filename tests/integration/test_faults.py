"""Faults survived, on the real platform: under steady traffic and mid-canary, kill -9 in turn
Triton, the gateway, MLflow and the Airflow scheduler, then `invoke down` + `invoke up` in the
middle of the rollout. After each fault the champion serves again within 10 s of the
component's restart, and no request fails after that; the deploy ends in a recorded outcome,
promoted or rolled back, with the registry's aliases, the gateway's pins and Triton agreeing.
Each test prints the requests that failed.

The tests share one deploy (a long canary) and run in file order, each waiting for the rollout
to be mid-canary before it strikes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from onecommit import loop, proof, sync
from onecommit.airflow_client import platform_client
from onecommit.lifecycle import registry
from onecommit.lifecycle.spec import parse_spec
from onecommit.lifecycle.traffic import TrafficGenerator
from onecommit.platform import local, supervisor
from onecommit.settings import Settings

pytestmark = [pytest.mark.platform, pytest.mark.timeout(1800)]
MODEL = "breast-cancer"
RECOVERY_S = 10.0
# Steps long enough that each fault lands inside one and leaves the analysis time to recover.
CANARY = {"kind": "canary", "steps": [10, 25, 50, 75, 100], "pause_s": 6}


@dataclass
class Rollout:
    """A deploy under live traffic, followed to its end in the background."""

    platform: Settings
    traffic: TrafficGenerator
    sha: str = ""
    outcome: str | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def follow(self) -> None:
        try:
            record = loop.wait_for_sync(self.platform, self.sha)
            assert record["action"] == "triggered", record
            airflow = platform_client(self.platform)
            try:
                self.outcome = airflow.wait_for_run(sync.DEPLOY_DAG, record["dag_run_id"],
                                                    timeout_s=1500)
            finally:
                airflow.close()
        except BaseException as error:  # Reported by the last test.
            self.error = error
        finally:
            self.done.set()


def _champion(platform: Settings) -> int | None:
    client = registry.client(platform.url(platform.mlflow_port))
    return registry.alias_version(client, MODEL, registry.CHAMPION)


def _ensure_champion(platform: Settings) -> None:
    """A champion for the canary to be judged against (the session may have none yet)."""
    if _champion(platform) is not None:
        return
    spec = loop.valid_spec(platform)
    sha = loop.push_spec(platform, spec | {"rollout": CANARY}, "First model for the fault tests")
    airflow = platform_client(platform)
    try:
        run = loop.wait_for_sync(platform, sha)["dag_run_id"]
        assert airflow.wait_for_run(sync.DEPLOY_DAG, run) == "success"
    finally:
        airflow.close()


@pytest.fixture(scope="module")
def rollout(platform: Settings) -> Iterator[Rollout]:
    _ensure_champion(platform)
    spec, message = loop.edit_spec(loop.valid_spec(platform), "good")
    spec = {**spec, "rollout": CANARY,
            "analysis": {**spec["analysis"], "min_requests": 10, "max_infra_pause_s": 300}}
    with loop.live_traffic(platform, parse_spec(spec)) as traffic:
        deploy = Rollout(platform, traffic)
        deploy.sha = loop.push_spec(platform, spec, f"{message} (under faults)")
        thread = threading.Thread(target=deploy.follow, daemon=True)
        thread.start()
        yield deploy
        deploy.done.wait(timeout=1500)


def _mid_canary(deploy: Rollout, timeout_s: float = 600) -> float:
    """Wait until the canary sends the challenger part, not all, of the traffic."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert not deploy.done.is_set(), f"the deploy ended ({deploy.outcome}) before the fault"
        try:
            traffic = httpx.get(f"{deploy.platform.gateway_url}/traffic", timeout=2).json()
        except httpx.HTTPError:
            traffic = {}
        if traffic.get("strategy") == "canary" and 0 < traffic.get("challenger_weight", 0) < 1:
            return float(traffic["challenger_weight"])
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


def _serves_champion(platform: Settings, since: float) -> float:
    """Seconds from `since` until an inference is answered by the champion's version."""
    champion = str(_champion(platform))
    while time.monotonic() - since < 60:
        try:
            if loop.served_version(platform, MODEL) == champion:
                return time.monotonic() - since
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the champion did not serve again within 60 s")


def _strike(deploy: Rollout, what: str, fault: Callable[[], float]) -> None:
    """Run the fault mid-canary (it returns when the component is back), then hold the
    recovery criteria against the live traffic."""
    weight = _mid_canary(deploy)
    failed_before, sent_before = deploy.traffic.failed, deploy.traffic.sent
    struck = time.monotonic()
    back = fault()
    to_serving = _serves_champion(deploy.platform, back)
    time.sleep(RECOVERY_S + 3)  # requests sent after the recovery window must all succeed
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


@pytest.mark.parametrize("program", ["triton", "gateway", "mlflow", "airflow-scheduler"])
def test_kill_9_mid_canary(rollout: Rollout, program: str) -> None:
    _strike(rollout, f"kill -9 {program}", lambda: _kill(rollout, program))


def test_down_and_up_mid_rollout(rollout: Rollout) -> None:
    in_force: dict[str, object] = {}

    def down_up() -> float:
        in_force.update(httpx.get(f"{rollout.platform.gateway_url}/traffic").json())
        local.down(rollout.platform)
        local.up(rollout.platform, report=lambda _: None)
        return time.monotonic()

    _strike(rollout, "invoke down + invoke up", down_up)
    # The restarted gateway served the policy that was in force (unless the resumed rollout
    # has moved it on since, which bumps the revision).
    after = httpx.get(f"{rollout.platform.gateway_url}/traffic").json()
    if after["revision"] == in_force["revision"]:
        assert after["challenger_weight"] == in_force["challenger_weight"]


def test_the_deploy_ends_recorded_with_aliases_agreeing(rollout: Rollout,
                                                         tmp_path: Path) -> None:
    assert rollout.done.wait(timeout=1500), "the deploy is still running after 25 minutes"
    assert rollout.error is None, rollout.error
    assert rollout.outcome in ("success", "failed")
    if rollout.outcome == "failed":  # Rolled back: the reason is on the version.
        report = loop.CommitReport(git_sha=rollout.sha, kind="good")
        airflow = platform_client(rollout.platform)
        try:
            report.dag_run_id = sync.dag_run_id(rollout.sha, "dev")
            loop.follow(rollout.platform, airflow, report, time.time(), MODEL)
        finally:
            airflow.close()
        assert report.outcome == "rolled_back", report
        assert report.reason, report
    print(f"\ndeploy outcome: {rollout.outcome}; traffic {rollout.traffic.sent} sent, "
          f"{rollout.traffic.failed} failed")
    _, invariants = proof.prove(rollout.platform, MODEL, root=tmp_path)
    assert all(i.holds for i in invariants), invariants
