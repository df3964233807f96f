"""Each lifecycle step alone, against the real MLflow server and Triton of the session."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

from onecommit.lifecycle import data, registry, training, triton
from onecommit.lifecycle.spec import ModelSpec, load_spec
from onecommit.secrets.local_store import triton_control_key
from onecommit.settings import PROJECT_ROOT, Settings
from onecommit.vocabulary import CHALLENGER, CHAMPION, PREVIOUS

pytestmark = pytest.mark.platform
SPEC = load_spec(PROJECT_ROOT / "gitops" / "envs" / "dev" / "models" / "breast-cancer.yaml")
SPLIT = data.of_spec(SPEC)


def _with_c(c_value: float) -> ModelSpec:
    assert SPEC.training is not None
    changed = SPEC.training.model_copy(update={"params": {"C": c_value, "max_iter": 500}})
    return SPEC.model_copy(update={"training": changed})


def _candidate(settings: Settings, name: str, c_value: float, sha: str) -> tuple[int, bytes]:
    onnx_bytes = training.candidate(_with_c(c_value), SPLIT, None)
    metrics = training.evaluate(onnx_bytes, SPLIT, SPEC.task)
    client = registry.client(settings.url(settings.mlflow_port))
    context = registry.RunContext(git_sha=sha, env="dev", dag_run_id=f"test-{sha}")
    artifact = registry.Artifact.trained(onnx_bytes, SPLIT.x_holdout, SPLIT.feature_names)
    candidate = registry.log_candidate(client, name, artifact, {"C": c_value}, metrics, context)
    version, _ = registry.register(client, name, candidate, context)
    return version, onnx_bytes


def _reference(settings: Settings, name: str, version: int,
               golden: np.ndarray) -> dict[str, np.ndarray]:
    client = registry.client(settings.url(settings.mlflow_port))
    return training.OnnxModel(registry.load_onnx(client, name, version)).outputs(golden)


@pytest.fixture
def aliases_model(platform: Settings) -> Iterator[str]:
    """A model whose aliases the test moves in the registry alone: deleted after it, since a
    champion never published would be seeded by a gateway recovering an empty store."""
    name = "aliases-model"
    yield name
    registry.client(platform.url(platform.mlflow_port)).delete_registered_model(name)


def test_register_promote_and_restore_move_aliases(platform: Settings, aliases_model: str) -> None:
    client = registry.client(platform.url(platform.mlflow_port))
    name = aliases_model
    first, _ = _candidate(platform, name, 1.0, "aaa1")
    assert registry.alias_version(client, name, CHALLENGER) == first
    registry.promote(client, name, first)
    second, _ = _candidate(platform, name, 0.5, "bbb2")
    version = client.get_model_version(name, str(second))
    assert version.tags["before_version"] == str(first)
    assert version.tags["git_sha"] == "bbb2"
    assert client.get_run(version.run_id).data.tags["before_version"] == str(first)
    assert registry.promote(client, name, second) == first
    assert registry.alias_version(client, name, CHAMPION) == second
    assert registry.alias_version(client, name, PREVIOUS) == first
    assert registry.alias_version(client, name, CHALLENGER) is None
    third, _ = _candidate(platform, name, 0.1, "ccc3")
    registry.restore(client, name, second, third, "smoke failed")
    assert registry.alias_version(client, name, CHAMPION) == second
    tags = client.get_model_version(name, str(third)).tags
    assert tags["status"] == "rolled_back"
    assert tags["reason"] == "smoke failed"


def test_published_version_matches_registry_model_on_golden_rows(platform: Settings) -> None:
    name = "smoke-model"
    version, onnx_bytes = _candidate(platform, name, 1.0, "ddd4")
    client = registry.client(platform.url(platform.mlflow_port))
    golden = registry.golden_rows(client, name, version)
    np.testing.assert_array_equal(golden, SPLIT.x_holdout[:registry.GOLDEN_ROWS])
    tags = client.get_model_version(name, str(version)).tags
    assert tags[registry.CHECKSUM] == registry.checksum(onnx_bytes)
    assert json.loads(tags["feature_names"]) == SPLIT.feature_names
    grpc_url = f"127.0.0.1:{platform.triton_grpc_port}"
    triton.load_beside(grpc_url, platform.model_repository, name, version, onnx_bytes,
                        triton_control_key(platform))
    assert triton.version_ready(grpc_url, name, version)
    reference = _reference(platform, name, version, golden)
    assert triton.smoke(grpc_url, name, version, reference, golden).problems == []


def test_smoke_catches_a_tampered_model(platform: Settings) -> None:
    name = "tampered-model"
    version, _ = _candidate(platform, name, 1.0, "eee5")
    golden = SPLIT.x_holdout[:32]
    # An ONNX file from a different model: loads fine, answers wrong.
    other = training.candidate(_with_c(1e-4), SPLIT, None)
    grpc_url = f"127.0.0.1:{platform.triton_grpc_port}"
    triton.load_beside(grpc_url, platform.model_repository, name, version, other,
                        triton_control_key(platform))
    problems = triton.smoke(grpc_url, name, version,
                             _reference(platform, name, version, golden), golden).problems
    assert problems
    assert np.any(["probabilities differ" in p for p in problems])
