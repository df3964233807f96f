"""The local platform for real: up, status, idempotence, faults, inference through the gateway."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from onecommit.platform import local, supervisor
from onecommit.platform.components import Component, Program
from onecommit.platform.health import probe
from onecommit.serving.database import open_engine
from onecommit.serving.state import StateStore
from onecommit.serving.triton_repo import publish
from onecommit.settings import Settings
from tests.conftest import alive, make_settings, process_tree, settled, triton_control
from tests.unit.test_triton_repo import small_model

pytestmark = pytest.mark.platform


def test_every_component_is_healthy_with_pid_version_and_memory(platform: Settings) -> None:
    # Polled up to a bound: while a version loads (an earlier test's rollout finishing), Triton's
    # strict readiness answers 400 for a moment.
    deadline = time.monotonic() + 60
    report = local.statuses(platform)
    while not all(status.healthy for status in report.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
        report = local.statuses(platform)
    assert set(report) == {"mlflow", "airflow", "triton", "gateway"}
    for name, status in report.items():
        assert status.healthy, f"{name}: {status.detail}"
        assert status.pid, name
        assert status.memory_mb > 0, name
        assert status.version, name
        assert status.url.startswith("http://127.0.0.1:")
    assert report["mlflow"].version == "3.17.2"
    assert report["airflow"].version == "3.3.2"
    assert report["triton"].version == "2.51.0"


def test_up_again_is_idempotent(platform: Settings) -> None:
    before = {n: s.pid for n, s in local.statuses(platform).items()}
    local.up(platform)
    assert {n: s.pid for n, s in local.statuses(platform).items()} == before


def test_model_answers_through_the_gateway_as_directly(platform: Settings) -> None:
    model, onnx_bytes, features = small_model()
    publish(platform.model_repository, "cancer", 1, onnx_bytes)
    grpc = triton_grpc.InferenceServerClient(f"127.0.0.1:{platform.triton_grpc_port}")
    grpc.load_model("cancer", headers=triton_control(platform))
    assert grpc.is_model_ready("cancer", "1")
    # The gateway serves models with desired state only: pin it, as a first deploy would.
    pinned = StateStore(open_engine(platform.serving_db)).change(
        "cancer", "test_platform", pins={"champion": 1})
    settled(platform, pinned.revision, model="cancer")
    rows = features[:16]
    answers = []
    for port in (platform.gateway_port, platform.triton_http_port):
        client = triton_http.InferenceServerClient(f"127.0.0.1:{port}")
        tensor = triton_http.InferInput("X", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=True)
        result = client.infer("cancer", [tensor], model_version="1")
        answers.append((result.as_numpy("label"), result.as_numpy("probabilities")))
    (gateway_labels, gateway_probs), (direct_labels, direct_probs) = answers
    assert np.array_equal(gateway_labels, direct_labels)
    assert np.array_equal(gateway_probs, direct_probs)
    assert np.array_equal(gateway_labels, model.predict(rows))
    assert np.allclose(gateway_probs, model.predict_proba(rows), atol=1e-4)


def test_crashed_component_is_reported_unhealthy_then_restarted(platform: Settings) -> None:
    gateway = local.statuses(platform)["gateway"]
    assert gateway.pid is not None
    os.kill(gateway.pid, signal.SIGKILL)
    # Reported unhealthy (a restarted gateway takes seconds to answer again)...
    deadline = time.monotonic() + 10
    while (crashed := local.statuses(platform)["gateway"]).healthy:
        assert time.monotonic() < deadline, "a killed gateway was still reported healthy"
        time.sleep(0.05)
    assert crashed.detail
    # ... then restarted by supervisor, as a new process.
    deadline = time.monotonic() + 60
    while not (now := local.statuses(platform)["gateway"]).healthy:
        assert time.monotonic() < deadline, now.detail
        time.sleep(0.5)
    assert now.pid != gateway.pid


def test_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        settings = make_settings(tmp_path, gateway_port=holder.getsockname()[1])
        refusal = r"port \d+ \(gateway\).*ONECOMMIT_GATEWAY_PORT"
        with pytest.raises(local.PlatformError, match=refusal):
            local.up(settings)
        assert supervisor.supervisord_pid(settings) is None
    finally:
        holder.close()


def _http_server(settings: Settings, port: int) -> Component:
    command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    return Component(name="files", env="platform", url=f"http://127.0.0.1:{port}",
                     health_path="/", version_path="/", programs=[Program("files", command)])


def test_component_dying_at_start_names_it_and_leaves_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    dying = Component(
        name="broken", env="platform", url="http://127.0.0.1:9", health_path="/",
        version_path="/",
        programs=[Program("broken", [sys.executable, "-c", "raise SystemExit('bad config')"])],
    )
    healthy = _http_server(settings, settings.mlflow_port)
    with pytest.raises(local.PlatformError, match="broken exited at start") as failure:
        local.up(settings, report=lambda _: None, platform=[healthy, dying])
    assert "bad config" in failure.value.detail
    assert supervisor.supervisord_pid(settings) is None
    assert probe(healthy, timeout_s=1)[0] is False


def test_down_leaves_no_process(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    component = _http_server(settings, settings.mlflow_port)
    local.up(settings, report=lambda _: None, platform=[component])
    ours = process_tree(settings)
    assert len(ours) == 2
    assert probe(component)[0]
    local.down(settings)
    assert not alive(ours)
    assert supervisor.supervisord_pid(settings) is None
