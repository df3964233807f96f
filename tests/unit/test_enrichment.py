"""Enrichment request parsing, feature-row checks and rewriting (no servers needed)."""

from __future__ import annotations

import asyncio
import json

import pytest

from onecommit.gateway.enrichment import (
    Enrichment,
    EnrichmentConfig,
    EnrichmentError,
    entity_ids,
    feature_rows,
    rewrite,
)

CONFIG = EnrichmentConfig(enabled=True, feature_server_url="http://127.0.0.1:9",
                          features=["view:a", "view:b"], timeout_s=0.5)


def _request(data: object, shape: object, datatype: str = "INT64") -> dict[str, object]:
    return {"inputs": [{"name": "patient_id", "datatype": datatype, "shape": shape,
                        "data": data}]}


def _answer(values: list[list[object]], statuses: list[list[str]]) -> dict[str, object]:
    return {"metadata": {"feature_names": ["patient_id", "a", "b"]},
            "results": [{"values": [0, 1], "statuses": ["PRESENT", "PRESENT"]},
                        *({"values": v, "statuses": s} for v, s in zip(values, statuses,
                                                                        strict=True))]}


def test_full_vector_request_is_not_an_entity_request() -> None:
    request = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
    assert entity_ids(request, CONFIG) is None


@pytest.mark.parametrize("shape", [[2], [2, 1]])
def test_entity_ids_in_flat_or_column_shape(shape: list[int]) -> None:
    assert entity_ids(_request([3, 4], shape), CONFIG) == [3, 4]


def test_nested_entity_data_is_flattened() -> None:
    assert entity_ids(_request([[3], [4]], [2, 1]), CONFIG) == [3, 4]


@pytest.mark.parametrize(("request_body", "problem"), [
    (_request([1.5], [1]), "integers"),
    (_request([1], [1], "FP32"), "datatype"),
    (_request([1, 2], [3]), "shape"),
    (_request([], [0]), "shape"),
    ({"inputs": [{"name": "patient_id", "datatype": "INT64", "shape": [1],
                  "parameters": {"binary_data_size": 8}}]}, "JSON `data`"),
    ({"inputs": [_request([1], [1])["inputs"][0],  # type: ignore[index]
                 {"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]},
     "not both"),
])
def test_bad_entity_requests_name_the_problem(request_body: dict[str, object],
                                              problem: str) -> None:
    with pytest.raises(EnrichmentError, match=problem) as caught:
        entity_ids(request_body, CONFIG)
    assert caught.value.status_code == 400


def test_feature_rows_follow_the_configured_order() -> None:
    # The server names columns; the rows follow the configuration's order, not the server's.
    answer = _answer([[1.0, 2.0], [10.0, 20.0]], [["PRESENT"] * 2] * 2)
    answer["metadata"]["feature_names"] = ["patient_id", "b", "a"]  # type: ignore[index]
    assert feature_rows(answer, CONFIG, [0, 1]) == [[10.0, 1.0], [20.0, 2.0]]


@pytest.mark.parametrize(("value", "status"), [(None, "NOT_FOUND"), (1.0, "NULL_VALUE"),
                                               ("NaN", "PRESENT")])
def test_a_missing_value_refuses_the_request_with_404(value: object, status: str) -> None:
    answer = _answer([[1.0, value], [1.0, 2.0]], [["PRESENT", status], ["PRESENT"] * 2])
    with pytest.raises(EnrichmentError, match="patient_id 1: unknown entity") as caught:
        feature_rows(answer, CONFIG, [0, 1])
    assert caught.value.status_code == 404


def test_an_answer_without_a_configured_feature_is_503() -> None:
    answer = _answer([[1.0]], [["PRESENT"]])
    answer["results"] = answer["results"][:2]  # type: ignore[index]
    answer["metadata"]["feature_names"] = ["patient_id", "a"]  # type: ignore[index]
    with pytest.raises(EnrichmentError) as caught:
        feature_rows(answer, CONFIG, [0])
    assert caught.value.status_code == 503


def test_rewrite_keeps_request_fields_and_sends_the_model_input() -> None:
    request = {"id": "r1", "outputs": [{"name": "label"}], **_request([0], [1])}
    body = json.loads(rewrite(request, CONFIG, [[1.0, 2.0]]))
    assert body == {"id": "r1", "outputs": [{"name": "label"}], "inputs": [
        {"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}]}


def test_disabled_enrichment_refuses_entity_requests_with_422() -> None:
    body = json.dumps(_request([0], [1])).encode()
    with pytest.raises(EnrichmentError, match="optional --on") as caught:
        asyncio.run(Enrichment().apply(body, {}))
    assert caught.value.status_code == 422


def test_full_vector_bodies_pass_through_untouched() -> None:
    body = b'{"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}'
    enrichment = Enrichment()
    asyncio.run(enrichment.configure(CONFIG))
    assert asyncio.run(enrichment.apply(body, {"content-length": "9"})) == (
        body, {"content-length": "9"})


def test_unreachable_feature_server_is_503() -> None:
    async def attempt() -> None:
        enrichment = Enrichment()
        # Port 9 (discard) on loopback: nothing listens there, the connection is refused.
        await enrichment.configure(CONFIG)
        try:
            await enrichment.apply(json.dumps(_request([0], [1])).encode(), {})
        finally:
            await enrichment.close()

    with pytest.raises(EnrichmentError, match="unreachable") as caught:
        asyncio.run(attempt())
    assert caught.value.status_code == 503
