"""Shared fixtures: settings on free ports in a temp state dir, and the real platform."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
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

from onecommit.bench.models import register_version
from onecommit.clients.gateway import on_every_worker
from onecommit.lifecycle import data, registry
from onecommit.lifecycle.spec import load_spec
from onecommit.platform import local, supervisor
from onecommit.platform.components import gateway_admin_token
from onecommit.settings import PROJECT_ROOT, Settings

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


@pytest.fixture(scope="session")
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.shutdown()
    receiver.server_close()


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory,
             webhook: WebhookReceiver) -> Iterator[Settings]:
    """The real local platform, started once by the same code as `invoke up`; its
    notifications go to the session's webhook receiver."""
    settings = make_settings(tmp_path_factory.mktemp("platform"), notify_webhook_url=webhook.url)
    with running(settings):
        yield settings


@contextmanager
def running(settings: Settings) -> Iterator[None]:
    """A local platform up for the block, and down after it with none of its processes left."""
    try:
        local.up(settings)
        yield
    finally:
        ours = process_tree(settings)
        local.down(settings)
        assert not alive(ours), f"processes left after down: {alive(ours)}"


@dataclass(frozen=True)
class Served:
    """Two versions of the dev model, registered and pinned as champion and challenger."""

    settings: Settings
    url: str
    mlflow_url: str
    admin: dict[str, str]
    champion: int
    challenger: int
    rows: np.ndarray
    labels: np.ndarray

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
                    platform.url(platform.mlflow_port),
                    {"Authorization": f"Bearer {gateway_admin_token(platform)}"}, champion,
                    challenger, split.x_holdout, split.y_holdout)
    pinned.pin()
    return pinned


@pytest.fixture(scope="session")
def served(platform: Settings) -> Served:
    """The gateway serving two versions that disagree on some rows."""
    return serve_two_versions(platform)
