"""Two gateway replicas over one serving database, as on a cluster (or with
ONECOMMIT_GATEWAY_WORKERS=2): built by `create_app` in this process on the in-process ONNX
backend (real ONNX Runtime inference, real SQLite), no platform needed."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from onecommit.gateway.settings import GatewaySettings
from onecommit.serving.database import open_engine
from onecommit.serving.state import StateStore
from onecommit.serving.triton_repo import publish
from onecommit.vocabulary import TrafficPolicy
from tests.conftest import free_ports
from tests.in_process_gateway import onnx_settings, started

MODEL = "cancer"
ADMIN = {"Authorization": "Bearer replica-test"}
TRAFFIC = f"/models/{MODEL}/traffic"


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A model repository with two versions that disagree on some rows."""
    repository = tmp_path_factory.mktemp("models")
    features, labels = load_breast_cancer(return_X_y=True)
    for version, c_value in ((1, 1.0), (2, 1e-4)):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c_value, max_iter=500))
        model.fit(features, labels)
        proto = to_onnx(model, features[:1].astype(np.float32),
                        options={id(model.steps[-1][1]): {"zipmap": False}})
        publish(repository, MODEL, version, proto.SerializeToString())
    return repository, features.astype(np.float32), labels


def _settings(state_dir: Path, repository: Path) -> GatewaySettings:
    (mlflow,) = free_ports(1)  # Nothing listens: desired state alone says what to serve.
    return onnx_settings(state_dir, repository, mlflow, "replica-test")


def _body(row: np.ndarray) -> dict[str, object]:
    return {"inputs": [{"name": "X", "shape": [1, 30], "datatype": "FP32",
                        "data": row.tolist()}]}


async def _routes(client: httpx.AsyncClient, features: np.ndarray, ids: range) -> list[str]:
    variants = []
    for i in ids:
        # A/B: sticky on the user header, the same on every replica (a canary draws its key).
        response = await client.post(f"/v2/models/{MODEL}/infer", json=_body(features[i % 100]),
                                     headers={"x-request-id": f"req-{i}",
                                              "x-user-id": f"user-{i}"})
        assert response.status_code == 200, response.text
        variants.append(response.headers["x-onecommit-variant"])
    return variants


def test_replicas_route_alike_share_feedback_and_survive_a_restart(
        rows: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    repository, features, labels = rows
    settings = _settings(tmp_path, repository)
    StateStore(open_engine(settings.serving_db)).change(
        MODEL, "test", pins={"champion": 1, "challenger": 2},
        policy=TrafficPolicy(strategy="ab", challenger_weight=0.5))

    async def scenario() -> None:
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(started(settings))
            b = await stack.enter_async_context(started(settings))
            assert (await a.get(TRAFFIC)).json()["revision"] == 1
            assert await _routes(a, features, range(200)) == await _routes(b, features,
                                                                            range(200))
            # A policy change on one replica reaches the other (how fast is measured by
            # `invoke bench gateway`; a test on a loaded machine only bounds the wait).
            changed = await a.put(TRAFFIC, headers=ADMIN,
                                  json={"strategy": "ab", "challenger_weight": 0.1})
            assert changed.status_code == 200, changed.text
            revision, changed_at = changed.json()["revision"], time.monotonic()
            while (await b.get(TRAFFIC)).json()["revision"] != revision:
                assert time.monotonic() - changed_at < 30, "the change did not reach replica b"
                await asyncio.sleep(0.02)
            assert (await b.get(TRAFFIC)).json()["challenger_weight"] == 0.1
            reset = await a.post(f"/models/{MODEL}/analysis/reset", headers=ADMIN)
            assert reset.status_code == 200
            while (await b.get(TRAFFIC)).json()["revision"] != reset.json()["revision"]:
                await asyncio.sleep(0.02)
            routed_a = await _routes(a, features, range(1000, 1100))
            assert routed_a == await _routes(b, features, range(1000, 1100))
            # Feedback posted to b joins requests a served (and the other way round).
            for i in range(1000, 1040):
                client = b if i % 2 else a
                joined = await client.post("/feedback", headers=ADMIN, json={
                    "request_id": f"req-{i}", "label": int(labels[i % 100])})
                assert joined.status_code == 200, joined.text
                assert joined.json()["variant"] == routed_a[i - 1000]
            unknown = await b.post("/feedback", headers=ADMIN,
                                   json={"request_id": "never-served", "label": 1})
            assert unknown.status_code == 404
            report_a, report_b = (await a.get(f"/models/{MODEL}/analysis")).json(), \
                (await b.get(f"/models/{MODEL}/analysis")).json()
            assert report_a["variants"] == report_b["variants"]
            served = sum(v["requests"] for v in report_a["variants"].values())
            assert served == 200  # both replicas' requests since the reset
            assert sum(v["feedback"] for v in report_a["variants"].values()) == 40
            # A restarted replica serves the policy in force from its first request.
            await stack.aclose()
        async with started(settings) as restarted:
            traffic = (await restarted.get(TRAFFIC)).json()
            assert (traffic["strategy"], traffic["challenger_weight"]) == ("ab", 0.1)
            assert await _routes(restarted, features, range(1000, 1100)) == routed_a
            ready = await restarted.get("/v2/health/ready")
            assert ready.status_code == 200, ready.text

    asyncio.run(scenario())
