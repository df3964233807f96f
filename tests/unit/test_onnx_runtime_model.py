"""The Triton python-backend model's serving faults (`serving/onnx_runtime_model.py`): when a
request is faulted, and a flip answering another class in every output. The module imports
`triton_python_backend_utils`, which only Triton provides: a stand-in records what it is given."""

from __future__ import annotations

import importlib
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from onecommit.lifecycle.catalog import LABEL, PROBABILITIES
from onecommit.serving.triton_repo import publish
from tests.unit.test_triton_repo import small_model


def _stand_in() -> ModuleType:
    utils = ModuleType("triton_python_backend_utils")
    stand_ins = {
        "Tensor": lambda name, array: SimpleNamespace(name=name, array=array),
        "InferenceResponse": lambda output_tensors=None, error=None: SimpleNamespace(
            tensors=output_tensors, error=error),
        "TritonError": lambda message: message,
        "get_input_tensor_by_name": lambda request, name: SimpleNamespace(
            as_numpy=lambda: request[name]),
    }
    for name, stand_in in stand_ins.items():
        setattr(utils, name, stand_in)
    return utils


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _stand_in())
    monkeypatch.delitem(sys.modules, "onecommit.serving.onnx_runtime_model", raising=False)
    yield importlib.import_module("onecommit.serving.onnx_runtime_model")
    sys.modules.pop("onecommit.serving.onnx_runtime_model", None)


def test_outputs_are_the_serving_conventions(runtime: Any) -> None:
    assert (runtime.LABEL, runtime.PROBABILITIES) == (LABEL, PROBABILITIES)


def test_faults_begin_after_the_warm_up_and_are_evenly_spaced(runtime: Any) -> None:
    faulted = [n for n in range(1, 1011) if runtime.due(n, 0.1, 10)]
    assert faulted[0] > 10
    assert len(faulted) == 100
    assert {b - a for a, b in itertools.pairwise(faulted)} == {10}
    assert [n for n in range(1, 9) if runtime.due(n, 0.5, 2)] == [4, 6, 8]
    assert not any(runtime.due(n, 0.0, 0) for n in range(1, 100))
    assert all(runtime.due(n, 1.0, 0) for n in range(1, 100))


def test_a_flip_answers_the_most_probable_other_class_consistently(runtime: Any) -> None:
    labels = np.array([0, 1, 2], dtype=np.int64)
    probabilities = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]],
                             dtype=np.float32)
    out = runtime.flipped({LABEL: labels, PROBABILITIES: probabilities})
    assert out[LABEL].tolist() == [1, 2, 1]
    assert out[LABEL].dtype == np.int64
    assert out[PROBABILITIES].dtype == np.float32
    # The answered class's and the new class's probabilities swap: the label is again the
    # most probable class, and each row is a permutation of the original one.
    assert out[PROBABILITIES].argmax(axis=1).tolist() == out[LABEL].tolist()
    assert np.allclose(np.sort(out[PROBABILITIES], axis=1), np.sort(probabilities, axis=1))
    assert out[PROBABILITIES].tolist()[0] == pytest.approx([0.3, 0.6, 0.1])
    assert labels.tolist() == [0, 1, 2]  # the session's arrays are not changed in place
    assert probabilities[0].tolist() == pytest.approx([0.6, 0.3, 0.1])


def test_a_flip_without_probabilities_still_answers_another_class(runtime: Any) -> None:
    out = runtime.flipped({LABEL: np.array([0, 1, 2, 5], dtype=np.int64)})
    assert out[LABEL].tolist() == [1, 0, 1, 4]


def test_a_regressors_prediction_is_never_flipped(runtime: Any) -> None:
    prediction = np.array([[12.5], [3.0]], dtype=np.float32)
    assert runtime.flipped({"prediction": prediction})["prediction"] is prediction


def _serve(runtime: Any, version_dir: Path, rows: np.ndarray) -> list[Any]:
    model = runtime.TritonPythonModel()
    model.initialize({"model_repository": str(version_dir.parent),
                      "model_version": version_dir.name})
    return [model.execute([{"X": rows[i:i + 1]}])[0] for i in range(len(rows))]


def _outputs(response: Any) -> dict[str, np.ndarray]:
    return {tensor.name: tensor.array for tensor in response.tensors}


def test_the_served_model_flips_its_share_after_the_warm_up(runtime: Any, tmp_path: Path) -> None:
    _, onnx_bytes, features = small_model()
    honest = _serve(runtime, publish(tmp_path / "a", "cancer", 1, onnx_bytes), features[:8])
    faults = {"error_rate": 0.0, "flip_rate": 0.5, "after_requests": 2}
    version = publish(tmp_path / "b", "cancer", 1, onnx_bytes, faults=faults)
    assert json.loads((version / "faults.json").read_text()) == faults
    served = _serve(runtime, version, features[:8])
    assert all(response.error is None for response in served)
    changed = [n for n, (a, b) in enumerate(zip(honest, served, strict=True), start=1)
               if _outputs(a)[LABEL].tolist() != _outputs(b)[LABEL].tolist()]
    assert changed == [4, 6, 8]
    for n in changed:
        before, after = _outputs(honest[n - 1]), _outputs(served[n - 1])
        assert after[LABEL].tolist() == (1 - before[LABEL]).tolist()
        assert after[PROBABILITIES].tolist() == before[PROBABILITIES][:, ::-1].tolist()


def test_the_served_model_fails_its_error_share(runtime: Any, tmp_path: Path) -> None:
    _, onnx_bytes, features = small_model()
    version = publish(tmp_path, "cancer", 1, onnx_bytes,
                      faults={"error_rate": 0.5, "flip_rate": 0.0, "after_requests": 2})
    served = _serve(runtime, version, features[:6])
    assert [n for n, r in enumerate(served, start=1) if r.error is not None] == [4, 6]


def test_a_multiclass_served_model_flips_label_and_probabilities_together(
        runtime: Any, tmp_path: Path) -> None:
    features, labels = load_wine(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(features, labels)
    proto = to_onnx(model, features[:1].astype(np.float32),
                    options={id(model.steps[-1][1]): {"zipmap": False}})
    version = publish(tmp_path, "wine", 1, proto.SerializeToString(),
                      faults={"flip_rate": 1.0, "after_requests": 0})
    rows = features[::20].astype(np.float32)
    for row, response in zip(rows, _serve(runtime, version, rows), strict=True):
        out = _outputs(response)
        honest = int(model.predict(row[None, :])[0])
        assert out[LABEL].tolist() != [honest]
        assert out[PROBABILITIES].argmax(axis=1).tolist() == out[LABEL].tolist()
