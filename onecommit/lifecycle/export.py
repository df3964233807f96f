"""A trained model as ONNX, the one artifact that is registered, served and promoted, with the
serving convention's outputs (`catalog.py`): scikit-learn through skl2onnx, XGBoost and LightGBM
through onnxmltools, or the user's own ONNX model as it is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import onnx

from onecommit.errors import OnecommitError
from onecommit.lifecycle.catalog import LABEL, PREDICTION, PROBABILITIES, Task, prediction_output

INPUT = "X"
# The newest opset every converter supports (onnxmltools: 15).
_OPSET = 15
CONTRACT = ("a fitted scikit-learn estimator or pipeline, an XGBoost or LightGBM model "
            "(their scikit-learn classes), or an onnx.ModelProto")
# ONNX element types → the Open Inference Protocol's datatypes.
DATATYPES = {1: "FP32", 2: "UINT8", 3: "INT8", 5: "INT16", 6: "INT32", 7: "INT64", 9: "BOOL",
             10: "FP16", 11: "FP64", 12: "UINT32", 13: "UINT64"}


class ExportError(OnecommitError):
    """The model cannot be served; the message says what it is and what the contract is."""


def _converted(model: Any, features: int) -> onnx.ModelProto:
    module = type(model).__module__.split(".")[0]
    if module in ("xgboost", "lightgbm"):
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        initial = [(INPUT, FloatTensorType([None, features]))]
        converted: onnx.ModelProto = (
            onnxmltools.convert_xgboost(model, initial_types=initial, target_opset=_OPSET)
            if module == "xgboost" else
            onnxmltools.convert_lightgbm(model, initial_types=initial, zipmap=False,
                                         target_opset=_OPSET))
        return converted
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType as SklFloat
    from sklearn.base import BaseEstimator, is_classifier

    if not isinstance(model, BaseEstimator):
        raise ExportError(f"the model is a {type(model).__module__}.{type(model).__name__}; "
                          f"expected {CONTRACT}")
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    options = {id(final): {"zipmap": False}} if is_classifier(final) else None
    try:
        proto: onnx.ModelProto = convert_sklearn(
            model, initial_types=[(INPUT, SklFloat([None, features]))], options=options,
            target_opset=_OPSET)
        return proto
    except (RuntimeError, NameError, TypeError, ValueError) as error:
        raise ExportError(f"skl2onnx cannot convert {type(model).__name__}: {error}") from None


def to_onnx(model: Any, features: int, task: Task) -> onnx.ModelProto:
    """The model as ONNX, its outputs named by the serving convention and its batch dimension
    free; ExportError when it is not a model the contract allows."""
    if isinstance(model, onnx.ModelProto):
        proto = model
    else:
        try:
            proto = _converted(model, features)
        except ExportError:
            raise
        except Exception as error:  # a converter's own failure: say which and why
            raise ExportError(f"cannot export {type(model).__name__} to ONNX: {error}") from None
    return _conventional(proto, task)


def _rename_output(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
    for output in graph.output:
        if output.name == old:
            output.name = new


def _conventional(proto: onnx.ModelProto, task: Task) -> onnx.ModelProto:
    graph = proto.graph
    names = [output.name for output in graph.output]
    expected = prediction_output(task)
    if task == "regression" and expected not in names and len(names) == 1:
        _rename_output(graph, names[0], PREDICTION)  # the converters call it `variable`
    names = [output.name for output in graph.output]
    if expected not in names:
        raise ExportError(f"the ONNX model's outputs are {names}; a {task} model must answer "
                          f"{expected!r}" + (f" (and may answer {PROBABILITIES!r})"
                                             if expected == LABEL else ""))
    if task == "binary" and PROBABILITIES not in names:
        raise ExportError(f"a binary classifier must answer {PROBABILITIES!r} too (roc_auc "
                          f"needs scores); its outputs are {names}")
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:  # any batch size: some converters fix it to 1
            dims[0].Clear()
            dims[0].dim_param = "batch"
    onnx.checker.check_model(proto)
    return proto


def signature(onnx_bytes: bytes) -> dict[str, list[dict[str, Any]]]:
    """Input and output names, datatypes and shapes (-1: any), as the registry records them and
    a challenger's are compared with its champion's."""
    proto = onnx.load_from_string(onnx_bytes)

    def tensors(values: Any) -> list[dict[str, Any]]:
        return [{"name": v.name,
                 "datatype": DATATYPES.get(v.type.tensor_type.elem_type, "BYTES"),
                 "shape": [d.dim_value if d.HasField("dim_value") else -1
                           for d in v.type.tensor_type.shape.dim]} for v in values]
    return {"inputs": tensors(proto.graph.input), "outputs": tensors(proto.graph.output)}


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor the graph holds: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            subgraphs = [attribute.g] if attribute.HasField("g") else []
            for subgraph in [*subgraphs, *attribute.graphs]:
                yield from _tensors(subgraph)


def checked(onnx_bytes: bytes, task: Task) -> bytes:
    """ONNX bytes from an untrusted process (the training sandbox), checked as a served model
    is: parsed, no tensor kept in a file outside the model (ONNX Runtime would read any file it
    names), outputs by the serving convention."""
    try:
        proto = onnx.load_from_string(onnx_bytes)
    except Exception:  # protobuf's DecodeError, or whatever else the bytes provoke
        raise ExportError("the training's answer is not an ONNX model") from None
    if any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in _tensors(proto.graph)):
        raise ExportError("the ONNX model keeps tensors in external files: export it with "
                          "every tensor inside the model")
    return bytes(_conventional(proto, task).SerializeToString())
