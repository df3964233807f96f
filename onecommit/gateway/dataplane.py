"""Shared request logic between the HTTP routes and the backends: routing by desired state,
shadowing, telling infrastructure faults from the model's, and accounting to the prediction
log."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

import orjson

from onecommit.gateway.backends import Backend, BackendResponse, error_response
from onecommit.gateway.enrichment import Enrichment
from onecommit.gateway.errors import BackendUnavailable, BadRequest, BodyTooLarge
from onecommit.gateway.metrics import GatewayMetrics, Series
from onecommit.gateway.predictions import PredictionLog, Served, prediction
from onecommit.gateway.router import route
from onecommit.gateway.tensors import input_mismatch
from onecommit.gateway.variants import ServingState
from onecommit.serving.state import DesiredState
from onecommit.vocabulary import CHALLENGER, CHAMPION, ROLES


def is_decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit also accepts "²", which int() refuses."""
    return text.isascii() and text.isdigit()


def check_length(length: str | None, limit: int) -> None:
    """The request body limit on the declared length, before any byte is read: a 400 for a
    length that is not a number, a 413 beyond the limit. The app and the inference fast path
    both check with this."""
    if length is None:
        return
    if not is_decimal(length):
        raise BadRequest(f"content-length {length!r} is not a number")
    if int(length) > limit:
        raise BodyTooLarge(f"request body of {length} bytes exceeds the limit of {limit}")


@dataclass(frozen=True)
class Answer:
    response: BackendResponse
    request_id: str
    variant: str
    version: int | None


class DataPlane:
    def __init__(self, backend: Backend, serving: ServingState, predictions: PredictionLog,
                 metrics: GatewayMetrics) -> None:
        self._backend = backend
        self.serving = serving
        self.predictions = predictions
        self._metrics = metrics
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        # Metric children per label set, looked up once: `labels()` costs more than `inc()`.
        self._series: dict[tuple[str, str, int | None, int], Series] = {}
        self.enrichment = Enrichment()

    async def close(self) -> None:
        """Write what the prediction log holds and release the backend."""
        await self.predictions.flush()
        await self._backend.close()

    async def model_info(self, path: str) -> BackendResponse:
        """`GET /v2/models/<path>`: model or version metadata, or readiness, from any backend."""
        match path.split("/"):
            case [model]:
                return await self._metadata(model, None)
            case [model, "ready"]:
                return await self._readiness(model, None)
            case [model, "versions", version] if is_decimal(version):
                return await self._metadata(model, int(version))
            case [model, "versions", version, "ready"] if is_decimal(version):
                return await self._readiness(model, int(version))
        return error_response(404, f"no such endpoint: /v2/models/{path}")

    async def _metadata(self, model: str, version: int | None) -> BackendResponse:
        metadata = await self._backend.metadata(model, version)
        if metadata is None:
            return error_response(404, f"unknown model {model!r}" + (f" version {version}"
                                                           if version else ""))
        return BackendResponse(200, orjson.dumps(metadata), {"content-type": "application/json"})

    async def _readiness(self, model: str, version: int | None) -> BackendResponse:
        # Triton's REST convention: 200 when ready, 400 when not.
        ready = await self._backend.version_ready(model, version)
        body = {"name": model, "ready": ready}
        if version is not None:
            body["version"] = str(version)
        return BackendResponse(200 if ready else 400, orjson.dumps(body),
                               {"content-type": "application/json"})

    async def infer(self, model: str, body: bytes, headers: dict[str, str],
                    version: int | None = None) -> Answer:
        """Pinned when `version` is given; else routed by the model's desired state."""
        body, headers = await self.enrichment.apply(body, headers)
        request_id = headers.get("x-request-id") or uuid.uuid4().hex
        state = self.serving.get(model)
        # Only traffic the policy routed is mirrored: a request pinning a version asked for it.
        routed = version is None
        variant, version = _choose(state, headers, request_id, version)
        started = time.perf_counter()
        try:
            response = await self._backend.infer(model, version, body, headers)
        except BackendUnavailable:
            self._account(model, request_id, variant, version, 503, True, started,
                          b"", {}, state)
            raise
        infra = False
        if response.status_code != 200:
            response, infra = await self._explain(model, version, variant, body, headers,
                                                  response)
        self._account(model, request_id, variant, version, response.status_code, infra,
                      started, response.body, response.headers, state)
        if (routed and variant == CHAMPION and state is not None
                and state.policy.strategy == "shadow" and response.status_code == 200):
            self._mirror(model, state, body, headers, response)
        return Answer(response, request_id, variant, version)

    async def _explain(self, model: str, version: int | None, variant: str, body: bytes,
                       headers: dict[str, str],
                       response: BackendResponse) -> tuple[BackendResponse, bool]:
        """Only on the error path: is the failure the infrastructure's (a version desired
        state pins is not loaded: 503, counted apart), the caller's (a version nothing pins and
        the inference server does not serve, perhaps loading or unloading it: 404; Triton
        answers some client mistakes with a 500: 400), or the model's (as answered)?"""
        if version is not None and not await self._backend.version_ready(model, version):
            if variant in ROLES:
                return error_response(503, f"version {version} of {model!r} ({variant}) is not "
                                           "loaded in the inference server; the reconciler is "
                                           "loading it, retry shortly"), True
            return error_response(404, f"version {version} of {model!r} is not served: no "
                                       f"alias pins it; ask GET /models/{model}/variants for "
                                       "the served versions"), False
        if response.status_code >= 500:
            problem = await self._client_mistake(model, version, body, headers)
            if problem is not None:
                return error_response(400, problem), False
        return response, False

    def _account(self, model: str, request_id: str, variant: str, version: int | None,
                 status: int, infra: bool, started: float, body: bytes,
                 headers: dict[str, str], state: DesiredState | None) -> None:
        elapsed = time.perf_counter() - started
        series = self._series.get((model, variant, version, status))
        if series is None:
            series = self._metrics.series(model, variant, str(version or ""), status)
            self._series[(model, variant, version, status)] = series
        series.observe(elapsed, error=status >= 500)
        header_length = headers.get("inference-header-content-length")
        self.predictions.add(Served(
            time.time(), request_id, model, variant, version, status, elapsed * 1000, infra,
            body, int(header_length) if header_length else None,
            state.revision if state is not None else None))

    def _mirror(self, model: str, state: DesiredState, body: bytes, headers: dict[str, str],
                champion: BackendResponse) -> None:
        challenger = state.pins.get(CHALLENGER)
        if challenger is None:
            return
        task = asyncio.create_task(self._compare(model, challenger, body, headers, champion))
        # Keep a reference until done: the event loop only holds weak ones.
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _compare(self, model: str, version: int, body: bytes, headers: dict[str, str],
                       champion: BackendResponse) -> None:
        try:
            mirrored = await self._backend.infer(model, version, body, headers)
        except BackendUnavailable:
            mirrored = None
        if mirrored is None or mirrored.status_code != 200:
            result = "error"
        else:
            result = "agree" if _label(champion) == _label(mirrored) else "disagree"
        self._metrics.shadow.labels(model, result).inc()
        self.predictions.add_shadow(model, version, result)

    async def _client_mistake(self, model: str, version: int | None, body: bytes,
                              headers: dict[str, str]) -> str | None:
        header_length = headers.get("inference-header-content-length")
        try:
            request = json.loads(body[: int(header_length)] if header_length else body)
        except (ValueError, UnicodeDecodeError) as error:
            return f"request body is not valid JSON: {error}"
        metadata = await self._backend.metadata(model, version)
        if metadata is None or not isinstance(request, dict):
            return None if metadata is None else "request body must be a JSON object"
        return input_mismatch(request.get("inputs"), metadata["inputs"])


def _choose(state: DesiredState | None, headers: dict[str, str], request_id: str,
            version: int | None) -> tuple[str, int | None]:
    """(variant, version) for a request: the alias naming a pinned version, or the policy's
    choice among the pins; "default" lets the inference server choose."""
    pins = state.pins if state is not None else {}
    if version is not None:
        named = [alias for alias, v in pins.items() if v == version]
        return (named[0] if named else "pinned"), version
    if state is None or CHAMPION not in pins:
        return "default", None
    policy = state.policy
    key = headers.get(policy.sticky_key, request_id) if policy.strategy == "ab" else request_id
    chosen = route(policy, key).serve
    if chosen not in pins:
        chosen = CHAMPION
    return chosen, pins[chosen]


def _label(response: BackendResponse) -> float | None:
    header_length = response.headers.get("inference-header-content-length")
    return prediction(response.body, int(header_length) if header_length else None)
