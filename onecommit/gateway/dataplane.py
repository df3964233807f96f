"""Shared request logic between the HTTP routes and the backends: routing by desired state,
shadowing, telling infrastructure faults from the model's, and accounting to the prediction
log."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from dataclasses import dataclass

import orjson

from onecommit.gateway.backends import Backend, BackendResponse, error_response
from onecommit.gateway.enrichment import Enrichment
from onecommit.gateway.errors import BackendUnavailable, BadRequest, BodyTooLarge
from onecommit.gateway.metrics import GatewayMetrics, Series
from onecommit.gateway.predictions import Mirrored, PredictionLog, Served, prediction
from onecommit.gateway.tensors import input_mismatch
from onecommit.gateway.variants import ServingState
from onecommit.serving.state import DesiredState
from onecommit.strategies import route, strategy_of
from onecommit.vocabulary import CHALLENGER, CHAMPION, ROLES


def is_decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit also accepts "²", which int() refuses."""
    return text.isascii() and text.isdigit()


# Triton's versions are int64: anything longer is no version (and int() of thousands of
# digits is refused by Python itself).
_MAX_VERSION = 2**63 - 1


def parse_version(text: str) -> int:
    """A model version from a path: a positive integer within int64, else a 400."""
    if not is_decimal(text) or len(text) > len(str(_MAX_VERSION)) or not \
            1 <= int(text) <= _MAX_VERSION:
        shown = text if len(text) <= 24 else f"{text[:20]}... ({len(text)} characters)"
        raise BadRequest(f"model version must be a whole number from 1 to {_MAX_VERSION}, "
                         f"got {shown!r}")
    return int(text)


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
        self._series: dict[tuple[str, str, str, int], Series] = {}
        self.enrichment = Enrichment()

    async def close(self) -> None:
        """Write what the prediction log holds and release the backend."""
        await self.predictions.flush()
        await self._backend.close()

    async def model_info(self, path: str) -> BackendResponse:
        """`GET /v2/models/<path>`: model or version metadata, or readiness, from any backend,
        for a model with desired state."""
        parts = path.split("/")
        await self.serving.servable(parts[0])
        match parts:
            case [model]:
                return await self._metadata(model, None)
            case [model, "ready"]:
                return await self._readiness(model, None)
            case [model, "versions", version]:
                return await self._metadata(model, parse_version(version))
            case [model, "versions", version, "ready"]:
                return await self._readiness(model, parse_version(version))
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
        # Only traffic the policy routed is mirrored and judged: a request pinning a version
        # asked for it, and would let any client steer a rollout's analysis.
        routed = version is None
        variant, version = _choose(state, headers, version)
        started = time.perf_counter()
        try:
            response = await self._backend.infer(model, version, body, headers)
        except BackendUnavailable:
            self._account(model, request_id, variant, version, routed, 503, True, started,
                          b"", {}, state)
            raise
        infra = False
        if response.status_code != 200:
            response, infra = await self._explain(model, version, variant, body, headers,
                                                  response)
        self._account(model, request_id, variant, version, routed, response.status_code,
                      infra, started, response.body, response.headers, state)
        if (routed and variant == CHAMPION and state is not None
                and strategy_of(state.policy).mirrors and response.status_code == 200):
            self._mirror(model, request_id, state, body, headers, response)
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
                 routed: bool, status: int, infra: bool, started: float, body: bytes,
                 headers: dict[str, str], state: DesiredState | None) -> None:
        elapsed = time.perf_counter() - started
        # A version no alias pins is any number a client sends: not a label value of its own.
        labels = (model, variant, str(version) if variant in ROLES else "", status)
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = self._metrics.series(*labels)
        series.observe(elapsed, error=status >= 500)
        header_length = headers.get("inference-header-content-length")
        self.predictions.add(Served(
            time.time(), request_id, model, variant, version, status, elapsed * 1000, infra,
            body, int(header_length) if header_length else None,
            state.revision if state is not None else None, routed))

    def _mirror(self, model: str, request_id: str, state: DesiredState, body: bytes,
                headers: dict[str, str], champion: BackendResponse) -> None:
        challenger = state.pins.get(CHALLENGER)
        if challenger is None:
            return
        task = asyncio.create_task(self._compare(model, request_id, challenger, body, headers,
                                                 champion))
        # Keep a reference until done: the event loop only holds weak ones.
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _compare(self, model: str, request_id: str, version: int, body: bytes,
                       headers: dict[str, str], champion: BackendResponse) -> None:
        try:
            mirrored = await self._backend.infer(model, version, body, headers)
        except BackendUnavailable:
            mirrored = None
        answered = _label(champion)
        if mirrored is None or mirrored.status_code != 200:
            result, challenger = "error", None
        else:
            challenger = _label(mirrored)
            result = "agree" if answered == challenger else "disagree"
        self._metrics.shadow.labels(model, result).inc()
        self.predictions.add_shadow(Mirrored(time.time(), request_id, model, version, result,
                                             answered, challenger))

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


def _choose(state: DesiredState | None, headers: dict[str, str],
            version: int | None) -> tuple[str, int | None]:
    """(variant, version) for a request: the alias naming a pinned version, or the policy's
    choice among the pins; "default" lets the inference server choose. The split hashes a key
    the gateway draws (a client's request id would let it choose its variant); A/B stays
    sticky on the configured header, and a request without it gets a drawn key too."""
    pins = state.pins if state is not None else {}
    if version is not None:
        named = [alias for alias, v in pins.items() if v == version]
        return (named[0] if named else "pinned"), version
    if state is None or CHAMPION not in pins:
        return "default", None
    policy = state.policy
    sticky = strategy_of(policy).sticky_key(policy, headers)
    chosen = route(policy, sticky or secrets.token_hex(8)).serve
    if chosen not in pins:
        chosen = CHAMPION
    return chosen, pins[chosen]


def _label(response: BackendResponse) -> float | None:
    header_length = response.headers.get("inference-header-content-length")
    return prediction(response.body, int(header_length) if header_length else None)
