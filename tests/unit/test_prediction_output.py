"""Which answer the prediction log judges against feedback: the first element of `label`
(classification), else of `prediction` (regression), JSON or binary-tensor encoded."""

from __future__ import annotations

import struct

import orjson
import pytest

from onecommit.gateway.predictions import prediction


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
