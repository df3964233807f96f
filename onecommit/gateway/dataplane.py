"""Shared request logic between the HTTP routes and the backends: routing, variants, reloads,
shadowing and outcome accounting."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

import orjson

from onecommit.gateway.backends import (
    Backend,
    BackendResponse,
    BackendUnavailable,
    error_response,
    warm,
)
from onecommit.gateway.enrichment import Enrichment
from onecommit.gateway.feedback import Outcomes, predicted_label
from onecommit.gateway.metrics import GatewayMetrics, Series
from onecommit.gateway.requestlog import RequestLog
from onecommit.gateway.router import CHALLENGER, CHAMPION, TrafficPolicy, route
from onecommit.gateway.tensors import input_mismatch
from onecommit.gateway.variants import AliasResolver, Variant, VariantError, VariantTable


@dataclass(frozen=True)
class Served:
    response: BackendResponse
    request_id: str
    variant: str
    version: int | None


class DataPlane:
    def __init__(self, backend: Backend, resolver: AliasResolver, model: str,
                 metrics: GatewayMetrics) -> None:
        self._backend = backend
        self._resolver = resolver
        self.model = model
        self._metrics = metrics
        self.variants = VariantTable()
        self.policy = TrafficPolicy()
        self.outcomes = Outcomes()
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self.shadow_agreement = {"agree": 0, "disagree": 0}
        self.request_log = RequestLog()
        # Metric children per label set, looked up once: `labels()` costs more than `inc()`.
        self._series: dict[tuple[str, str, int | None, int], Series] = {}
        self.enrichment = Enrichment()
        self._publish_weights()

    async def ready(self) -> bool:
        return await self._backend.ready()

    async def close(self) -> None:
        """Write what the request log holds and release the backend."""
        self.request_log.flush()
        await self._backend.close()

    async def model_info(self, path: str) -> BackendResponse:
        """`GET /v2/models/<path>`: model or version metadata, or readiness, from any backend."""
        match path.split("/"):
            case [model]:
                return await self._metadata(model, None)
            case [model, "ready"]:
                return await self._readiness(model, None)
            case [model, "versions", version] if version.isdigit():
                return await self._metadata(model, int(version))
            case [model, "versions", version, "ready"] if version.isdigit():
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
                    version: int | None = None) -> Served:
        """Pinned when `version` is given; else routed by the active policy for our model."""
        body, headers = await self.enrichment.apply(body, headers)
        request_id = headers.get("x-request-id") or uuid.uuid4().hex
        variant, version = self._choose(model, headers, request_id, version)
        started = time.perf_counter()
        try:
            response = await self._backend.infer(model, version, body, headers)
        except BackendUnavailable:
            self._account(model, request_id, variant, version, 503, started, b"", headers)
            raise
        if response.status_code >= 500:
            # Triton answers some client mistakes (unparsable JSON) with a 500: only on this
            # error path does the gateway read the request to tell the caller what is wrong.
            problem = await self._client_mistake(model, version, body, headers)
            if problem is not None:
                response = error_response(400, problem)
        self._account(model, request_id, variant, version, response.status_code, started,
                      response.body, response.headers)
        if variant == CHAMPION and self.policy.strategy == "shadow" and response.status_code == 200:
            self._mirror(model, body, headers, response)
        return Served(response, request_id, variant, version)

    def _choose(self, model: str, headers: dict[str, str], request_id: str,
                version: int | None) -> tuple[str, int | None]:
        variants = self.variants.snapshot()
        if version is not None:
            named = [v.alias for v in variants.values() if v.version == version]
            return (named[0] if named else "pinned"), version
        if model != self.model or CHAMPION not in variants:
            return "default", None
        policy = self.policy
        key = headers.get(policy.sticky_key, request_id) if policy.strategy == "ab" else request_id
        chosen = route(policy, key).serve
        if chosen not in variants:
            chosen = CHAMPION
        return chosen, variants[chosen].version

    def _account(self, model: str, request_id: str, variant: str, version: int | None,
                 status: int, started: float, body: bytes, headers: dict[str, str]) -> None:
        elapsed = time.perf_counter() - started
        series = self._series.get((model, variant, version, status))
        if series is None:
            series = self._metrics.series(model, variant, str(version or ""), status)
            self._series[(model, variant, version, status)] = series
        series.observe(elapsed, error=status >= 500)
        self.request_log.add(time.time(), request_id, model, variant, version, status,
                             elapsed * 1000)
        header_length = headers.get("inference-header-content-length")
        self.outcomes.record(request_id, variant, status, elapsed * 1000, body,
                             int(header_length) if header_length else None)

    def _mirror(self, model: str, body: bytes, headers: dict[str, str],
                champion: BackendResponse) -> None:
        challenger = self.variants.get(CHALLENGER)
        if challenger is None:
            return
        task = asyncio.create_task(self._compare(model, challenger.version, body, headers,
                                                 champion))
        # Keep a reference until done: the event loop only holds weak ones.
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _compare(self, model: str, version: int, body: bytes, headers: dict[str, str],
                       champion: BackendResponse) -> None:
        try:
            mirrored = await self._backend.infer(model, version, body, headers)
        except BackendUnavailable:
            self._metrics.shadow.labels(model, "error").inc()
            return
        if mirrored.status_code != 200:
            self._metrics.shadow.labels(model, "error").inc()
            return
        same = _label(champion) == _label(mirrored)
        result = "agree" if same else "disagree"
        self.shadow_agreement[result] += 1
        self._metrics.shadow.labels(model, result).inc()

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

    async def reload(self, alias: str) -> Variant:
        """Resolve the alias, make sure Triton serves that version and warm it, then pin it in
        one swap. Any failure leaves the previous pin in place."""
        async with self.variants.reload_lock:
            version = await self._resolver.resolve(self.model, alias)
            if not await self._backend.version_ready(self.model, version):
                raise VariantError(f"version {version} of {self.model!r} ({alias}) is not READY "
                                   "in Triton: publish and load it first")
            if not await warm(self._backend, self.model, version):
                raise VariantError(f"warm-up inference on version {version} failed")
            variant = Variant(alias=alias, version=version, ready=True)
            self.variants.pin(variant)
            return variant

    async def pin_registered(self, aliases: tuple[str, ...]) -> None:
        for alias in aliases:
            try:
                await self.reload(alias)
            except VariantError:
                continue

    def set_policy(self, policy: TrafficPolicy) -> None:
        if policy.strategy != self.policy.strategy or policy.experiment != self.policy.experiment:
            self.shadow_agreement = {"agree": 0, "disagree": 0}
        self.policy = policy
        self._publish_weights()

    def weights(self) -> dict[str, float]:
        policy = self.policy
        if policy.strategy == "bluegreen":
            return {CHAMPION: float(policy.active == CHAMPION),
                    CHALLENGER: float(policy.active == CHALLENGER)}
        if policy.strategy == "shadow":
            return {CHAMPION: 1.0, CHALLENGER: 0.0}
        return {CHAMPION: 1 - policy.challenger_weight, CHALLENGER: policy.challenger_weight}

    def _publish_weights(self) -> None:
        for variant, weight in self.weights().items():
            self._metrics.weight.labels(self.model, variant).set(weight)


def _label(response: BackendResponse) -> int | None:
    header_length = response.headers.get("inference-header-content-length")
    return predicted_label(response.body, int(header_length) if header_length else None)
