"""Model versions to serve: trained, registered in MLflow and loaded in Triton by the lifecycle
library, so a benchmark or a test has a champion and a challenger without running the DAG."""

from __future__ import annotations

from typing import Any

from onecommit.lifecycle import registry, serving, training
from onecommit.lifecycle.export import to_onnx_bytes
from onecommit.lifecycle.spec import ModelSpec
from onecommit.settings import Settings


def register_version(settings: Settings, spec: ModelSpec, split: training.Split,
                     params: dict[str, Any], context: registry.RunContext) -> int:
    """Train the spec's algorithm with `params` over its own, register the model (alias
    `challenger`) and load it in Triton beside what is served; returns the version."""
    algorithm = spec.algorithm.model_copy(update={"params": {**spec.algorithm.params, **params}})
    pipeline = training.train(algorithm, split, spec.dataset.seed)
    client = registry.client(settings.url(settings.mlflow_port))
    candidate = registry.log_candidate(client, spec.model, pipeline, split.x_holdout,
                                       algorithm.params, training.evaluate(pipeline, split),
                                       context)
    version, _ = registry.register(client, spec.model, candidate, context)
    serving.load_beside(f"{settings.host}:{settings.triton_grpc_port}",
                        settings.model_repository, spec.model, version,
                        to_onnx_bytes(pipeline, split.x_holdout))
    return version
