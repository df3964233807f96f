"""Which answer the prediction log judges against feedback: the first element of `label`
(classification), else of `prediction` (regression), JSON or binary-tensor encoded; and the
confidence it logs beside it: the probability of the class a classifier answered."""

from __future__ import annotations

import math
import struct
from typing import Any

import orjson
import pytest

from onecommit.gateway.predictions import answer, prediction


def _json(*outputs: tuple[str, str, list[float]]) -> bytes:
    return orjson.dumps({"outputs": [{"name": n, "datatype": t, "shape": [len(d)], "data": d}
                                     for n, t, d in outputs]})


def _binary(*outputs: tuple[str, str, str, list[float]]) -> tuple[bytes, int]:
    """Every output in binary, in order: the header, then their bytes one after another."""
    blobs = [struct.pack(f"<{len(d)}{fmt}", *d) for _, _, fmt, d in outputs]
    header = orjson.dumps({"outputs": [
        {"name": n, "datatype": t, "shape": [len(d)],
         "parameters": {"binary_data_size": len(blob)}}
        for (n, t, _, d), blob in zip(outputs, blobs, strict=True)]})
    return header + b"".join(blobs), len(header)


@pytest.mark.parametrize(("body", "expected"), [
    (_json(("probabilities", "FP32", [0.2, 0.8]), ("label", "INT64", [1])), 1.0),
    (_json(("prediction", "FP32", [151.5])), 151.5),
    # A model answering both is a classifier: its label is what feedback judges.
    (_json(("prediction", "FP32", [0.5]), ("label", "INT64", [0])), 0.0),
    (_json(("probabilities", "FP32", [0.2, 0.8])), None),
    (b"not json", None),
])
def test_the_label_else_the_prediction_is_taken_from_a_json_answer(
        body: bytes, expected: float | None) -> None:
    assert prediction(body, None) == expected


def test_a_binary_answer_is_read_at_its_output_offset() -> None:
    body, length = _binary(("probabilities", "FP32", "f", [0.25, 0.75]),
                           ("prediction", "FP64", "d", [42.5]))
    assert prediction(body, length) == 42.5
    body, length = _binary(("prediction", "FP32", "f", [3.0]), ("label", "INT64", "q", [7]))
    assert prediction(body, length) == 7.0


def _classified(probabilities: Any, label: Any = 1, shape: Any = None,
                datatype: str = "FP32") -> bytes:
    outputs = [{"name": "label", "datatype": "INT64", "shape": [1], "data": [label]},
               {"name": "probabilities", "datatype": datatype,
                "shape": [1, len(probabilities)] if shape is None else shape,
                "data": probabilities}]
    return orjson.dumps({"outputs": outputs})


def test_the_confidence_is_the_answered_class_probability() -> None:
    assert answer(_classified([0.2, 0.8]), None) == (1.0, 0.8)
    # The answered class's column, even when it is not the most probable (a tuned threshold).
    assert answer(_classified([0.7, 0.3]), None) == (1.0, 0.3)
    assert answer(_classified([0.1, 0.2, 0.7], label=2), None) == (2.0, 0.7)
    # Several rows: the first, as the label; nested JSON rows too.
    assert answer(_classified([0.4, 0.6, 0.9, 0.1], shape=[2, 2]), None) == (1.0, 0.6)
    assert answer(_classified([[0.4, 0.6], [0.9, 0.1]], shape=[2, 2]), None) == (1.0, 0.6)
    body, length = _binary_classified(0, "FP64", "d", [0.75, 0.25])
    assert answer(body, length) == (0.0, 0.75)


def _binary_classified(label: int, datatype: str, code: str, row: list[float],
                       size: int | None = None, classes: int | None = None
                       ) -> tuple[bytes, int]:
    """A one-row binary-tensor answer: its label, then its probabilities ([1, classes])."""
    blob = struct.pack(f"<{len(row)}{code}", *row)
    header = orjson.dumps({"outputs": [
        {"name": "label", "datatype": "INT64", "shape": [1],
         "parameters": {"binary_data_size": 8}},
        {"name": "probabilities", "datatype": datatype, "shape": [1, classes or len(row)],
         "parameters": {"binary_data_size": len(blob) if size is None else size}}]})
    return header + struct.pack("<q", label) + blob, len(header)


@pytest.mark.parametrize("body", [
    _json(("prediction", "FP32", [151.5])),  # a regressor
    _json(("label", "INT64", [1])),  # no probabilities
    _classified([0.2, 0.8], shape=[2]),  # not [rows, classes]
    _classified([0.2, 0.8], shape=[1, 3]),  # fewer values than the shape says
    _classified([0.2, 0.8], shape=[0, 2]),
    _classified([0.2, 0.8], shape="2"),
    _classified([1.0], shape=[1, 1]),  # one class
    _classified([0.2, 0.8], label=2),  # not one of the classes
    _classified([0.2, 0.8], label=-1),
    _classified([0.2, 0.8], label=0.5),
    _classified([math.nan, 0.8]),  # not finite (orjson writes null)
    _classified(["nan", "0.8"]),
    _classified([-0.5, 1.5]),  # not probabilities
    _classified([0.2, 1.2]),
    _classified([0.5, 0.8]),  # a row not summing to 1
    _classified([0.2, 0.8], datatype="INT64"),
    _classified([0.2, 0.8], datatype="BYTES"),
    _classified("0.8"),
    orjson.dumps({"outputs": [{"name": "label", "datatype": "INT64", "shape": [1],
                               "data": [1]}, {"name": "probabilities"}]}),
])
def test_a_missing_or_malformed_probability_logs_no_confidence(body: bytes) -> None:
    assert answer(body, None)[1] is None
    # The label is judged all the same.
    assert answer(body, None)[0] == prediction(body, None)


def test_a_binary_probability_beyond_its_bytes_or_not_a_float_logs_no_confidence() -> None:
    assert answer(*_binary_classified(1, "FP32", "f", [0.2, 0.8])) == (1.0, 0.800000011920929)
    # The header says 3 classes, the bytes hold 2; then 2 classes in a size of one.
    assert answer(*_binary_classified(1, "FP32", "f", [0.2, 0.8], classes=3)) == (1.0, None)
    assert answer(*_binary_classified(1, "FP32", "f", [0.2, 0.8], size=4)) == (1.0, None)
    assert answer(*_binary_classified(1, "INT32", "i", [0, 1])) == (1.0, None)
    assert answer(*_binary_classified(1, "FP16", "e", [0.25, 0.75])) == (1.0, 0.75)
    assert answer(b"not json", None) == (None, None)
    assert answer(orjson.dumps([1, 2]), None) == (None, None)
