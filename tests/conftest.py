"""Shared fixtures: settings on free ports in a temp state dir, and the real platform."""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import yaml

from onecommit.bench.models import register_version
from onecommit.clients.gateway import on_every_worker
from onecommit.lifecycle import data, registry
from onecommit.lifecycle.spec import dump_spec, load_spec
from onecommit.platform import local, supervisor
from onecommit.platform.components import gateway_admin_token
from onecommit.secrets.local_store import triton_control_key
from onecommit.settings import PROJECT_ROOT, Settings
from onecommit.vocabulary import TRITON_CONTROL_METADATA

# Airflow reads its configuration at import: keep the test process's Airflow out of ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="onecommit-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# As for the platform's tasks (components.airflow_environment): MLflow's telemetry thread races
# the registry calls this process makes.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# Tests reuse the environments `make test` built, keyed by their requirements files.
SHARED_ENVS = PROJECT_ROOT / ".onecommit" / "envs"


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# What a test deploy's rollout is: two canary steps of 3 s, judged on 10 requests. The seed's
# own (steps of 15 to 60 s, judged on 30 to 200 requests) would add minutes to every deploy
# and prove nothing more; the compose test keeps them (its alert needs the longer step).
TEST_ROLLOUT = {"kind": "canary", "steps": [50, 100], "pause_s": 3}
TEST_MIN_REQUESTS = 10


@functools.cache
def gitops_seed_for_tests() -> Path:
    """The tests' gitops seed: the project's tree with every model's rollout shortened."""
    seed = Path(tempfile.mkdtemp(prefix="onecommit-seed-")) / "gitops"
    shutil.copytree(PROJECT_ROOT / "gitops", seed)
    for path in seed.glob("envs/*/models/*.yaml"):
        spec = yaml.safe_load(path.read_text())
        spec["rollout"] = TEST_ROLLOUT
        spec["analysis"]["min_requests"] = TEST_MIN_REQUESTS
        # Comparisons with the champion wait for hundreds of labelled requests per arm: the
        # tests of release decisions list their own (test_release_decisions).
        spec["analysis"].pop("metrics", None)
        path.write_text(dump_spec(spec))
    # The session's tests pin versions by hand (the gateway's): the sync must not put them
    # back. The convergence tests turn self-heal on by a commit, as a user would.
    for env in seed.glob("envs/*"):
        (env / "sync.yaml").write_text(TEST_SYNC_POLICY)
    return seed


TEST_SYNC_POLICY = "prune: true\nself_heal: false\n"


def make_settings(state_dir: Path, **overrides: object) -> Settings:
    mlflow, airflow, http, grpc, metrics, gateway = free_ports(6)
    values: dict[str, object] = {
        "state_dir": state_dir, "envs_path": SHARED_ENVS, "mlflow_port": mlflow,
        "airflow_port": airflow, "triton_http_port": http, "triton_grpc_port": grpc,
        "triton_metrics_port": metrics, "gateway_port": gateway,
        # A loaded CI machine starts Airflow slowly; a start that fails still fails fast.
        "health_timeout_s": 420,
        # The gateway as replicas sharing desired state and the prediction log, as on a
        # cluster: every platform test runs against two workers on one port.
        "gateway_workers": 2,
        "gitops_seed": gitops_seed_for_tests(),
        # A step retried after a fault the tests strike, and the READY sensor: seconds sooner.
        "deploy_retry_delay_s": 2, "ready_poke_s": 0.5,
        # A short resync: a model that waited for its running deploy is deployed seconds
        # after it ended (the tests' seed has self-heal off, so nothing pinned by hand is
        # redeployed under a test).
        "resync_s": 10,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def process_tree(settings: Settings) -> set[int]:
    """Every pid of ours: supervisord and all its descendants."""
    pid = supervisor.supervisord_pid(settings)
    if pid is None:
        return set()
    root = psutil.Process(pid)
    return {pid, *(p.pid for p in root.children(recursive=True))}


def alive(pids: set[int]) -> set[int]:
    living = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                living.add(pid)
        except psutil.NoSuchProcess:
            continue
    return living


class WebhookReceiver(ThreadingHTTPServer):
    """A Slack incoming webhook stand-in on 127.0.0.1: records every JSON payload posted."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        received = self.payloads

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: object) -> None:
                return

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/services/T000/B000/test"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def platform_processes(settings: Settings) -> set[int]:
    """Every process of a platform: supervisord's tree, and whatever runs naming its state dir
    (the syncs the gitops remote's hook starts in the background, outside supervisord)."""
    named = str(settings.state_dir)
    ours = process_tree(settings)
    for process in psutil.process_iter(["pid", "cmdline"]):
        if any(named in part for part in process.info["cmdline"] or ()):
            ours.add(process.info["pid"])
    return ours - {os.getpid()}


@contextmanager
def running(settings: Settings) -> Iterator[None]:
    """A local platform up for the block, and down after it with none of its processes left."""
    try:
        local.up(settings)
        yield
    finally:
        stop_platform(settings)


def settle(settings: Settings, timeout_s: float = 900) -> None:
    """Until the deploys `up`'s catch-up sync started (the seed's models) have ended: tests
    start from a platform whose models serve what the gitops tip says."""
    from onecommit import gitops_remote, loop
    from onecommit.clients.airflow import platform_client
    from onecommit.lifecycle.dags import DEPLOY_DAG

    record = loop.wait_for_sync(settings, gitops_remote.head(settings), timeout_s)
    assert record["action"] == "triggered", f"the catch-up sync of the seed: {record}"
    airflow = platform_client(settings)
    try:
        for run_id in record["deploys"].values():
            airflow.wait_for_run(DEPLOY_DAG, run_id, timeout_s)
    finally:
        airflow.close()


def stop_platform(settings: Settings) -> None:
    """`invoke down`, then no process of the platform may be left: a hook's sync still running
    gets a bounded while to finish (it fails fast once Airflow is gone)."""
    local.down(settings)
    deadline = time.monotonic() + 60
    while (left := alive(platform_processes(settings))) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"processes left after down: {_describe(left)}"


def _describe(pids: set[int]) -> list[str]:
    described = []
    for pid in sorted(pids):
        try:
            described.append(f"{pid}: {' '.join(psutil.Process(pid).cmdline())[:200]}")
        except psutil.NoSuchProcess:
            continue
    return described


class SessionPlatform:
    """The session's real local platform, started by the same code as `invoke up` in a
    background thread as soon as collection shows a test needs it: its start (two minutes of
    mostly waiting) overlaps the unit and lint tests, which run first. Its notifications go to
    the session's webhook receiver. Stopped at the session's end, whether or not a test got to
    use it."""

    def __init__(self) -> None:
        self.webhook = WebhookReceiver()
        self.settings = make_settings(Path(tempfile.mkdtemp(prefix="onecommit-platform-")),
                                      notify_webhook_url=self.webhook.url)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._up, name="platform-up", daemon=True)
        self._thread.start()

    def _up(self) -> None:
        try:
            local.up(self.settings, report=lambda _: None)
            settle(self.settings)
        except BaseException as error:  # handed to the first test that needs the platform
            self._error = error

    def ready(self) -> Settings:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.settings

    def stop(self) -> None:
        self._thread.join()
        try:
            stop_platform(self.settings)
        finally:
            self.webhook.stop()


_SESSION: dict[str, SessionPlatform] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if any("platform" in getattr(item, "fixturenames", ()) for item in session.items):
        _SESSION["platform"] = SessionPlatform()


def pytest_sessionfinish(session: pytest.Session) -> None:
    started = _SESSION.pop("platform", None)
    if started is not None:
        started.stop()


@pytest.fixture(scope="session")
def webhook() -> WebhookReceiver:
    if "platform" not in _SESSION:
        pytest.fail("the webhook receiver belongs to the session platform: use `platform` too")
    return _SESSION["platform"].webhook


@pytest.fixture(scope="session")
def platform() -> Settings:
    """The real local platform, started once per session (see SessionPlatform)."""
    return _SESSION["platform"].ready()


@dataclass(frozen=True)
class Served:
    """Two versions of the dev model, registered and pinned as champion and challenger."""

    settings: Settings
    url: str
    mlflow_url: str
    champion: int
    challenger: int
    rows: np.ndarray
    labels: np.ndarray

    @property
    def admin(self) -> dict[str, str]:
        """The admin token current now, as the platform's own clients send it: a rotation
        test earlier in the session leaves another one."""
        return {"Authorization": f"Bearer {gateway_admin_token(self.settings)}"}

    def pin(self) -> None:
        """Point the aliases at these versions again and have the gateway pin them."""
        client = registry.client(self.mlflow_url)
        client.set_registered_model_alias(SERVED_MODEL, "champion", str(self.champion))
        client.set_registered_model_alias(SERVED_MODEL, "challenger", str(self.challenger))
        for alias in ("champion", "challenger"):
            response = httpx.post(f"{self.url}/models/{SERVED_MODEL}/variant/{alias}/reload",
                                  headers=self.admin, timeout=30)
            assert response.status_code == 200, response.text
        settled(self.settings, response.json()["revision"])


SERVED_MODEL = "breast-cancer"


def triton_control(settings: Settings) -> dict[str, str]:
    """The header Triton's model control (load, unload) asks for on this platform."""
    return {TRITON_CONTROL_METADATA: triton_control_key(settings)}


def settled(settings: Settings, revision: int, model: str = SERVED_MODEL) -> None:
    """Wait until every gateway worker routes the model by desired state at `revision` or
    later."""
    on_every_worker(settings, f"/models/{model}/traffic",
                    lambda answer: answer["revision"] >= revision)


DEV_SPEC = PROJECT_ROOT / "gitops" / "envs" / "dev" / "models" / f"{SERVED_MODEL}.yaml"


def _version(settings: Settings, c_value: float, split: data.Split) -> int:
    spec = load_spec(DEV_SPEC)
    context = registry.RunContext(git_sha=f"c{c_value}", env="dev",
                                  dag_run_id=f"gateway-test-c{c_value}")
    return register_version(settings, spec, split, {"C": c_value}, context)


def serve_two_versions(platform: Settings) -> Served:
    """Two versions that disagree on some rows, registered (once: their run contexts are
    fixed, so a second call finds the same versions), published and loaded in Triton, and
    pinned as champion and challenger."""
    split = data.of_spec(load_spec(DEV_SPEC))
    champion, challenger = _version(platform, 1.0, split), _version(platform, 1e-3, split)
    pinned = Served(platform, platform.url(platform.gateway_port),
                    platform.url(platform.mlflow_port), champion, challenger,
                    split.x_holdout, split.y_holdout)
    pinned.pin()
    return pinned


@pytest.fixture(scope="session")
def served(platform: Settings) -> Served:
    """The gateway serving two versions that disagree on some rows."""
    return serve_two_versions(platform)
