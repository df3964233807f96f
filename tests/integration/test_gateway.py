"""The gateway against real Triton and MLflow with two model versions."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from onecommit.gateway.app import create_app
from onecommit.gateway.settings import GatewaySettings
from onecommit.settings import Settings, tls_context
from tests.conftest import Served, free_ports, settled

pytestmark = pytest.mark.platform
MODEL = "breast-cancer"
# The model's admin and open control routes.
ADMIN_API = f"/models/{MODEL}"


def _body(rows: np.ndarray, datatype: str = "FP32") -> dict[str, object]:
    return {"inputs": [{"name": "X", "shape": list(rows.shape), "datatype": datatype,
                        "data": rows.flatten().tolist()}]}


def _in_force(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Traffic policy and pins, whichever worker answers (each names itself as `replica`)."""
    answers = (httpx.get(f"{url}{ADMIN_API}/traffic").json(),
               httpx.get(f"{url}{ADMIN_API}/variants").json())
    for answer in answers:
        answer.pop("replica")
    return answers


def _traffic(s: Served, **policy: object) -> None:
    """Change the policy and wait until every worker routes by it."""
    response = httpx.put(f"{s.url}{ADMIN_API}/traffic", json=policy, headers=s.admin)
    assert response.status_code == 200, response.text
    settled(s.settings, response.json()["revision"])


def test_tritonclient_through_gateway_equals_direct(served: Served, platform: Settings) -> None:
    _traffic(served, strategy="canary", challenger_weight=0.0)
    rows = served.rows[:8]
    results = []
    for port in (platform.gateway_port, platform.triton_http_port):
        client = triton_http.InferenceServerClient(f"127.0.0.1:{port}")
        tensor = triton_http.InferInput("X", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=True)
        version = "" if port == platform.gateway_port else str(served.champion)
        out = client.infer(MODEL, [tensor], model_version=version)
        results.append(out.as_numpy("probabilities"))
    assert np.array_equal(results[0], results[1])


def test_variants_show_pinned_versions(served: Served) -> None:
    body = httpx.get(f"{served.url}{ADMIN_API}/variants").json()
    assert body["variants"]["champion"]["version"] == served.champion
    assert body["variants"]["challenger"]["version"] == served.challenger
    assert body["variants"]["challenger"]["ready"] is True


def test_models_lists_the_served_model_as_triton_serves_it(served: Served) -> None:
    listed = httpx.get(f"{served.url}/models").json()["models"][MODEL]
    assert (listed["champion"], listed["challenger"], listed["serving"]) == (
        served.champion, served.challenger, True)
    assert listed["revision"] == httpx.get(f"{served.url}{ADMIN_API}/traffic").json()["revision"]


def test_canary_split_and_version_headers(served: Served) -> None:
    _traffic(served, strategy="canary", challenger_weight=0.5)
    seen: Counter[tuple[str, str]] = Counter()
    with httpx.Client(base_url=served.url) as client:
        for i in range(300):
            response = client.post(f"/v2/models/{MODEL}/infer",
                                   json=_body(served.rows[i % 50: i % 50 + 1]))
            assert response.status_code == 200
            seen[(response.headers["x-onecommit-variant"],
                  response.headers["x-onecommit-version"])] += 1
    assert set(seen) == {("champion", str(served.champion)),
                         ("challenger", str(served.challenger))}
    assert 90 <= seen[("challenger", str(served.challenger))] <= 210


def test_ab_is_sticky_by_header_and_splits_users_evenly(served: Served) -> None:
    _traffic(served, strategy="ab", challenger_weight=0.5, sticky_key="x-user-id",
             experiment="sticky")
    users: dict[str, set[str]] = {}
    with httpx.Client(base_url=served.url) as client:
        for _ in range(3):
            for n in range(200):
                response = client.post(f"/v2/models/{MODEL}/infer", json=_body(served.rows[:1]),
                                       headers={"x-user-id": f"user-{n}"})
                assert response.status_code == 200, response.text
                users.setdefault(f"user-{n}", set()).add(response.headers["x-onecommit-variant"])
    assert all(len(variants) == 1 for variants in users.values()), "a user changed variant"
    on_challenger = sum(variants == {"challenger"} for variants in users.values())
    # Binomial(200, 0.5): 100 ± 4.3 standard deviations (about 1 in 60,000 outside by chance,
    # and the hash is deterministic: this split is the same on every run).
    assert 70 <= on_challenger <= 130, f"{on_challenger} of 200 users on the challenger"


def test_reloads_and_strategy_changes_under_load_lose_no_request(served: Served) -> None:
    failures: list[str] = []
    count = [0]
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=served.url, timeout=10) as client:
            while not stop.is_set():
                response = client.post(f"/v2/models/{MODEL}/infer", json=_body(served.rows[:1]))
                count[0] += 1
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text}")

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for step in range(5):
            reloaded = httpx.post(f"{served.url}{ADMIN_API}/variant/challenger/reload",
                                  headers=served.admin, timeout=30)
            assert reloaded.status_code == 200
            _traffic(served, strategy="bluegreen", active="challenger" if step % 2 else "champion")
            _traffic(served, strategy="canary", challenger_weight=0.2 * step)
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert count[0] > 50
    assert failures == []


def _analysed(s: Served, holds: Callable[[dict[str, Any]], bool],
              timeout_s: float = 5) -> dict[str, Any]:
    """/analysis once it shows what `holds` asks of the champion: the worker that answers
    reads the other's rows at most one batch (0.1 s) behind."""
    deadline = time.monotonic() + timeout_s
    answer: dict[str, Any]
    with httpx.Client(base_url=s.url) as gateway:
        while not holds((answer := gateway.get(f"{ADMIN_API}/analysis").json())["variants"][
                "champion"]):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    return answer


def test_feedback_gives_online_accuracy(served: Served) -> None:
    _traffic(served, strategy="canary", challenger_weight=0.0, experiment="feedback")
    reset = httpx.post(f"{served.url}{ADMIN_API}/analysis/reset", headers=served.admin)
    settled(served.settings, reset.json()["revision"])
    with httpx.Client(base_url=served.url) as client:
        for i in range(40):
            response = client.post(f"/v2/models/{MODEL}/infer", json=_body(served.rows[i:i + 1]))
            feedback = client.post("/feedback", headers=served.admin, json={
                "request_id": response.headers["x-request-id"], "label": int(served.labels[i])})
            assert feedback.status_code == 200
    champion = _analysed(served, lambda arm: arm["feedback"] >= 40)["variants"]["champion"]
    assert champion["feedback"] == 40
    assert champion["online_accuracy"] >= 0.85
    assert champion["latency_ms"]["p95"] > 0


def _label(s: Served, client: httpx.Client, version: int, row: np.ndarray) -> int:
    answer = client.post(f"/v2/models/{MODEL}/versions/{version}/infer", json=_body(row))
    assert answer.status_code == 200, answer.text
    outputs = {output["name"]: output["data"] for output in answer.json()["outputs"]}
    return int(outputs["label"][0])


def test_shadow_mirrors_and_records_the_agreement_of_what_it_sent(served: Served) -> None:
    _traffic(served, strategy="shadow", experiment="shadow-agreement")
    reset = httpx.post(f"{served.url}{ADMIN_API}/analysis/reset", headers=served.admin)
    settled(served.settings, reset.json()["revision"])
    rows = [served.rows[i:i + 1] for i in range(40)]
    with httpx.Client(base_url=served.url) as client:
        agreeing = sum(_label(served, client, served.champion, row)
                       == _label(served, client, served.challenger, row) for row in rows)
        # The two versions disagree on some of these rows: the agreement is not trivially 1.
        assert 0 < agreeing < len(rows)
        for row in rows:
            response = client.post(f"/v2/models/{MODEL}/infer", json=_body(row))
            assert response.headers["x-onecommit-variant"] == "champion"
    deadline = time.monotonic() + 30
    while (report := httpx.get(f"{served.url}{ADMIN_API}/analysis").json())[
            "shadow_comparisons"] < len(rows):
        assert time.monotonic() < deadline, f"{report['shadow_comparisons']} mirrored"
        time.sleep(0.1)
    assert report["shadow_comparisons"] == len(rows)
    assert report["shadow_agreement"] == pytest.approx(agreeing / len(rows))


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [
    ("post", f"/v2/models/{MODEL}/infer", {"content": b"{not json"}, 400),
    ("post", f"/v2/models/{MODEL}/infer",
     {"json": {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32",
                           "data": [1, 2, 3]}]}}, 400),
    ("post", f"/v2/models/{MODEL}/infer",
     {"json": {"inputs": [{"name": "X", "shape": [1, 30], "datatype": "BYTES",
                           "data": ["a"] * 30}]}}, 400),
    ("post", "/v2/models/no-such-model/infer", {"json": {"inputs": []}}, 404),
    ("post", f"/v2/models/{MODEL}/versions/999/infer", {"json": {"inputs": []}}, 404),
    ("post", f"/v2/models/{MODEL}/infer", {"content": b"0" * (9 * 2**20)}, 413),
    ("put", f"{ADMIN_API}/traffic", {"json": {"strategy": "canary"}}, 401),
    ("post", f"{ADMIN_API}/variant/challenger/reload",
     {"headers": {"Authorization": "Bearer wrong"}}, 401),
    ("put", f"{ADMIN_API}/traffic",
     {"json": {"strategy": "canary", "challenger_weight": 2}, "admin": True}, 422),
    ("post", f"{ADMIN_API}/variant/nonexistent/reload", {"admin": True}, 422),
    ("delete", f"{ADMIN_API}/variant/champion", {"admin": True}, 422),
    ("get", f"{ADMIN_API}/analysis?alpha=2", {}, 422),
    ("put", "/models/Breast-Cancer/traffic", {"json": {"strategy": "canary"}, "admin": True},
     422),
    ("post", "/models/no-such-model/analysis/reset", {"admin": True}, 404),
    ("post", "/models/no-such-model/variant/challenger/reload", {"admin": True}, 409),
    ("post", "/feedback", {"json": {"request_id": "x"}, "admin": True}, 422),
    ("post", "/feedback", {"json": {"request_id": "never-served", "label": 1}, "admin": True},
     404),
    ("post", "/feedback", {"json": {"request_id": "x", "label": "one"}, "admin": True}, 422),
    # Found by a fuzzer: an input name that is not a string.
    ("post", f"/v2/models/{MODEL}/infer",
     {"json": {"inputs": [{"name": {}, "shape": [], "datatype": "", "data": []}]}}, 400),
    ("post", f"/v2/models/{MODEL}/versions/%C2%B2/infer", {"json": {"inputs": []}}, 400),
])
def test_bad_input_gets_its_4xx_and_changes_nothing(served: Served, method: str, path: str,
                                                    kwargs: dict[str, object],
                                                    status: int) -> None:
    before = _in_force(served.url)
    if kwargs.pop("admin", False):
        kwargs["headers"] = served.admin
    response = getattr(httpx, method)(f"{served.url}{path}", **kwargs)
    assert response.status_code == status, response.text
    assert "error" in json.loads(response.content)
    assert _in_force(served.url) == before


# The other backends, each in a gateway built in-process by `create_app` over the platform's
# Triton, MLflow and model repository; the platform's own gateway is the HTTP backend.
OTHER_BACKENDS = {"grpc": {"gateway_triton_protocol": "grpc"}, "onnx": {"gateway_backend": "onnx"}}


def _settings(platform: Settings, state_dir: Path, backend: dict[str, Any]) -> GatewaySettings:
    return GatewaySettings(**{**platform.model_dump(), "state_dir": state_dir,
                              "gateway_admin_token": SecretStr("in-process-admin"),
                              "gateway_onnx_model_dir": platform.model_repository, **backend})


def _in_process(settings: GatewaySettings,
                calls: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
    """Start the app (lifespan included: it pins the aliases), make the calls, stop it."""
    async def run() -> list[httpx.Response]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                return [await client.request(method, path, **kwargs)
                        for method, path, kwargs in calls]
    return asyncio.run(run())


def _binary_request(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    tensor = triton_http.InferInput("X", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows.astype(np.float32), binary_data=True)
    body, length = triton_http.InferenceServerClient.generate_request_body([tensor])
    return body, {"inference-header-content-length": str(length),
                  "content-type": "application/octet-stream"}


def _outputs(response: httpx.Response) -> tuple[np.ndarray, np.ndarray]:
    assert response.status_code == 200, response.text
    length = response.headers.get("inference-header-content-length")
    result = triton_http.InferenceServerClient.parse_response_body(
        response.content, header_length=int(length) if length else None)
    return result.as_numpy("label"), result.as_numpy("probabilities").astype(np.float32)


@pytest.mark.parametrize("backend", sorted(OTHER_BACKENDS))
def test_every_backend_gives_the_same_outputs(served: Served, platform: Settings,
                                              tmp_path: Path, backend: str) -> None:
    _traffic(served, strategy="canary", challenger_weight=0.0)
    rows = served.rows[:8].astype(np.float32)
    binary, binary_headers = _binary_request(rows)
    pinned = f"/v2/models/{MODEL}/versions/{served.champion}/infer"
    calls = [("POST", f"/v2/models/{MODEL}/infer", {"content": binary, "headers": binary_headers}),
             ("POST", pinned, {"json": _body(rows)})]
    direct = httpx.post(f"{platform.url(platform.triton_http_port)}{pinned}",
                        content=binary, headers=binary_headers)
    through_http_backend = httpx.post(f"{served.url}{pinned}", json=_body(rows))
    expected = _outputs(direct)
    for response in [through_http_backend,
                     *_in_process(_settings(platform, tmp_path, OTHER_BACKENDS[backend]), calls)]:
        labels, probabilities = _outputs(response)
        assert np.array_equal(labels, expected[0])
        assert np.array_equal(probabilities, expected[1])
        assert response.headers["x-onecommit-version"] == str(served.champion)


@pytest.mark.parametrize("backend", sorted(OTHER_BACKENDS))
def test_other_backends_answer_bad_input_and_metadata_like_triton(
        served: Served, platform: Settings, tmp_path: Path, backend: str) -> None:
    infer = f"/v2/models/{MODEL}/infer"
    one_row = _body(served.rows[:1])
    calls = [
        ("POST", infer, {"content": b"{not json"}),
        ("POST", infer, {"json": {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32",
                                              "data": [1, 2, 3]}]}}),
        ("POST", infer, {"json": {"inputs": [{"name": "X", "shape": [1, 30],
                                              "datatype": "BYTES", "data": ["a"] * 30}]}}),
        ("POST", infer, {"json": {**one_row, "outputs": [{"name": "nope"}]}}),
        ("POST", f"/v2/models/{MODEL}/versions/999/infer", {"json": one_row}),
        ("POST", "/v2/models/no-such-model/infer", {"json": one_row}),
        ("GET", f"/v2/models/{MODEL}", {}),
        ("GET", f"/v2/models/{MODEL}/versions/{served.champion}/ready", {}),
        ("GET", f"/v2/models/{MODEL}/versions/999/ready", {}),
        ("GET", f"/v2/models/{MODEL}/versions/{served.champion}/stats", {}),
    ]
    answers = _in_process(_settings(platform, tmp_path, OTHER_BACKENDS[backend]), calls)
    assert [a.status_code for a in answers] == [400, 400, 400, 400, 404, 404, 200, 200, 400, 404]
    assert all("error" in a.json() for a in answers[:6])
    metadata = answers[6].json()
    assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 30]}]
    assert {str(served.champion), str(served.challenger)} <= set(metadata["versions"])
    assert answers[7].json()["ready"] is True


def test_inference_token_and_body_limit_hold_on_the_fast_path(served: Served, platform: Settings,
                                                              tmp_path: Path) -> None:
    settings = _settings(platform, tmp_path, {**OTHER_BACKENDS["onnx"],
                                              "gateway_inference_token": SecretStr("infer-me"),
                                              "gateway_max_body_bytes": 4096})
    infer = f"/v2/models/{MODEL}/infer"
    one_row = _body(served.rows[:1])

    async def oversized() -> Any:
        for _ in range(8):  # streamed without a Content-Length, 8 KiB in all
            yield b" " * 1024

    answers = _in_process(settings, [
        ("POST", infer, {"json": one_row}),
        ("POST", infer, {"json": one_row, "headers": {"Authorization": "Bearer wrong"}}),
        ("POST", infer, {"json": one_row, "headers": {"Authorization": "Bearer infer-me"}}),
        ("POST", infer, {"content": oversized(), "headers": {"Authorization": "Bearer infer-me"}}),
        ("POST", f"/v2/models/{MODEL}/versions/x1/infer",
         {"json": one_row, "headers": {"Authorization": "Bearer infer-me"}}),
    ])
    assert [a.status_code for a in answers] == [401, 401, 200, 413, 400]
    assert all("error" in answers[i].json() for i in (0, 1, 3, 4))
    assert answers[2].headers["x-onecommit-variant"] == "champion"


def _fresh(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request on a new connection: the kernel hands each to either gateway worker."""
    with httpx.Client(timeout=10, verify=tls_context()) as client:  # shared context: 3 ms, not 75
        return client.request(method, url, **kwargs)


def test_two_workers_route_alike_and_join_feedback_across_workers(served: Served,
                                                                   platform: Settings) -> None:
    assert platform.gateway_workers == 2
    changed = httpx.put(f"{served.url}{ADMIN_API}/traffic", headers=served.admin, json={
        "strategy": "ab", "challenger_weight": 0.5, "experiment": "workers"})
    revision, started = changed.json()["revision"], time.monotonic()
    seen: dict[str, int] = {}
    # Every worker comes to the new revision (how fast: `invoke bench gateway`).
    while len(seen) < 2 or set(seen.values()) != {revision}:
        answer = _fresh("GET", f"{served.url}{ADMIN_API}/traffic").json()
        assert time.monotonic() - started < 30, f"replicas and their revisions: {seen}"
        seen[answer["replica"]] = answer["revision"]
    # Every worker routes a user (A/B's sticky header) the same way, and feedback joins
    # wherever it lands.
    ids = [f"workers-{i}" for i in range(120)]
    routes: dict[str, set[str]] = {i: set() for i in ids}
    for _ in range(2):
        for n, request_id in enumerate(ids):
            response = _fresh("POST", f"{served.url}/v2/models/{MODEL}/infer",
                              json=_body(served.rows[n % 50: n % 50 + 1]),
                              headers={"x-request-id": request_id, "x-user-id": request_id})
            assert response.status_code == 200, response.text
            routes[request_id].add(response.headers["x-onecommit-variant"])
    assert all(len(variants) == 1 for variants in routes.values())
    for n, request_id in enumerate(ids):
        joined = _fresh("POST", f"{served.url}/feedback", headers=served.admin, json={
            "request_id": request_id, "label": int(served.labels[n % 50])})
        assert joined.status_code == 200, joined.text
        assert {joined.json()["variant"]} == routes[request_id]
    # The shared log shows both workers answering, and feedback received by the other one
    # (each worker writes its log in batches, off the hot path).
    deadline = time.monotonic() + 30
    while True:
        with sqlite3.connect(platform.serving_db.removeprefix("sqlite:///")) as db:
            served_by = dict(db.execute(
                "SELECT request_id, replica FROM predictions WHERE request_id LIKE 'workers-%'"))
            received_by = dict(db.execute(
                "SELECT request_id, replica FROM feedback WHERE request_id LIKE 'workers-%'"))
        if len(received_by) == len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert set(received_by) == set(ids)
    assert len(set(served_by.values())) == 2
    assert any(received_by[i] != served_by[i] for i in received_by)
    report = httpx.get(f"{served.url}{ADMIN_API}/analysis").json()
    assert sum(v["feedback"] for v in report["variants"].values()) >= len(ids)


def _requests_counted(url: str) -> float:
    """The model's inference count as one scrape of /metrics answers it (either worker's)."""
    families = text_string_to_metric_families(_fresh("GET", f"{url}/metrics").text)
    return sum(sample.value for family in families if family.name == "onecommit_gateway_requests"
               for sample in family.samples
               if sample.name.endswith("_total") and sample.labels["model"] == MODEL)


def test_every_scrape_counts_the_requests_of_both_workers(served: Served,
                                                           platform: Settings) -> None:
    assert platform.gateway_workers == 2
    before = _requests_counted(served.url)
    for n in range(40):  # each on a new connection: both workers answer some
        response = _fresh("POST", f"{served.url}/v2/models/{MODEL}/infer",
                          json=_body(served.rows[n: n + 1]))
        assert response.status_code == 200, response.text
    assert {_requests_counted(served.url) for _ in range(8)} == {before + 40}


class _RegistryProxy(ThreadingHTTPServer):
    """MLflow's REST API forwarded from a port of its own: a registry that starts answering
    only once the test opens this port."""

    def __init__(self, port: int, upstream: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answer = httpx.get(f"{upstream}{self.path}", timeout=10)
                self.send_response(answer.status_code)
                self.send_header("content-type", answer.headers.get("content-type", ""))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *_: object) -> None:
                pass

        super().__init__(("127.0.0.1", port), Handler)


def test_a_gateway_started_before_the_registry_is_not_ready_until_it_has_seeded(
        served: Served, platform: Settings, tmp_path: Path) -> None:
    """No desired state yet (a new serving database) and MLflow not answering: not ready, with
    the reason, until the registry answers; then the champion is pinned and ready."""
    port = free_ports(1)[0]
    settings = _settings(platform, tmp_path, {"mlflow_port": port})

    async def run() -> tuple[httpx.Response, httpx.Response, dict[str, Any]]:
        app = create_app(settings)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            before = await client.get("/v2/health/ready")
            proxy = _RegistryProxy(port, served.mlflow_url)
            threading.Thread(target=proxy.serve_forever, daemon=True).start()
            try:
                deadline = time.monotonic() + 10
                while (after := await client.get("/v2/health/ready")).status_code != 200:
                    assert time.monotonic() < deadline, after.text
                    await asyncio.sleep(0.1)
                variants = (await client.get(f"{ADMIN_API}/variants")).json()
            finally:
                proxy.shutdown()
                proxy.server_close()
        return before, after, variants

    before, after, variants = asyncio.run(run())
    assert before.status_code == 503
    assert "registry (MLflow) has not answered" in before.json()["reason"]
    assert after.json()["reason"] == "every champion is served"
    assert variants["variants"]["champion"]["version"] == served.champion
