"""Write model versions into a Triton model repository, atomically, with a generated config."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import onnx

from onecommit.files import write_file

Target = Literal["python-onnxruntime", "onnxruntime"]
_RUNTIME = Path(__file__).with_name("onnx_runtime_model.py")
# ONNX TensorProto element types → Triton config data types.
_TRITON_TYPES = {1: "TYPE_FP32", 6: "TYPE_INT32", 7: "TYPE_INT64", 11: "TYPE_FP64",
                 9: "TYPE_BOOL", 8: "TYPE_STRING"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str
    dims: list[int]


def _specs(values: list[onnx.ValueInfoProto]) -> list[TensorSpec]:
    specs = []
    for value in values:
        tensor = value.type.tensor_type
        if tensor.elem_type not in _TRITON_TYPES:
            raise ValueError(f"tensor {value.name!r} has ONNX type {tensor.elem_type}, "
                             "which the Triton config generator does not map")
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        specs.append(TensorSpec(value.name, _TRITON_TYPES[tensor.elem_type], dims))
    return specs


def _tensors(kind: str, specs: list[TensorSpec]) -> str:
    body = ",\n".join(
        f'  {{ name: "{s.name}" data_type: {s.data_type} dims: [ {", ".join(map(str, s.dims))} ] }}'
        for s in specs
    )
    return f"{kind} [\n{body}\n]\n"


def config_pbtxt(name: str, model: onnx.ModelProto, target: Target) -> str:
    """Triton model config; every version is served (`version_policy: all`) so a new version
    loads beside the one taking traffic."""
    backend = "python" if target == "python-onnxruntime" else "onnxruntime"
    return (
        f'name: "{name}"\nbackend: "{backend}"\nmax_batch_size: 0\n'
        + _tensors("input", _specs(list(model.graph.input)))
        + _tensors("output", _specs(list(model.graph.output)))
        + "instance_group [ { kind: KIND_CPU count: 1 } ]\n"
        + "version_policy: { all { } }\n"
    )


def publish(repository: Path, name: str, version: int, onnx_bytes: bytes,
            target: Target = "python-onnxruntime", faults: dict[str, float] | None = None) -> Path:
    """Write `<repository>/<name>/<version>/` atomically and (re)write the model config.
    `faults` (the model spec's, applied by the python-onnxruntime target's model only) makes
    the served version fail, or answer a wrong class for, a share of requests."""
    model = onnx.load_from_string(onnx_bytes)
    model_dir = repository / name
    model_dir.mkdir(parents=True, exist_ok=True)
    final = model_dir / str(version)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=model_dir))
    (staging / "model.onnx").write_bytes(onnx_bytes)
    if target == "python-onnxruntime":
        shutil.copy2(_RUNTIME, staging / "model.py")
        if faults:
            (staging / "faults.json").write_text(json.dumps(faults))
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    write_file(model_dir / "config.pbtxt", config_pbtxt(name, model, target))
    return final


def published_versions(repository: Path, name: str) -> set[int]:
    model_dir = repository / name
    if not model_dir.is_dir():
        return set()
    return {int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()}


def withdraw(repository: Path, name: str, version: int) -> None:
    """Take a version out of the served repository (Triton unloads it on the next load call).
    It moves beside the repository, to `withdrawn/`, rather than being deleted: the registry
    keeps the model, this keeps what was actually served, for inspection."""
    source = repository / name / str(version)
    if not source.is_dir():
        return
    target = repository.parent / "withdrawn" / name / str(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    source.rename(target)

