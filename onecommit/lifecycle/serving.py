"""Publish a version to Triton, load it beside the served one over gRPC, and smoke-test it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as triton_grpc
from numpy.typing import NDArray

from onecommit.serving.triton_repo import Target, publish, published_versions, withdraw


def load_beside(grpc_url: str, repository: Path, model_name: str, version: int,
                onnx_bytes: bytes, target: Target = "python-onnxruntime",
                faults: dict[str, float] | None = None) -> None:
    """Write the version atomically, then ask Triton to (re)load the model: versions already
    served stay up while the new one loads (never unload-then-load)."""
    publish(repository, model_name, version, onnx_bytes, target, faults)
    client = triton_grpc.InferenceServerClient(grpc_url)
    try:
        client.load_model(model_name)
    finally:
        client.close()


def retain(grpc_url: str, repository: Path, model_name: str, keep: set[int]) -> list[int]:
    """Unload every version of the model except `keep`; call only once traffic has left them.
    Returns the versions unloaded. The kept versions keep serving through the reload."""
    dropped = sorted(published_versions(repository, model_name) - keep)
    if not dropped:
        return []
    for version in dropped:
        withdraw(repository, model_name, version)
    client = triton_grpc.InferenceServerClient(grpc_url)
    try:
        client.load_model(model_name)
    finally:
        client.close()
    return dropped


def version_ready(grpc_url: str, model_name: str, version: int) -> bool:
    client = triton_grpc.InferenceServerClient(grpc_url)
    try:
        return bool(client.is_model_ready(model_name, str(version)))
    except Exception:
        return False
    finally:
        client.close()


def predict(grpc_url: str, model_name: str, version: int,
            rows: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
    client = triton_grpc.InferenceServerClient(grpc_url)
    try:
        tensor = triton_grpc.InferInput("X", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows.astype(np.float32))
        result = client.infer(model_name, [tensor], model_version=str(version))
        return result.as_numpy("label"), result.as_numpy("probabilities")
    finally:
        client.close()


@dataclass(frozen=True)
class Comparison:
    """Triton against the registry model on golden rows."""

    rows: int
    mismatched_labels: int
    max_difference: float
    tolerance: float

    @property
    def problems(self) -> list[str]:
        """What differs; empty means Triton serves what the registry holds."""
        problems = []
        if self.mismatched_labels:
            problems.append(f"{self.mismatched_labels} of {self.rows} labels differ")
        if self.max_difference > self.tolerance:
            problems.append(f"probabilities differ by up to {self.max_difference:.2e} "
                            f"(tolerance {self.tolerance:.0e})")
        return problems

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def smoke(grpc_url: str, model_name: str, version: int, reference: Any, golden: NDArray[Any],
          tolerance: float = 1e-4) -> Comparison:
    labels, probabilities = predict(grpc_url, model_name, version, golden)
    return Comparison(
        rows=len(golden), mismatched_labels=int(np.sum(labels != reference.predict(golden))),
        max_difference=float(np.max(np.abs(probabilities - reference.predict_proba(golden)))),
        tolerance=tolerance)
