"""Triton python-backend model that runs a version's `model.onnx` with ONNX Runtime.

Copied next to each version's ONNX file on the local CPU profile, where the Triton build in the
nvidia-pytriton wheel ships only the python backend. Clusters use Triton's onnxruntime backend.
"""

from __future__ import annotations

import json
import os
from typing import Any

import onnxruntime
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = onnxruntime.SessionOptions()
        # One thread per instance: Triton scales by instances, and the host has few cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            path, options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.faults = _load_faults(os.path.join(args["model_repository"], args["model_version"]))
        self.served = 0

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            self.served += 1
            if self._inject_fault():
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError("injected serving fault (model spec `faults`)")))
                continue
            feed = {
                n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs
            }
            results = self.session.run(self.outputs, feed)
            tensors = [pb_utils.Tensor(n, r) for n, r in zip(self.outputs, results, strict=True)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def _inject_fault(self) -> bool:
        rate = float(self.faults.get("error_rate", 0.0))
        if rate <= 0 or self.served <= int(self.faults.get("after_requests", 0)):
            return False
        # Deterministic spacing: the n-th request fails when the running share falls behind.
        return int(self.served * rate) > int((self.served - 1) * rate)


def _load_faults(version_dir: str) -> dict[str, Any]:
    path = os.path.join(version_dir, "faults.json")
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        faults: dict[str, Any] = json.load(handle)
    return faults
