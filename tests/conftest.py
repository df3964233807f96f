"""Shared fixtures: settings on free ports in a temp state dir, and the real platform."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from onecommit.platform import local, supervisor
from onecommit.settings import PROJECT_ROOT, Settings

# Airflow reads its configuration at import: keep the test process's Airflow out of ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="onecommit-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

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


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The real local platform, started once by the same code as `invoke up`."""
    settings = make_settings(tmp_path_factory.mktemp("platform"))
    try:
        local.up(settings)
        yield settings
    finally:
        ours = process_tree(settings)
        local.down(settings)
        assert not alive(ours), f"processes left after down: {alive(ours)}"
