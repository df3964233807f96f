"""Model versions to serve: trained, registered in MLflow and loaded in Triton by the lifecycle
library, so a benchmark or a test has a champion and a challenger without running the DAG."""

from __future__ import annotations

from typing import Any

from onecommit.lifecycle import registry, training, triton
from onecommit.lifecycle.data import Split
from onecommit.lifecycle.spec import ModelSpec
from onecommit.secrets import local_store
from onecommit.settings import Settings


def register_version(settings: Settings, spec: ModelSpec, split: Split,
                     params: dict[str, Any], context: registry.RunContext) -> int:
    """Train the spec's trainer with `params` over its own, register the model (alias
    `challenger`) and load it in Triton beside what is served; returns the version."""
    assert spec.training is not None
    changed = spec.training.model_copy(update={"params": {**spec.training.params, **params}})
    trained = spec.model_copy(update={"training": changed})
    onnx_bytes = training.candidate(trained, split, None)
    client = registry.client(settings.url(settings.mlflow_port))
    artifact = registry.Artifact.trained(onnx_bytes, split.x_holdout, split.feature_names)
    candidate = registry.log_candidate(client, spec.model, artifact, changed.params,
                                       training.evaluate(onnx_bytes, split, spec.task), context)
    version, _ = registry.register(client, spec.model, candidate, context)
    triton.load_beside(f"{settings.host}:{settings.triton_grpc_port}",
                        settings.model_repository, spec.model, version, onnx_bytes,
                        local_store.triton_control_key(settings))
    return version
