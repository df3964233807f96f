"""Security on the real local platform: admin-token rotation under load, and HTTPS with the
internal CA."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from onecommit.clients.gateway import Gateway, GatewayRefused
from onecommit.platform import local
from onecommit.platform.components import components, gateway_admin_token
from onecommit.secrets import SecretsError
from onecommit.secrets.local_store import (
    accepted_gateway_tokens,
    gateway_client,
    gateway_token_files,
)
from onecommit.secrets.rotation import Rotation, rotate
from onecommit.secrets.sealing import generate_controller_keypair
from onecommit.serving.triton_repo import publish
from onecommit.settings import Settings
from onecommit.vocabulary import TRITON_CONTROL_HEADER, TRITON_CONTROL_METADATA
from tests.conftest import (
    SERVED_MODEL,
    Served,
    make_settings,
    stop_platform,
    triton_control,
)
from tests.unit.test_secrets_tree import make_tree
from tests.unit.test_triton_repo import small_model

pytestmark = pytest.mark.platform
LOAD_MODEL = "security-load"
LOAD_THREADS = 3


@dataclass
class Load:
    """Clients that keep calling the gateway while a rotation runs, as the platform's own do:
    inference, and admin calls with the token current at each request."""

    settings: Settings
    body: dict[str, object]
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _count(self, outcome: str | None) -> None:
        with self.lock:
            self.sent += 1
            if outcome is not None:
                self.failures.append(outcome)

    def run(self) -> None:
        # A deployed model's: the gateway serves models with desired state only.
        infer = f"/v2/models/{SERVED_MODEL}/infer"
        with gateway_client(self.settings, timeout_s=10) as client:
            while not self.stop.is_set():
                for method, path, body in (("POST", infer, self.body),
                                           ("GET", "/auth/check", None)):
                    try:
                        status = client.request(method, path, json=body).status_code
                        self._count(None if status == 200 else f"{path}: HTTP {status}")
                    except httpx.HTTPError as error:
                        self._count(f"{path}: {type(error).__name__}")


@dataclass
class OldTokenProbe:
    """Asks, again and again, whether the token from before the rotation is still accepted."""

    settings: Settings
    token: str
    answers: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.settings.gateway_url, headers=headers,
                          timeout=10) as client:
            while not self.stop.is_set():
                asked = time.monotonic()
                self.answers.append((asked, client.get("/auth/check").status_code))
                time.sleep(0.02)


@pytest.fixture
def load_model(platform: Settings) -> Iterator[dict[str, object]]:
    """A model Triton serves for the duration of the test (no desired state: the gateway does
    not serve it), and a request body for it."""
    _, onnx_bytes, features = small_model()
    publish(platform.model_repository, LOAD_MODEL, 1, onnx_bytes)
    grpc = triton_grpc.InferenceServerClient(f"127.0.0.1:{platform.triton_grpc_port}")
    grpc.load_model(LOAD_MODEL, headers=triton_control(platform))
    rows = features[:4].astype(np.float32)
    yield {"inputs": [{"name": "X", "shape": list(rows.shape), "datatype": "FP32",
                       "data": rows.flatten().tolist()}]}
    grpc.unload_model(LOAD_MODEL, headers=triton_control(platform))


def rotate_under_load(platform: Settings, tmp_path: Path, body: dict[str, object]
                      ) -> tuple[Rotation, Load, OldTokenProbe]:
    tree = make_tree(tmp_path, generate_controller_keypair("controller", key_size=2048),
                     platform)
    load = Load(platform, body)
    probe = OldTokenProbe(platform, gateway_admin_token(platform))
    threads = [threading.Thread(target=load.run) for _ in range(LOAD_THREADS)]
    threads.append(threading.Thread(target=probe.run))
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        result = rotate(tree.settings, tree.root, "gateway-admin-token", grace_s=1.0,
                        report=lambda _: None, gateway_running=lambda: True)
        time.sleep(1)
    finally:
        load.stop.set()
        probe.stop.set()
        for thread in threads:
            thread.join(timeout=15)
    return result, load, probe


def test_triton_model_control_refuses_a_client_without_the_key(
        platform: Settings, load_model: dict[str, object]) -> None:
    grpc = triton_grpc.InferenceServerClient(f"127.0.0.1:{platform.triton_grpc_port}")
    try:
        for wrong in ({}, {TRITON_CONTROL_METADATA: "not-the-key"}):
            with pytest.raises(InferenceServerException):
                grpc.unload_model(LOAD_MODEL, headers=wrong)
            with pytest.raises(InferenceServerException):
                grpc.get_model_repository_index(headers=wrong)
        assert grpc.is_model_ready(LOAD_MODEL, "1")
    finally:
        grpc.close()
    http = f"{platform.url(platform.triton_http_port)}/v2/repository"
    for wrong in ({}, {TRITON_CONTROL_HEADER: "not-the-key"}):
        refused = httpx.post(f"{http}/models/{LOAD_MODEL}/unload", headers=wrong)
        assert 400 <= refused.status_code < 500, refused.text
        assert 400 <= httpx.post(f"{http}/index", headers=wrong).status_code < 500
    key = triton_control(platform)[TRITON_CONTROL_METADATA]
    assert httpx.post(f"{http}/index", headers={TRITON_CONTROL_HEADER: key}).status_code == 200
    # Inference stays open to the gateway; the key is on no open route of the gateway.
    for path in ("/models", "/ui/rollout.json", "/metrics", "/v2"):
        assert key not in httpx.get(f"{platform.gateway_url}{path}").text


def test_rotation_under_load_drops_no_request_and_revokes_the_old_token_after_the_switch(
        platform: Settings, served: Served, tmp_path: Path) -> None:
    old = gateway_admin_token(platform)
    rows = served.rows[:4].astype(np.float32)
    body = {"inputs": [{"name": "X", "shape": list(rows.shape), "datatype": "FP32",
                        "data": rows.flatten().tolist()}]}
    result, load, probe = rotate_under_load(platform, tmp_path, body)
    print(f"\nrotation under load: {load.sent} gateway requests by {LOAD_THREADS} clients, "
          f"{len(load.failures)} failed; switch to revoke "
          f"{result.at['revoked'] - result.at['switched']:.2f} s")
    assert load.failures == []
    assert load.sent > 100
    accepted_until_switch = [s for t, s in probe.answers if t < result.at["switched"]]
    refused_after_revoke = [s for t, s in probe.answers if t > result.at["revoked"]]
    assert set(accepted_until_switch) == {200}
    assert set(refused_after_revoke) == {401}
    first_refusal = min(t for t, s in probe.answers if s == 401)
    assert first_refusal > result.at["switched"]
    new = gateway_admin_token(platform)
    assert new != old
    assert not gateway_token_files(platform.state_dir)[1].exists()
    with gateway_client(platform) as client:
        assert client.get("/auth/check").status_code == 200


def _disk_full(*_: object) -> None:
    raise OSError(28, "No space left on device")


def _unconfirmed(tree_settings: Settings) -> Settings:
    # The new token's check goes to a port where nothing listens: never confirmed.
    return tree_settings.model_copy(update={"gateway_port": 9})


@pytest.mark.parametrize(("fault", "problem"), [
    ("unconfirmed", "did not accept the new admin token"),
    ("disk full", "No space left on device.*old gateway-admin-token stays in use"),
])
def test_a_rotation_failing_midway_leaves_the_old_token_working(
        platform: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str,
        problem: str) -> None:
    old = gateway_admin_token(platform)
    tree = make_tree(tmp_path, generate_controller_keypair("controller", key_size=2048),
                     platform)
    settings = tree.settings
    if fault == "unconfirmed":
        settings = _unconfirmed(settings)
    else:
        monkeypatch.setattr("onecommit.secrets.manifests.write_all", _disk_full)
    with pytest.raises(SecretsError, match=problem):
        rotate(settings, tree.root, "gateway-admin-token", grace_s=0, confirm_timeout_s=1,
               report=lambda _: None, gateway_running=lambda: True)
    assert gateway_admin_token(platform) == old
    assert accepted_gateway_tokens(platform.state_dir) == [old]
    assert not (tree.root / "gitops" / "envs" / "dev" / "sealed").exists()
    assert not settings.secrets_file.exists()
    with gateway_client(platform) as client:
        assert client.get("/auth/check").status_code == 200


@pytest.fixture(scope="module")
def tls_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """MLflow, Triton and the gateway over HTTPS, started by `invoke up`'s code on free ports.
    The gateway is ready only once the registry has told it which version is champion (none,
    here); Airflow is not needed to serve and would only cost memory."""
    settings = make_settings(tmp_path_factory.mktemp("tls"), tls=True)
    serving = [c for c in components(settings) if c.name in ("mlflow", "triton", "gateway")]
    try:
        local.up(settings, report=lambda _: None, platform=serving)
        yield settings
    finally:
        stop_platform(settings)


def test_https_verifies_against_the_internal_ca(tls_gateway: Settings) -> None:
    assert tls_gateway.gateway_url.startswith("https://127.0.0.1:")
    response = httpx.get(f"{tls_gateway.gateway_url}/v2/health/ready",
                         verify=tls_gateway.gateway_verify())
    assert response.json()["ready"] is True


def test_the_lifecycle_client_speaks_https(tls_gateway: Settings) -> None:
    with Gateway(tls_gateway, "not-deployed", retry_s=5) as gateway:
        assert gateway.models()["models"] == {}
        # An admin call: past the certificate and the token, the gateway itself answers.
        with pytest.raises(GatewayRefused, match=r"\(404\).*its first deploy"):
            gateway.reset_analysis()


def test_without_the_ca_the_certificate_is_refused(tls_gateway: Settings) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_gateway.gateway_url}/v2/health/live")


def test_plain_http_is_refused_when_tls_is_on(tls_gateway: Settings) -> None:
    port = tls_gateway.gateway_port
    # The same port answers HTTPS: what follows is a refusal, not a closed port.
    assert httpx.get(f"https://127.0.0.1:{port}/v2/health/live",
                     verify=tls_gateway.gateway_verify()).status_code == 200
    # A plain request is no TLS handshake: the server closes the connection unanswered.
    with pytest.raises(httpx.RemoteProtocolError, match="disconnected without sending"):
        httpx.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=5)


@pytest.mark.parametrize("grace_s", [-1.0, float("nan"), float("inf"), 1e9])
def test_a_bad_grace_period_is_refused_before_anything_changes(
        platform: Settings, tmp_path: Path, grace_s: float) -> None:
    old = gateway_admin_token(platform)
    tree = make_tree(tmp_path, generate_controller_keypair("controller", key_size=2048),
                     platform)
    with pytest.raises(SecretsError, match="is not a grace period"):
        rotate(tree.settings, tree.root, "gateway-admin-token", grace_s=grace_s,
               report=lambda _: None, gateway_running=lambda: True)
    assert accepted_gateway_tokens(platform.state_dir) == [old]
    assert not (tree.root / "gitops" / "envs" / "dev" / "sealed").exists()


def test_ctrl_c_in_the_grace_period_leaves_the_old_token_revoked(platform: Settings,
                                                                  tmp_path: Path) -> None:
    old = gateway_admin_token(platform)
    tree = make_tree(tmp_path, generate_controller_keypair("controller", key_size=2048),
                     platform)

    def interrupt_at_the_switch(line: str) -> None:
        if "clients switched" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rotate(tree.settings, tree.root, "gateway-admin-token", grace_s=60,
               report=interrupt_at_the_switch, gateway_running=lambda: True)
    new = gateway_admin_token(platform)
    assert new != old
    assert accepted_gateway_tokens(platform.state_dir) == [new]
    deadline = time.monotonic() + 15
    while httpx.get(f"{platform.gateway_url}/auth/check",
                    headers={"Authorization": f"Bearer {old}"}).status_code != 401:
        assert time.monotonic() < deadline, "the old token is still accepted"
        time.sleep(0.1)
