"""Each lifecycle step alone, against the real MLflow server and Triton of the session."""

from __future__ import annotations

import numpy as np
import pytest

from onecommit.lifecycle import registry, serving, training
from onecommit.lifecycle.export import to_onnx_bytes
from onecommit.lifecycle.spec import load_spec
from onecommit.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.platform
SPEC = load_spec(PROJECT_ROOT / "gitops" / "envs" / "dev" / "model.yaml")


def _candidate(settings: Settings, name: str, c_value: float, sha: str) -> tuple[int, object]:
    algorithm = SPEC.algorithm.model_copy(update={"params": {"C": c_value, "max_iter": 500}})
    split = training.load_split(SPEC.dataset)
    pipeline = training.train(algorithm, split, SPEC.dataset.seed)
    metrics = training.evaluate(pipeline, split)
    client = registry.client(settings.url(settings.mlflow_port))
    context = registry.RunContext(git_sha=sha, env="dev", dag_run_id=f"test-{sha}")
    candidate = registry.log_candidate(client, name, pipeline, split.x_holdout,
                                       {"C": c_value}, metrics, context)
    version, _ = registry.register(client, name, candidate, context)
    return version, pipeline


def _reference(settings: Settings, name: str, version: int) -> object:
    return registry.load_model(registry.client(settings.url(settings.mlflow_port)), name, version)


def test_register_promote_and_restore_move_aliases(platform: Settings) -> None:
    client = registry.client(platform.url(platform.mlflow_port))
    name = "aliases-model"
    first, _ = _candidate(platform, name, 1.0, "aaa1")
    assert registry.alias_version(client, name, registry.CHALLENGER) == first
    registry.promote(client, name, first)
    second, _ = _candidate(platform, name, 0.5, "bbb2")
    version = client.get_model_version(name, str(second))
    assert version.tags["before_version"] == str(first)
    assert version.tags["git_sha"] == "bbb2"
    assert client.get_run(version.run_id).data.tags["before_version"] == str(first)
    assert registry.promote(client, name, second) == first
    assert registry.alias_version(client, name, registry.CHAMPION) == second
    assert registry.alias_version(client, name, registry.PREVIOUS) == first
    assert registry.alias_version(client, name, registry.CHALLENGER) is None
    third, _ = _candidate(platform, name, 0.1, "ccc3")
    registry.restore(client, name, second, third, "smoke failed")
    assert registry.alias_version(client, name, registry.CHAMPION) == second
    tags = client.get_model_version(name, str(third)).tags
    assert tags["status"] == "rolled_back"
    assert tags["reason"] == "smoke failed"


def test_published_version_matches_registry_model_on_golden_rows(platform: Settings) -> None:
    name = "smoke-model"
    version, pipeline = _candidate(platform, name, 1.0, "ddd4")
    golden = training.load_split(SPEC.dataset).x_holdout[:32]
    grpc_url = f"127.0.0.1:{platform.triton_grpc_port}"
    serving.load_beside(grpc_url, platform.model_repository, name, version,
                        to_onnx_bytes(pipeline, golden))
    assert serving.version_ready(grpc_url, name, version)
    reference = _reference(platform, name, version)
    assert serving.smoke(grpc_url, name, version, reference, golden).problems == []


def test_smoke_catches_a_tampered_model(platform: Settings) -> None:
    name = "tampered-model"
    version, _ = _candidate(platform, name, 1.0, "eee5")
    golden = training.load_split(SPEC.dataset).x_holdout[:32]
    # An ONNX file from a different model: loads fine, answers wrong.
    other = training.train(SPEC.algorithm.model_copy(update={"params": {"C": 1e-4}}),
                           training.load_split(SPEC.dataset), 0)
    grpc_url = f"127.0.0.1:{platform.triton_grpc_port}"
    serving.load_beside(grpc_url, platform.model_repository, name, version,
                        to_onnx_bytes(other, golden))
    problems = serving.smoke(grpc_url, name, version, _reference(platform, name, version),
                             golden).problems
    assert problems
    assert np.any(["probabilities differ" in p for p in problems])
