"""ONNX export of a fitted scikit-learn pipeline, with plain tensor outputs for Triton."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from skl2onnx import to_onnx


def to_onnx_bytes(pipeline: Any, x_example: NDArray[Any]) -> bytes:
    """Outputs `label` (int64) and `probabilities` (float32 [n, classes]); zipmap off, since
    Triton cannot carry a sequence of maps."""
    final = pipeline.steps[-1][1]
    proto = to_onnx(pipeline, x_example[:1].astype(np.float32),
                    options={id(final): {"zipmap": False}}, target_opset=17)
    return bytes(proto.SerializeToString())
