"""One gateway serving several models, each with its own pins, traffic policy, analysis and
durable state; desired state seeded from the registry. Built by `create_app` in this process on
the in-process ONNX backend (real ONNX Runtime, real SQLite), over a classifier and a
regression model, with a stand-in for MLflow's registry REST API: no platform needed."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pytest
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge

from onecommit.analysis.report import Observations, analyse
from onecommit.analysis.spec import from_thresholds
from onecommit.clients.gateway import Gateway
from onecommit.gateway.settings import GatewaySettings
from onecommit.serving.database import open_engine
from onecommit.serving.state import StateStore
from onecommit.serving.triton_repo import publish
from onecommit.settings import Settings
from tests.conftest import free_ports
from tests.in_process_gateway import onnx_settings, started

CLASSIFIER, REGRESSOR = "cancer", "diabetes"
ADMIN = {"Authorization": "Bearer models-test"}
Aliases = dict[str, dict[str, int]]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository: a classifier (answers `label`) and a regression model (answers
    `prediction`), two versions each."""
    repository = tmp_path_factory.mktemp("models")
    features, labels = load_breast_cancer(return_X_y=True)
    for version, c_value in ((1, 1.0), (2, 1e-4)):
        classifier = LogisticRegression(C=c_value, max_iter=5000).fit(features, labels)
        proto = to_onnx(classifier, features[:1].astype(np.float32),
                        options={id(classifier): {"zipmap": False}})
        publish(repository, CLASSIFIER, version, proto.SerializeToString())
    features, targets = load_diabetes(return_X_y=True)
    for version, alpha in ((1, 0.1), (2, 10.0)):
        regressor = Ridge(alpha=alpha).fit(features, targets)
        proto = to_onnx(regressor, features[:1].astype(np.float32),
                        final_types=[("prediction", FloatTensorType([None, 1]))])
        publish(repository, REGRESSOR, version, proto.SerializeToString())
    return repository


@pytest.fixture
def repository(published: Path, tmp_path: Path) -> Path:
    """A copy a test may take versions out of."""
    return Path(shutil.copytree(published, tmp_path / "models"))


class Registry(ThreadingHTTPServer):
    """MLflow's registry REST API as the gateway asks it: the search (one model per page, so
    the gateway must follow the pages) and alias lookups, over `aliases`."""

    def __init__(self, port: int, aliases: Aliases) -> None:
        self.aliases = aliases
        self.searched_pages = 0
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                status, body = registry.answer(url.path, query)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body).encode())

            def log_message(self, *_: object) -> None:
                return

        super().__init__(("127.0.0.1", port), Handler)

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if path == "/api/2.0/mlflow/registered-models/search":
            self.searched_pages += 1
            names = sorted(self.aliases)
            at = int(query.get("page_token", "0"))
            page = {"registered_models": [
                {"name": name, "aliases": [{"alias": a, "version": str(v)}
                                           for a, v in self.aliases[name].items()]}
                for name in names[at:at + 1]]}
            return 200, page | ({"next_page_token": str(at + 1)} if at + 1 < len(names) else {})
        if path == "/api/2.0/mlflow/registered-models/alias":
            version = self.aliases.get(query["name"], {}).get(query["alias"])
            if version is None:
                return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST"}
            return 200, {"model_version": {"name": query["name"], "version": str(version)}}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND"}


@asynccontextmanager
async def _registry(port: int, aliases: Aliases) -> AsyncIterator[Registry]:
    server = Registry(port, aliases)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _settings(state_dir: Path, repository: Path, mlflow_port: int) -> GatewaySettings:
    return onnx_settings(state_dir, repository, mlflow_port, "models-test")


@pytest.fixture
def port() -> int:
    """Where the registry stand-in listens, once a test starts it."""
    return free_ports(1)[0]


def _body(row: np.ndarray) -> dict[str, object]:
    return {"inputs": [{"name": "X", "shape": [1, row.size], "datatype": "FP32",
                        "data": row.astype(np.float32).tolist()}]}


def _output(response: httpx.Response) -> float:
    assert response.status_code == 200, response.text
    (tensor,) = [t for t in response.json()["outputs"] if t["name"] in ("label", "prediction")]
    return float(tensor["data"][0])


async def _infer(client: httpx.AsyncClient, model: str, rows: np.ndarray,
                 prefix: str) -> list[tuple[str, str, float]]:
    """(request id, variant, prediction) of each row sent to the model's routed path."""
    answers = []
    for i, row in enumerate(rows):
        response = await client.post(f"/v2/models/{model}/infer", json=_body(row),
                                     headers={"x-request-id": f"{prefix}-{i}"})
        answers.append((f"{prefix}-{i}", response.headers["x-onecommit-variant"],
                        _output(response)))
    return answers


def test_one_gateway_serves_two_models_each_with_its_own_pins_policy_and_analysis(
        repository: Path, tmp_path: Path, port: int) -> None:
    cancer_x, cancer_y = load_breast_cancer(return_X_y=True)
    diabetes_x, diabetes_y = load_diabetes(return_X_y=True)
    aliases = {CLASSIFIER: {"champion": 1, "challenger": 2}, REGRESSOR: {"champion": 2}}

    async def scenario() -> None:
        async with _registry(port, aliases), \
                started(_settings(tmp_path, repository, port)) as gateway:
            listed = (await gateway.get("/models")).json()["models"]
            assert listed == {
                CLASSIFIER: {"champion": 1, "challenger": 2, "previous": None,
                             "strategy": "canary", "serving": True, "revision": 1,
                             "retired": None},
                REGRESSOR: {"champion": 2, "challenger": None, "previous": None,
                            "strategy": "canary", "serving": True, "revision": 1,
                            "retired": None}}
            # A policy change on one model leaves the other's as it was.
            regressor_before = (await gateway.get(f"/models/{REGRESSOR}/traffic")).json()
            changed = await gateway.put(f"/models/{CLASSIFIER}/traffic", headers=ADMIN,
                                        json={"strategy": "canary", "challenger_weight": 1.0})
            assert changed.status_code == 200, changed.text
            assert (changed.json()["model"], changed.json()["revision"]) == (CLASSIFIER, 2)
            assert (await gateway.get(f"/models/{REGRESSOR}/traffic")).json() == regressor_before
            reloaded = await gateway.post(f"/models/{REGRESSOR}/variant/previous/reload",
                                          headers=ADMIN)
            assert reloaded.status_code == 409, reloaded.text  # no `previous` alias set
            aliases[REGRESSOR]["previous"] = 1
            reloaded = await gateway.post(f"/models/{REGRESSOR}/variant/previous/reload",
                                          headers=ADMIN)
            assert reloaded.json() == {"model": REGRESSOR, "alias": "previous", "version": 1,
                                       "ready": True, "revision": 2}
            cancer_pins = (await gateway.get(f"/models/{CLASSIFIER}/variants")).json()
            assert {a: v["version"] for a, v in cancer_pins["variants"].items()} == {
                "champion": 1, "challenger": 2}

            cancer = await _infer(gateway, CLASSIFIER, cancer_x[:30], "c")
            diabetes = await _infer(gateway, REGRESSOR, diabetes_x[:20], "d")
            assert {variant for _, variant, _ in cancer} == {"challenger"}
            assert {variant for _, variant, _ in diabetes} == {"champion"}
            # Feedback is global: the request id says which model and variant it judges.
            for (request_id, _, _), label in zip(cancer, cancer_y, strict=False):
                joined = await gateway.post("/feedback", headers=ADMIN,
                                            json={"request_id": request_id, "label": int(label)})
                assert joined.json()["model"] == CLASSIFIER, joined.text
            for (request_id, _, predicted), target in zip(diabetes, diabetes_y, strict=False):
                joined = await gateway.post("/feedback", headers=ADMIN,
                                            json={"request_id": request_id, "label": target})
                assert joined.status_code == 200, joined.text
                assert (joined.json()["model"], joined.json()["variant"]) == (REGRESSOR,
                                                                             "champion")
                assert joined.json()["abs_error"] == pytest.approx(abs(predicted - target))

            cancer_report = (await gateway.get(f"/models/{CLASSIFIER}/analysis")).json()
            assert set(cancer_report["variants"]) == {"challenger"}
            challenger = cancer_report["variants"]["challenger"]
            assert (challenger["requests"], challenger["feedback"]) == (30, 30)
            correct = sum(p == y for (_, _, p), y in zip(cancer, cancer_y, strict=False))
            assert challenger["online_accuracy"] == pytest.approx(correct / 30)
            diabetes_report = (await gateway.get(f"/models/{REGRESSOR}/analysis")).json()
            champion = diabetes_report["variants"]["champion"]
            assert (champion["requests"], champion["feedback"]) == (20, 20)
            expected_mae = np.mean([abs(p - y) for (_, _, p), y
                                    in zip(diabetes, diabetes_y, strict=False)])
            assert champion["online_mae"] == pytest.approx(expected_mae, rel=1e-5)
            assert champion["online_mae"] > 1  # a regression error, not a class mismatch
            # A regressor answers no class probabilities: nothing scored, no estimate.
            assert champion["estimated_accuracy"] is None
            assert 0.5 < challenger["estimated_accuracy"] <= 1
            regressor = Observations.model_validate((await gateway.get(
                f"/models/{REGRESSOR}/analysis/observations")).json())
            assert [(s.champion.requests, s.champion.scored, s.champion.confidence_sum)
                    for s in regressor.strata] == [(20, 0, 0.0)]

            # Resetting one model's analysis window leaves the other's.
            reset = await gateway.post(f"/models/{CLASSIFIER}/analysis/reset", headers=ADMIN)
            assert reset.json()["model"] == CLASSIFIER
            assert (await gateway.get(f"/models/{CLASSIFIER}/analysis")).json()["variants"] == {}
            assert (await gateway.get(f"/models/{REGRESSOR}/analysis")).json()[
                "variants"] == diabetes_report["variants"]

            pages = (await gateway.get("/ui/rollout.json")).json()["models"]
            assert set(pages) == {CLASSIFIER, REGRESSOR}
            assert pages[CLASSIFIER]["policy"]["weights"]["challenger"] == 1.0
            assert pages[REGRESSOR]["versions"] == {"champion": 2, "challenger": None,
                                                    "previous": 1}
            assert pages[REGRESSOR]["variants"][0]["online_mae"] == pytest.approx(expected_mae,
                                                                                 rel=1e-5)
            assert pages[REGRESSOR]["variants"][0]["estimated_accuracy"] is None

    asyncio.run(scenario())


def test_serving_is_observed_and_goes_false_when_a_champion_is_not_loaded(
        repository: Path, tmp_path: Path, port: int) -> None:
    aliases = {CLASSIFIER: {"champion": 1}, REGRESSOR: {"champion": 1}}

    async def scenario() -> None:
        async with _registry(port, aliases), \
                started(_settings(tmp_path, repository, port)) as gateway:
            assert (await gateway.get("/v2/health/ready")).status_code == 200
            shutil.rmtree(repository / REGRESSOR / "1")
            models = (await gateway.get("/models")).json()["models"]
            assert (models[CLASSIFIER]["serving"], models[REGRESSOR]["serving"]) == (True, False)
            ready = await gateway.get("/v2/health/ready")
            assert ready.status_code == 503
            assert f"champion version 1 of {REGRESSOR!r} is not loaded" in ready.json()["reason"]

    asyncio.run(scenario())


async def _sent(client: httpx.AsyncClient, path: str, rows: np.ndarray,
                prefix: str) -> list[httpx.Response]:
    return [await client.post(path, json=_body(row), headers={"x-request-id": f"{prefix}-{i}"})
            for i, row in enumerate(rows)]


def _confidence(response: httpx.Response) -> float:
    """The probability the answer gives the class it answered."""
    outputs = {t["name"]: t for t in response.json()["outputs"]}
    label = int(outputs["label"]["data"][0])
    assert outputs["probabilities"]["shape"] == [1, 2]
    return float(outputs["probabilities"]["data"][label])


def _tally(responses: list[httpx.Response], variant: str, status: int) -> int:
    return sum(r.headers["x-onecommit-variant"] == variant and r.status_code == status
               for r in responses)


def test_observations_count_each_arm_per_traffic_split_and_analyse_accepts_them(
        repository: Path, tmp_path: Path, port: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    features, labels = load_breast_cancer(return_X_y=True)
    aliases = {CLASSIFIER: {"champion": 1, "challenger": 2}}
    routed = f"/v2/models/{CLASSIFIER}/infer"
    # The labels of the first 40 requests of each split, in the order feedback is sent.
    truth = [*labels[:40], *labels[60:100]]

    async def canary(gateway: httpx.AsyncClient, weight: float) -> None:
        changed = await gateway.put(f"/models/{CLASSIFIER}/traffic", headers=ADMIN,
                                    json={"strategy": "canary", "challenger_weight": weight})
        assert changed.status_code == 200, changed.text

    async def scenario() -> dict[str, Any]:
        async with _registry(port, aliases), \
                started(_settings(tmp_path, repository, port)) as gateway:
            await _sent(gateway, routed, features[:10], "before")  # before the window
            await canary(gateway, 0.3)
            assert (await gateway.post(f"/models/{CLASSIFIER}/analysis/reset",
                                       headers=ADMIN)).status_code == 200
            small = await _sent(gateway, routed, features[:60], "small")
            # A client's bad input is its own mistake, not a model error (a 400).
            small.append(await gateway.post(routed, json={"inputs": []}))
            # Pinned requests are served and logged, never judged.
            for version in (1, 2):
                pinned = await _sent(gateway, f"/v2/models/{CLASSIFIER}/versions/{version}"
                                     "/infer", features[:5], f"pinned-{version}")
                assert {r.status_code for r in pinned} == {200}
            await canary(gateway, 0.7)
            large = await _sent(gateway, routed, features[60:120], "large")
            labelled = [*small[:40], *large[:40]]
            for response, label in zip(labelled, truth, strict=True):
                joined = await gateway.post("/feedback", headers=ADMIN, json={
                    "request_id": response.headers["x-request-id"], "label": int(label)})
                assert joined.status_code == 200, joined.text
            # The challenger's version gone from the inference server: its requests fail for
            # the infrastructure's reason, counted apart from the model's.
            shutil.rmtree(repository / CLASSIFIER / "2")
            broken = await _sent(gateway, routed, features[120:140], "broken")
            assert {r.status_code for r in broken} == {200, 503}
            before = (await gateway.get(f"/models/{CLASSIFIER}/analysis")).json()
            answer = await gateway.get(f"/models/{CLASSIFIER}/analysis/observations")
            assert answer.status_code == 200, answer.text
            # Today's analysis answers as it did: the new route only reads.
            assert (await gateway.get(f"/models/{CLASSIFIER}/analysis")).json() == before
            return {"answer": answer.json(), "analysis": before, "small": small,
                    "large": large, "broken": broken, "labelled": labelled}

    seen = asyncio.run(scenario())
    observations = Observations.model_validate(seen["answer"])
    first, second = observations.strata
    assert (first.challenger_weight, second.challenger_weight) == (0.3, 0.7)
    small, large, broken = seen["small"], seen["large"], seen["broken"]
    for stratum, responses in ((first, small), (second, [*large, *broken])):
        for variant in ("champion", "challenger"):
            arm = getattr(stratum, variant)
            answered = [r for r in responses if r.headers["x-onecommit-variant"] == variant]
            assert arm.requests == sum(r.status_code != 503 for r in answered), variant
            assert arm.errors == 0
            assert arm.infra_errors == sum(r.status_code == 503 for r in answered)
            assert 0 < len(arm.latencies_ms) == arm.requests
            # Every answer of the classifier logs its answered class's probability (CBPE).
            scored = [_confidence(r) for r in answered if r.status_code == 200]
            assert arm.scored == len(scored) > 0, variant
            assert 0 < arm.confidence_sum <= arm.scored
            assert arm.confidence_sum == pytest.approx(sum(scored), rel=1e-5)
    assert second.challenger.infra_errors == _tally(broken, "challenger", 503) > 0
    assert second.champion.infra_errors == 0
    # 10 before the window, 10 pinned: none counted.
    total = sum(s.champion.requests + s.challenger.requests + s.challenger.infra_errors
                for s in observations.strata)
    assert total == len(small) + len(large) + len(broken)
    for stratum, part in ((first, slice(0, 40)), (second, slice(40, 80))):
        for variant in ("champion", "challenger"):
            judged = [(r, y) for r, y in zip(seen["labelled"][part], truth[part], strict=True)
                      if r.headers["x-onecommit-variant"] == variant]
            arm = getattr(stratum, variant)
            assert arm.labelled == len(judged)
            assert arm.correct == sum(_output(r) == y for r, y in judged)
            assert arm.abs_error_sum == arm.labelled - arm.correct  # classes 0 and 1
    # The per-variant summary and the strata count the same requests.
    variants = seen["analysis"]["variants"]
    assert variants["challenger"]["infra_errors"] == second.challenger.infra_errors
    assert variants["champion"]["feedback"] == first.champion.labelled + \
        second.champion.labelled
    # The per-variant summary shows the label-free estimate beside the measured accuracy.
    champion = [s.champion for s in observations.strata]
    assert variants["champion"]["estimated_accuracy"] == pytest.approx(
        sum(a.confidence_sum for a in champion) / sum(a.scored for a in champion))

    spec = from_thresholds({"max_error_rate": 0.05, "max_p95_latency_ms": 1000,
                            "min_online_accuracy": 0.5, "min_requests": 10,
                            "max_infra_pause_s": 60},
                           {"kind": "ab", "significance": 0.05, "sample_size": 100})
    report = analyse(spec, observations)
    assert [r.metric for r in report.metrics] == [m.name for m in spec.metrics]
    assert report.observed == observations

    # The client asks that route and hands back the typed observations.
    asked: list[str] = []

    def replay(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, json=seen["answer"])

    monkeypatch.setattr("onecommit.clients.gateway.gateway_client", lambda _: httpx.Client(
        transport=httpx.MockTransport(replay), base_url="http://gateway"))
    with Gateway(Settings(state_dir=tmp_path), CLASSIFIER) as client:
        assert client.observations() == observations
    assert asked == [f"/models/{CLASSIFIER}/analysis/observations"]


def test_mirrored_requests_keep_both_answers_and_feedback_judges_each(
        repository: Path, tmp_path: Path, port: int) -> None:
    features, labels = load_breast_cancer(return_X_y=True)
    rows, truth = features[:60], labels[:40]
    aliases = {CLASSIFIER: {"champion": 1, "challenger": 2}}

    async def scenario() -> tuple[Observations, list[float], list[float]]:
        async with _registry(port, aliases), \
                started(_settings(tmp_path, repository, port)) as gateway:
            assert (await gateway.put(f"/models/{CLASSIFIER}/traffic", headers=ADMIN,
                                      json={"strategy": "shadow"})).status_code == 200
            await gateway.post(f"/models/{CLASSIFIER}/analysis/reset", headers=ADMIN)
            served = await _infer(gateway, CLASSIFIER, rows, "mirrored")
            # What the challenger answers each row, asked pinned (neither mirrored nor judged).
            challenger = [_output(r) for r in await _sent(
                gateway, f"/v2/models/{CLASSIFIER}/versions/2/infer", rows, "asked")]
            for (request_id, _, _), label in zip(served, truth, strict=False):
                assert (await gateway.post("/feedback", headers=ADMIN, json={
                    "request_id": request_id, "label": int(label)})).status_code == 200
            # The mirrors run beside the answers: until every one is logged, within a bound.
            deadline = asyncio.get_running_loop().time() + 30
            while (observed := Observations.model_validate((await gateway.get(
                    f"/models/{CLASSIFIER}/analysis/observations")).json())
                   ).shadow.compared < len(rows):
                assert asyncio.get_running_loop().time() < deadline, observed.shadow
                await asyncio.sleep(0.05)
            return observed, [p for _, _, p in served], challenger

    observed, champion, challenger = asyncio.run(scenario())
    (stratum,) = observed.strata
    assert (stratum.challenger_weight, stratum.champion.requests,
            stratum.challenger.requests) == (0.0, len(rows), 0)
    assert observed.shadow.agree == sum(a == b for a, b in zip(champion, challenger,
                                                               strict=True))
    assert observed.shadow.agree < len(rows)  # the two versions differ on some rows
    pairs = [(a == y, b == y) for a, b, y in zip(champion, challenger, truth, strict=False)]
    assert (observed.shadow.both_correct, observed.shadow.champion_only,
            observed.shadow.challenger_only, observed.shadow.neither_correct) == (
        pairs.count((True, True)), pairs.count((True, False)), pairs.count((False, True)),
        pairs.count((False, False)))


BAD_NAMES = ["Cancer", "c", "9lives", "a" * 64, "with space", "dot.ted"]
PER_MODEL = [("GET", "/variants"), ("GET", "/traffic"), ("PUT", "/traffic"),
             ("GET", "/analysis"), ("GET", "/analysis/observations"),
             ("POST", "/analysis/reset"),
             ("POST", "/variant/champion/reload"), ("DELETE", "/variant/challenger"),
             ("POST", "/rollout/events")]
BODIES = {"/traffic": {"strategy": "canary"},
          "/rollout/events": {"kind": "start", "version": 1, "detail": {}}}


def test_bad_model_names_and_models_never_deployed_are_refused_with_the_v2_error(
        repository: Path, tmp_path: Path, port: int) -> None:
    aliases = {CLASSIFIER: {"champion": 1}}

    async def scenario() -> None:
        async with _registry(port, aliases), \
                started(_settings(tmp_path, repository, port)) as gateway:
            before = (await gateway.get("/models")).json()["models"]
            for name in BAD_NAMES:
                for method, suffix in PER_MODEL:
                    answer = await gateway.request(method, f"/models/{name}{suffix}",
                                                   headers=ADMIN, json=BODIES.get(suffix))
                    assert answer.status_code == 422, (method, name, suffix, answer.text)
                    assert f"model name {name!r} is not valid" in answer.json()["error"]
                    assert "^[a-z][a-z0-9_-]{1,62}$" in answer.json()["error"]
            # A valid name with no desired state: nothing to show, nothing to change; only a
            # reload (a first deploy's) creates it, and only with the alias set.
            for method, suffix in PER_MODEL:
                answer = await gateway.request(method, f"/models/never-deployed{suffix}",
                                               headers=ADMIN, json=BODIES.get(suffix))
                if suffix.endswith("reload"):
                    assert answer.status_code == 409, answer.text
                    assert "is not set in the registry" in answer.json()["error"]
                    continue
                assert answer.status_code == 404, (method, suffix, answer.text)
                assert "its first deploy" in answer.json()["error"]
            assert (await gateway.get("/models")).json()["models"] == before

    asyncio.run(scenario())


def test_a_first_deploy_reload_creates_the_model_desired_state(
        repository: Path, tmp_path: Path, port: int) -> None:
    aliases: Aliases = {CLASSIFIER: {"champion": 1}, REGRESSOR: {}}

    async def scenario() -> None:
        async with _registry(port, aliases), \
                started(_settings(tmp_path, repository, port)) as gateway:
            assert set((await gateway.get("/models")).json()["models"]) == {CLASSIFIER}
            assert (await gateway.get(f"/models/{REGRESSOR}/traffic")).status_code == 404
            aliases[REGRESSOR]["champion"] = 2  # the first deploy promotes, then reloads
            reloaded = await gateway.post(f"/models/{REGRESSOR}/variant/champion/reload",
                                          headers=ADMIN)
            assert reloaded.status_code == 200, reloaded.text
            models = (await gateway.get("/models")).json()["models"]
            assert models[REGRESSOR]["champion"] == 2
            assert models[REGRESSOR]["serving"] is True
            routed = await gateway.post(f"/v2/models/{REGRESSOR}/infer",
                                        json=_body(load_diabetes().data[0]))
            assert routed.headers["x-onecommit-version"] == "2"

    asyncio.run(scenario())


def test_a_retired_model_is_refused_by_name_and_commit_until_it_is_deployed_again(
        repository: Path, tmp_path: Path, port: int) -> None:
    aliases: Aliases = {CLASSIFIER: {"champion": 1}, REGRESSOR: {"champion": 1}}
    settings = _settings(tmp_path, repository, port)
    row = load_diabetes().data[0]

    async def scenario() -> None:
        async with _registry(port, aliases), started(settings) as gateway:
            assert (await gateway.post(f"/v2/models/{REGRESSOR}/infer",
                                       json=_body(row))).status_code == 200
            # The sync retires the model in another process, through the store.
            StateStore(open_engine(settings.serving_db)).retire(
                REGRESSOR, "sync", {"commit": "c0ffee" * 7, "reason": "spec gone"})
            while not (await gateway.get("/models")).json()["models"][REGRESSOR]["retired"]:
                await asyncio.sleep(0.05)
            for answer in (await gateway.post(f"/v2/models/{REGRESSOR}/infer", json=_body(row)),
                           await gateway.get(f"/v2/models/{REGRESSOR}")):
                assert answer.status_code == 404, answer.text
                assert "retired at commit c0ffeec0ffee" in answer.json()["error"]
            # The other model is untouched; a deploy of the retired one serves it again.
            assert (await gateway.post(f"/v2/models/{CLASSIFIER}/infer",
                                       json=_body(load_breast_cancer().data[0]))
                    ).status_code == 200
            assert (await gateway.post(f"/models/{REGRESSOR}/variant/champion/reload",
                                       headers=ADMIN)).status_code == 200
            assert (await gateway.post(f"/v2/models/{REGRESSOR}/infer",
                                       json=_body(row))).status_code == 200

    asyncio.run(scenario())


def test_every_champion_is_seeded_from_the_registry_once_it_answers_after_a_lost_database(
        repository: Path, tmp_path: Path, port: int) -> None:
    aliases = {CLASSIFIER: {"champion": 2, "previous": 1}, REGRESSOR: {"champion": 1},
               "no-champion": {"challenger": 3}}
    settings = _settings(tmp_path, repository, port)

    async def scenario() -> None:
        async with started(settings) as gateway:
            # Nothing in the store, the registry not answering: not ready, and why.
            ready = await gateway.get("/v2/health/ready")
            assert ready.status_code == 503
            assert "registry (MLflow) has not answered" in ready.json()["reason"]
            unknown = await gateway.get(f"/models/{CLASSIFIER}/traffic")
            assert unknown.status_code == 503, unknown.text
            async with _registry(port, aliases) as registry:
                while (await gateway.get("/v2/health/ready")).status_code != 200:
                    await asyncio.sleep(0.05)
                assert registry.searched_pages >= 3  # one model per page: every page followed
                seeded = (await gateway.get("/models")).json()["models"]
                shadow = await gateway.put(f"/models/{CLASSIFIER}/traffic", headers=ADMIN,
                                           json={"strategy": "shadow"})
                assert shadow.json()["revision"] == 2
        assert {m: (s["champion"], s["previous"], s["revision"]) for m, s in seeded.items()} == {
            CLASSIFIER: (2, 1, 1), REGRESSOR: (1, None, 1)}
        # The serving database lost: a gateway started on an empty one seeds both again.
        database = Path(settings.serving_db.removeprefix("sqlite:///"))
        for file in database.parent.glob(f"{database.name}*"):
            file.unlink()
        async with _registry(port, aliases), started(settings) as gateway:
            assert (await gateway.get("/models")).json()["models"] == seeded

    asyncio.run(scenario())
