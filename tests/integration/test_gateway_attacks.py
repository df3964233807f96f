"""Issue 26's attacks on the gateway, each tried as a client without a token would, against
`python -m onecommit.gateway` (uvicorn and its connection handling, as deployed) on the ONNX
backend over a model repository, with a stand-in for MLflow's registry; and, in process, a
pinned flood against a rollout's analysis. No platform needed."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from sklearn.datasets import load_breast_cancer

from onecommit.analysis.report import Observations, analyse
from onecommit.analysis.verdict import Elapsed, verdict
from onecommit.lifecycle.spec import load_spec
from tests.conftest import DEV_SPEC, free_ports
from tests.in_process_gateway import started
from tests.integration.test_gateway_models import (  # noqa: F401 (fixtures)
    ADMIN,
    CLASSIFIER,
    Registry,
    _body,
    _registry,
    _settings,
    published,
    repository,
)

HEADER_TIMEOUT_S = 2.0
MiB = 2**20


def _poll(condition: object, bound_s: float, what: str) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {bound_s} s")
        time.sleep(0.05)


class Gateway:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)


@pytest.fixture(scope="module")
def gateway(published: Path,  # noqa: F811
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway as `invoke up` runs it (one uvicorn worker), serving the classifier; the
    attacks only read the model repository."""
    gateway_port, registry_port = free_ports(2)
    registry = Registry(registry_port, {CLASSIFIER: {"champion": 1, "challenger": 2}})
    threading.Thread(target=registry.serve_forever, daemon=True).start()
    environment = {**os.environ,
                   "ONECOMMIT_STATE_DIR": str(tmp_path_factory.mktemp("attacks") / "state"),
                   "ONECOMMIT_GATEWAY_PORT": str(gateway_port),
                   "ONECOMMIT_MLFLOW_PORT": str(registry_port),
                   "ONECOMMIT_GATEWAY_BACKEND": "onnx",
                   "ONECOMMIT_GATEWAY_ONNX_MODEL_DIR": str(published),
                   "ONECOMMIT_GATEWAY_ADMIN_TOKEN": "attacks-test",
                   "ONECOMMIT_GATEWAY_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S)}
    process = subprocess.Popen([sys.executable, "-m", "onecommit.gateway"], env=environment)
    started_gateway = Gateway(process, gateway_port)
    try:
        _poll(lambda: _ready(started_gateway.url), 60, "the gateway ready")
        yield started_gateway
    finally:
        process.terminate()
        process.wait(timeout=15)
        registry.shutdown()
        registry.server_close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _series(url: str) -> set[str]:
    text = httpx.get(f"{url}/metrics").text
    return {line.rsplit(" ", 1)[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def test_a_200_mib_chunked_body_without_token_is_refused_unread(gateway: Gateway) -> None:
    baseline, peak = gateway.rss(), 0
    chunk = b"x" * MiB
    with socket.create_connection(("127.0.0.1", gateway.port)) as client:
        client.sendall(f"PUT /models/{CLASSIFIER}/traffic HTTP/1.1\r\nhost: gateway\r\n"
                       "content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
                       .encode())
        sent = 0
        try:
            while sent < 200 * MiB:
                client.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                peak = max(peak, gateway.rss())
            client.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the gateway answered and closed: the rest is never read
        client.settimeout(5)
        try:
            answer = client.recv(4096)
        except OSError:
            answer = b""  # reset: the unread body was still in the gateway's buffer
    peak = max(peak, gateway.rss())
    assert peak - baseline < 50 * MiB, (baseline, peak)
    assert answer.startswith(b"HTTP/1.1 401") or sent < 200 * MiB, answer[:200]


def test_a_chunked_body_beyond_the_limit_is_refused_with_the_token(gateway: Gateway) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(16):
            yield b"x" * MiB

    answer = httpx.put(f"{gateway.url}/models/{CLASSIFIER}/traffic", content=chunks(),
                       headers={"Authorization": "Bearer attacks-test"}, timeout=30)
    assert answer.status_code == 413, answer.text
    assert "exceeds the limit" in answer.json()["error"]


def test_unknown_model_names_add_no_metric_series(gateway: Gateway) -> None:
    row = load_breast_cancer(return_X_y=True)[0][0]
    known = httpx.post(f"{gateway.url}/v2/models/{CLASSIFIER}/infer", json=_body(row))
    assert known.status_code == 200, known.text
    before = _series(gateway.url)
    for n in range(50):
        answer = httpx.post(f"{gateway.url}/v2/models/junk-{n}/infer", json=_body(row))
        assert answer.status_code == 404, answer.text
        assert "no desired state" in answer.json()["error"]
    for name in ("Junk", "j", "x" * 200, "junk%20name"):
        answer = httpx.post(f"{gateway.url}/v2/models/{name}/infer", json=_body(row))
        assert answer.status_code in (404, 422), answer.text
    assert _series(gateway.url) == before
    # A version no alias pins is not a label value of its own either.
    for version in (7, 8, 9, 10):
        httpx.post(f"{gateway.url}/v2/models/{CLASSIFIER}/versions/{version}/infer",
                   json=_body(row))
    added = _series(gateway.url) - before
    assert added
    assert all('variant="pinned",version=""' in s for s in added), added


MALFORMED_VERSIONS = ["9" * 4301, "-1", "0", "abc", "1.5", "²", "1e3", "9223372036854775808",
                      "9" * 20, " 1"]


def test_every_malformed_version_gets_a_4xx_with_the_v2_error(gateway: Gateway) -> None:
    row = load_breast_cancer(return_X_y=True)[0][0]
    for version, (method, suffix) in itertools.product(
            MALFORMED_VERSIONS, (("POST", "/infer"), ("GET", ""), ("GET", "/ready"))):
        answer = httpx.request(method, f"{gateway.url}/v2/models/{CLASSIFIER}/versions/"
                               f"{version}{suffix}", json=_body(row) if method == "POST"
                               else None)
        assert 400 <= answer.status_code < 500, (version[:20], method, suffix,
                                                  answer.text[:200])
        assert "error" in answer.json()


def test_idle_half_requests_are_closed_within_the_header_timeout(gateway: Gateway) -> None:
    clients = [socket.create_connection(("127.0.0.1", gateway.port)) for _ in range(200)]
    try:
        for client in clients:
            client.sendall(f"POST /v2/models/{CLASSIFIER}/infer HTTP/1.1\r\nhost: g\r\n"
                           .encode())
            client.setblocking(False)
        opened = time.monotonic()
        still_open = set(range(len(clients)))

        def all_closed() -> bool:
            for index in list(still_open):
                try:
                    data = clients[index].recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data or data.startswith(b"HTTP/1.1 408"):
                    still_open.discard(index)
            return not still_open

        _poll(all_closed, HEADER_TIMEOUT_S + 10, "every half request closed")
        # Not before the timeout: a client gets the whole of it.
        assert time.monotonic() - opened >= HEADER_TIMEOUT_S * 0.9
        # And the gateway still serves.
        assert httpx.get(f"{gateway.url}/v2/health/live").status_code == 200
    finally:
        for client in clients:
            client.close()


def test_docs_are_off_and_the_schema_is_for_the_admin_token_only(gateway: Gateway) -> None:
    for path in ("/docs", "/redoc"):
        assert httpx.get(f"{gateway.url}{path}").status_code == 404
    assert httpx.get(f"{gateway.url}/openapi.json").status_code == 401
    schema = httpx.get(f"{gateway.url}/openapi.json",
                       headers={"Authorization": "Bearer attacks-test"})
    assert schema.status_code == 200
    assert "/models/{model}/traffic" in schema.json()["paths"]


def test_a_pinned_flood_leaves_the_verdict_unchanged(repository: Path, tmp_path: Path) -> None:  # noqa: F811
    port = free_ports(1)[0]
    features, labels = load_breast_cancer(return_X_y=True)
    spec = load_spec(DEV_SPEC).judged_by()
    clock = Elapsed(step_s=60, step_pause_s=15, rollout_s=60)

    async def judged(gateway: httpx.AsyncClient) -> tuple[Observations, str]:
        observed = Observations.model_validate(
            (await gateway.get(f"/models/{CLASSIFIER}/analysis/observations")).json())
        return observed, verdict(spec, analyse(spec, observed), clock).reason

    async def scenario() -> None:
        async with _registry(port, {CLASSIFIER: {"champion": 1, "challenger": 2}}), \
                started(_settings(tmp_path, repository, port)) as gateway:
            for alias in ("champion", "challenger"):
                reloaded = await gateway.post(f"/models/{CLASSIFIER}/variant/{alias}/reload",
                                              headers=ADMIN)
                assert reloaded.status_code == 200, reloaded.text
            policy = await gateway.put(f"/models/{CLASSIFIER}/traffic", headers=ADMIN,
                                       json={"strategy": "canary", "challenger_weight": 0.5})
            assert policy.status_code == 200, policy.text
            for i, row in enumerate(features[:40]):
                answer = await gateway.post(f"/v2/models/{CLASSIFIER}/infer", json=_body(row),
                                            headers={"x-request-id": f"routed-{i}"})
                assert answer.status_code == 200
                await gateway.post("/feedback", headers=ADMIN, json={
                    "request_id": f"routed-{i}", "label": float(labels[i])})
            before = (await gateway.get(f"/models/{CLASSIFIER}/analysis")).json()
            judged_before = await judged(gateway)
            # Pinned to the challenger, wrongly labelled: served, never judged.
            for i, row in enumerate(features[:200]):
                answer = await gateway.post(f"/v2/models/{CLASSIFIER}/versions/2/infer",
                                            json=_body(row),
                                            headers={"x-request-id": f"pinned-{i}"})
                assert answer.status_code == 200
                assert answer.headers["x-onecommit-variant"] == "challenger"
                await gateway.post("/feedback", headers=ADMIN, json={
                    "request_id": f"pinned-{i}", "label": float(1 - labels[i])})
            after = (await gateway.get(f"/models/{CLASSIFIER}/analysis")).json()
            assert after["variants"] == before["variants"]
            assert await judged(gateway) == judged_before

    asyncio.run(scenario())


def test_the_canary_split_ignores_the_client_request_id(repository: Path,  # noqa: F811
                                                        tmp_path: Path) -> None:
    port = free_ports(1)[0]
    row = load_breast_cancer(return_X_y=True)[0][0]

    async def scenario() -> None:
        async with _registry(port, {CLASSIFIER: {"champion": 1, "challenger": 2}}), \
                started(_settings(tmp_path, repository, port)) as gateway:
            for alias in ("champion", "challenger"):
                await gateway.post(f"/models/{CLASSIFIER}/variant/{alias}/reload",
                                   headers=ADMIN)
            await gateway.put(f"/models/{CLASSIFIER}/traffic", headers=ADMIN,
                              json={"strategy": "canary", "challenger_weight": 0.5})
            variants = {(await gateway.post(f"/v2/models/{CLASSIFIER}/infer",
                                            json=_body(row), headers={"x-request-id": "same"})
                         ).headers["x-onecommit-variant"] for _ in range(40)}
            # One id, both variants: the id does not choose (all 40 alike: p = 2**-39).
            assert variants == {"champion", "challenger"}

    asyncio.run(scenario())


def test_open_routes_show_no_host_path_or_pid(gateway: Gateway) -> None:
    answers = [httpx.get(f"{gateway.url}{path}")
               for path in ("/ui/rollout.json", "/models", f"/models/{CLASSIFIER}/traffic",
                            f"/models/{CLASSIFIER}/variants")]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert socket.gethostname() not in answer.text
        assert "/tmp" not in answer.text
        assert str(Path.home()) not in answer.text
        assert str(gateway.process.pid) not in answer.json().get("replica", "")


def test_a_reload_pins_only_the_version_it_expects(repository: Path,  # noqa: F811
                                                   tmp_path: Path) -> None:
    port = free_ports(1)[0]
    aliases = {CLASSIFIER: {"champion": 1, "challenger": 2}}

    async def scenario() -> None:
        async with _registry(port, aliases), \
                started(_settings(tmp_path, repository, port)) as gateway:
            reload = f"/models/{CLASSIFIER}/variant/challenger/reload"
            pinned = await gateway.post(reload, headers=ADMIN, params={"expected_version": 2})
            assert pinned.status_code == 200, pinned.text
            aliases[CLASSIFIER]["challenger"] = 1  # moved by someone else in between
            moved = await gateway.post(reload, headers=ADMIN, params={"expected_version": 2})
            assert moved.status_code == 409, moved.text
            assert "points at version 1, not the expected 2" in moved.json()["error"]
            variants = (await gateway.get(f"/models/{CLASSIFIER}/variants")).json()
            assert variants["variants"]["challenger"]["version"] == 2

    asyncio.run(scenario())
