"""Triton python-backend model that runs a version's `model.onnx` with ONNX Runtime.

Copied next to each version's ONNX file by `triton_repo.publish` (target python-onnxruntime, the
default: the Triton build in the nvidia-pytriton wheel, which the local profile and our Triton
image run, ships only the python backend); target onnxruntime is Triton's own backend instead.
Applies the model spec's serving `faults` (`faults.json` beside the version): errors for a share
of requests, or a wrong class.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime
import triton_python_backend_utils as pb_utils

# The serving convention's classifier outputs (`lifecycle/catalog.py`; this file runs inside
# Triton, without the onecommit package): `label` the class, an integer 0..k-1 (the data
# contract), and optionally `probabilities` [rows, k], column j the class j.
LABEL, PROBABILITIES = "label", "probabilities"


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
            if self._faulted("error_rate"):
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError("injected serving fault (model spec `faults`)")))
                continue
            feed = {
                n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs
            }
            results = dict(zip(self.outputs, self.session.run(self.outputs, feed), strict=True))
            if self._faulted("flip_rate"):
                results = flipped(results)
            tensors = [pb_utils.Tensor(n, results[n]) for n in self.outputs]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def _faulted(self, rate_key: str) -> bool:
        return due(self.served, float(self.faults.get(rate_key, 0.0)),
                   int(self.faults.get("after_requests", 0)))


def due(served: int, rate: float, after_requests: int) -> bool:
    """Whether the `served`-th request (counted from 1) gets a fault of this rate: none in the
    first `after_requests` (warm-up and smoke test), then deterministic spacing, the request
    faulted whenever the running share of faulted requests falls behind the rate."""
    if rate <= 0 or served <= after_requests:
        return False
    return int(served * rate) > int((served - 1) * rate)


def flipped(outputs: dict[str, Any]) -> dict[str, Any]:
    """A classifier's answer turned into a wrong class for every row, consistently: the label
    becomes the most probable other class, and that class's and the answered one's
    probabilities swap, so the answer looks like an honest (worse) model's. Without
    probabilities, class 0 becomes 1 and any other class the one below (a class 0..k-1, k >= 2).
    An answer without a `label` (a regressor's `prediction`) is returned as it is."""
    if LABEL not in outputs:
        return outputs
    labels = np.asarray(outputs[LABEL])
    answered = labels.reshape(-1).astype(np.int64)
    other = np.where(answered == 0, 1, answered - 1)
    result = dict(outputs)
    probabilities = outputs.get(PROBABILITIES)
    if probabilities is not None:
        scores = np.array(probabilities, copy=True)
        rows = np.arange(scores.shape[0])
        known = (answered >= 0) & (answered < scores.shape[1])
        masked = scores.astype(np.float64)
        masked[rows[known], answered[known]] = -np.inf
        other = np.where(known, masked.argmax(axis=1), other)
        swap = rows[known]
        first, second = answered[known], other[known]
        scores[swap, first], scores[swap, second] = scores[swap, second], scores[swap, first]
        result[PROBABILITIES] = scores
    result[LABEL] = other.astype(labels.dtype).reshape(labels.shape)
    return result


def _load_faults(version_dir: str) -> dict[str, Any]:
    path = os.path.join(version_dir, "faults.json")
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        faults: dict[str, Any] = json.load(handle)
    return faults
