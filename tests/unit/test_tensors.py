"""The v2 REST codec the gRPC and ONNX backends share: JSON and binary-tensor bodies."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import tritonclient.http as triton_http

from onecommit.gateway.tensors import (
    InvalidRequest,
    Tensor,
    encode_response,
    from_raw,
    header_length,
    input_mismatch,
    parse_request,
    to_raw,
)

ROWS = np.arange(6, dtype=np.float32).reshape(2, 3) / 7


def _json(**request: object) -> bytes:
    return orjson.dumps(request)


def test_json_request_decodes_to_the_declared_shape_and_type() -> None:
    body = _json(id="r1", inputs=[{"name": "X", "shape": [2, 3], "datatype": "FP32",
                                   "data": ROWS.ravel().tolist()}])
    request = parse_request(body, None)
    assert request.id == "r1"
    assert request.inputs[0].array.dtype == np.float32
    assert np.array_equal(request.inputs[0].array, ROWS)
    assert request.outputs is None
    assert not request.binary("anything")


def test_nested_json_data_is_accepted_like_flat() -> None:
    nested = parse_request(_json(inputs=[{"name": "X", "shape": [2, 3], "datatype": "FP32",
                                          "data": ROWS.tolist()}]), None)
    assert np.array_equal(nested.inputs[0].array, ROWS)


def test_binary_request_from_tritonclient_decodes_exactly() -> None:
    tensor = triton_http.InferInput("X", [2, 3], "FP32")
    tensor.set_data_from_numpy(ROWS, binary_data=True)
    words = triton_http.InferInput("W", [2], "BYTES")
    words.set_data_from_numpy(np.array([b"a", b"bc"], dtype=np.object_), binary_data=True)
    outputs = [triton_http.InferRequestedOutput("label", binary_data=False)]
    body, length = triton_http.InferenceServerClient.generate_request_body(
        [tensor, words], outputs=outputs)
    request = parse_request(body, length)
    assert np.array_equal(request.inputs[0].array, ROWS)
    assert list(request.inputs[1].array) == [b"a", b"bc"]
    assert request.outputs == {"label": False}


@pytest.mark.parametrize(("body", "length", "message"), [
    (b"{not json", None, "not valid JSON"),
    (b"[1, 2]", None, "JSON object"),
    (_json(inputs=[]), None, "non-empty list"),
    (_json(inputs=[{"name": "X", "shape": [1, 2], "datatype": "FP33", "data": [1, 2]}]), None,
     "unknown datatype"),
    (_json(inputs=[{"name": "X", "shape": [1, -2], "datatype": "FP32", "data": [1, 2]}]), None,
     "non-negative"),
    (_json(inputs=[{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}]), None,
     "has 2 elements"),
    (_json(inputs=[{"name": "X", "shape": [1, 2], "datatype": "FP32", "data": ["1", 2]}]), None,
     "not FP32"),
    (_json(inputs=[{"name": "X", "shape": [1, 2], "datatype": "INT64", "data": [1.5, 2]}]), None,
     "not INT64"),
    (_json(inputs=[{"name": "X", "shape": [2, 2], "datatype": "FP32", "data": [[1], [2, 3]]}]),
     None, "not FP32"),
    (_json(inputs=[{"name": "X", "shape": [1, 2], "datatype": "FP32"}]), None,
     "neither `data`"),
    (_json(inputs=[{"name": "X", "shape": [1], "datatype": "FP32",
                    "parameters": {"binary_data_size": 8}}]), None, "exceeds"),
    (_json(inputs=[{"name": "X", "shape": [1], "datatype": "FP32", "data": [1]}]) + b"xx", 5,
     "not valid JSON"),
    (_json(inputs=[{"name": "X", "shape": [1], "datatype": "FP32", "data": [1]}]), 10_000,
     "outside the body"),
    (_json(inputs=[{"name": "X", "shape": [1], "datatype": "FP32", "data": [1]}],
           outputs="label"), None, "`outputs`"),
])
def test_malformed_requests_are_refused_with_the_reason(body: bytes, length: int | None,
                                                        message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_request(body, length)


def test_trailing_binary_data_nobody_declared_is_refused() -> None:
    header = _json(inputs=[{"name": "X", "shape": [1], "datatype": "FP32", "data": [1]}])
    with pytest.raises(InvalidRequest, match="declare 0"):
        parse_request(header + b"\x00" * 4, len(header))


def test_header_length_must_be_an_integer() -> None:
    assert header_length({"inference-header-content-length": "12"}) == 12
    assert header_length({}) is None
    with pytest.raises(InvalidRequest, match="integer"):
        header_length({"inference-header-content-length": "twelve"})


def test_json_response_round_trips_through_tritonclient() -> None:
    request = parse_request(_json(id="7", inputs=[{"name": "X", "shape": [1], "datatype": "FP32",
                                                   "data": [0]}]), None)
    labels = Tensor("label", "INT64", np.array([1, 0], dtype=np.int64))
    body, headers = encode_response("m", "3", request, [labels, Tensor("p", "FP32", ROWS)])
    assert headers == {"content-type": "application/json"}
    decoded = orjson.loads(body)
    assert (decoded["model_name"], decoded["model_version"], decoded["id"]) == ("m", "3", "7")
    result = triton_http.InferenceServerClient.parse_response_body(body)
    assert np.array_equal(result.as_numpy("label"), labels.array)
    # JSON carries float32 values exactly: they read back as the same float32 numbers.
    assert np.array_equal(result.as_numpy("p").astype(np.float32), ROWS)


def test_binary_response_when_asked_round_trips_exactly() -> None:
    request = parse_request(_json(inputs=[{"name": "X", "shape": [1], "datatype": "FP32",
                                           "data": [0]}],
                                  parameters={"binary_data_output": True},
                                  outputs=[{"name": "label", "parameters": {"binary_data": False}},
                                           {"name": "p"}]), None)
    labels = Tensor("label", "INT64", np.array([1, 0], dtype=np.int64))
    body, headers = encode_response("m", "3", request, [labels, Tensor("p", "FP32", ROWS)])
    length = int(headers["inference-header-content-length"])
    header = orjson.loads(body[:length])
    assert header["outputs"][0]["data"] == [1, 0]
    assert header["outputs"][1]["parameters"] == {"binary_data_size": ROWS.nbytes}
    result = triton_http.InferenceServerClient.parse_response_body(body, header_length=length)
    assert np.array_equal(result.as_numpy("p"), ROWS)


def test_raw_layout_is_tritons_for_numbers_and_strings() -> None:
    words = Tensor("w", "BYTES", np.array([b"a", b"bc"], dtype=np.object_))
    assert to_raw(words) == b"\x01\x00\x00\x00a\x02\x00\x00\x00bc"
    assert list(from_raw("w", "BYTES", [2], to_raw(words)).array) == [b"a", b"bc"]
    numbers = Tensor("x", "FP32", ROWS)
    assert np.array_equal(from_raw("x", "FP32", [2, 3], to_raw(numbers)).array, ROWS)


def test_input_mismatch_names_what_differs() -> None:
    expected = [{"name": "X", "datatype": "FP32", "shape": [-1, 30]}]
    assert input_mismatch([{"name": "X", "datatype": "FP32", "shape": [4, 30]}], expected) is None
    assert "missing" in str(input_mismatch([{"name": "Y"}], expected))
    assert "datatype INT64" in str(input_mismatch(
        [{"name": "X", "datatype": "INT64", "shape": [1, 30]}], expected))
    assert "shape [1, 3]" in str(input_mismatch(
        [{"name": "X", "datatype": "FP32", "shape": [1, 3]}], expected))
    assert "list" in str(input_mismatch("X", expected))
    # A fuzzer's find: names that are not strings (a dict is not even hashable).
    for name in ({}, [], 3, None):
        assert "string `name`" in str(input_mismatch([{"name": name, "datatype": "FP32"}],
                                                     expected))
    assert "string `name`" in str(input_mismatch([7], expected))
