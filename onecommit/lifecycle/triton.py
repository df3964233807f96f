"""Publish a version to Triton, load it beside the served one over gRPC, and smoke-test it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as triton_grpc
from numpy.typing import NDArray
from tritonclient.utils import triton_to_np_dtype

from onecommit.serving.triton_repo import Target, publish, published_versions, withdraw
from onecommit.vocabulary import TRITON_CONTROL_METADATA


def _control(grpc_url: str, model_name: str, control_key: str, load: bool = True) -> None:
    """Load (or unload) a model. Triton's model control answers only the holder of its key
    (`triton_control_key`)."""
    client = triton_grpc.InferenceServerClient(grpc_url)
    headers = {TRITON_CONTROL_METADATA: control_key}
    try:
        if load:
            client.load_model(model_name, headers=headers)
        else:
            client.unload_model(model_name, headers=headers)
    finally:
        client.close()


def load_beside(grpc_url: str, repository: Path, model_name: str, version: int,
                onnx_bytes: bytes, control_key: str, target: Target = "python-onnxruntime",
                faults: dict[str, float] | None = None) -> None:
    """Write the version atomically, then ask Triton to (re)load the model: versions already
    served stay up while the new one loads (never unload-then-load)."""
    publish(repository, model_name, version, onnx_bytes, target, faults)
    _control(grpc_url, model_name, control_key)


def retain(grpc_url: str, repository: Path, model_name: str, keep: set[int],
           control_key: str) -> list[int]:
    """Unload every version of the model except `keep`; call only once traffic has left them.
    Returns the versions unloaded. The kept versions keep serving through the reload; keeping
    none (a retired model) unloads the model itself."""
    dropped = sorted(published_versions(repository, model_name) - keep)
    if not dropped:
        return []
    for version in dropped:
        withdraw(repository, model_name, version)
    # Triton refuses to load a model left with no version: a retired model is unloaded.
    _control(grpc_url, model_name, control_key, load=bool(keep))
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
            rows: NDArray[Any]) -> dict[str, NDArray[Any]]:
    """Every output of the version for the rows, sent as the input its signature names."""
    client = triton_grpc.InferenceServerClient(grpc_url)
    try:
        metadata = client.get_model_metadata(model_name, str(version), as_json=True)
        declared = metadata["inputs"][0]
        tensor = triton_grpc.InferInput(declared["name"], list(rows.shape),
                                        declared["datatype"])
        tensor.set_data_from_numpy(rows.astype(triton_to_np_dtype(declared["datatype"])))
        result = client.infer(model_name, [tensor], model_version=str(version))
        return {output["name"]: result.as_numpy(output["name"])
                for output in metadata["outputs"]}
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


def smoke(grpc_url: str, model_name: str, version: int, reference: dict[str, NDArray[Any]],
          golden: NDArray[Any], tolerance: float = 1e-4) -> Comparison:
    """Triton's answers on the golden rows against the registry model's (`reference`), output
    by output: integer outputs (the classes) must be equal, real ones within `tolerance`."""
    served = predict(grpc_url, model_name, version, golden)
    mismatched, difference = 0, 0.0
    for name, expected in reference.items():
        answered = served.get(name)
        if answered is None or answered.shape != expected.shape:
            mismatched = len(golden)  # a missing or reshaped output differs on every row
            continue
        if np.issubdtype(expected.dtype, np.integer):
            mismatched += int(np.sum(answered != expected))
        else:
            difference = max(difference, float(np.max(np.abs(answered - expected))))
    return Comparison(rows=len(golden), mismatched_labels=mismatched,
                      max_difference=difference, tolerance=tolerance)
