"""Triton python-backend model that runs a version's `model.onnx` with ONNX Runtime.

Copied next to each version's ONNX file on the local CPU profile, where the Triton build in the
nvidia-pytriton wheel ships only the python backend. Clusters use Triton's onnxruntime backend.
"""

from __future__ import annotations

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

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            feed = {
                n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs
            }
            results = self.session.run(self.outputs, feed)
            tensors = [pb_utils.Tensor(n, r) for n, r in zip(self.outputs, results, strict=True)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
