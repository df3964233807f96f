from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from onecommit.serving.triton_repo import config_pbtxt, publish


def small_model() -> tuple[Pipeline, bytes, np.ndarray]:
    features, labels = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(features, labels)
    proto = to_onnx(model, features[:1].astype(np.float32),
                    options={id(model.steps[-1][1]): {"zipmap": False}})
    return model, proto.SerializeToString(), features.astype(np.float32)


def test_config_names_tensors_types_and_backend() -> None:
    _, onnx_bytes, _ = small_model()
    text = config_pbtxt("cancer", onnx.load_from_string(onnx_bytes), "python-onnxruntime")
    assert 'backend: "python"' in text
    assert '{ name: "X" data_type: TYPE_FP32 dims: [ -1, 30 ] }' in text
    assert '{ name: "label" data_type: TYPE_INT64 dims: [ -1 ] }' in text
    assert '{ name: "probabilities" data_type: TYPE_FP32 dims: [ -1, 2 ] }' in text
    assert "version_policy: { all { } }" in text
    cluster = config_pbtxt("cancer", onnx.load_from_string(onnx_bytes), "onnxruntime")
    assert 'backend: "onnxruntime"' in cluster


def test_publish_writes_versions_side_by_side(tmp_path: Path) -> None:
    _, onnx_bytes, _ = small_model()
    publish(tmp_path, "cancer", 1, onnx_bytes)
    publish(tmp_path, "cancer", 2, onnx_bytes)
    model_dir = tmp_path / "cancer"
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "2", "config.pbtxt"]
    assert (model_dir / "2" / "model.onnx").read_bytes() == onnx_bytes
    assert (model_dir / "2" / "model.py").exists()
