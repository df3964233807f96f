"""Shared request logic between the HTTP routes and the backends: routing, variants, reloads,
shadowing and outcome accounting."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from loguru import logger

from onecommit.gateway.backends import BackendResponse, TritonBackend
from onecommit.gateway.enrichment import Enrichment
from onecommit.gateway.feedback import Outcomes, predicted_label
from onecommit.gateway.metrics import GatewayMetrics
from onecommit.gateway.router import CHALLENGER, CHAMPION, TrafficPolicy, route
from onecommit.gateway.variants import AliasResolver, Variant, VariantError, VariantTable

request_log = logger.bind(kind="request")


class BackendUnavailable(RuntimeError):
    """Triton could not be reached; the route answers 503."""


@dataclass(frozen=True)
class Served:
    response: BackendResponse
    request_id: str
    variant: str
    version: int | None


class DataPlane:
    def __init__(self, backend: TritonBackend, resolver: AliasResolver, model: str,
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
        self.enrichment = Enrichment()
        self._publish_weights()

    async def ready(self) -> bool:
        return await self._backend.ready()

    async def passthrough(self, method: str, path: str, body: bytes,
                          headers: dict[str, str]) -> BackendResponse:
        try:
            return await self._backend.forward(method, path, body, headers)
        except httpx.HTTPError as error:
            raise BackendUnavailable(_unreachable(error)) from error

    async def infer(self, model: str, body: bytes, headers: dict[str, str],
                    version: int | None = None) -> Served:
        """Pinned when `version` is given; else routed by the active policy for our model."""
        body, headers = await self.enrichment.apply(body, headers)
        request_id = headers.get("x-request-id") or uuid.uuid4().hex
        variant, version = self._choose(model, headers, request_id, version)
        started = time.perf_counter()
        try:
            response = await self._backend.infer(model, version, body, headers)
        except httpx.HTTPError as error:
            self._account(model, request_id, variant, version, 503, started, b"", headers)
            raise BackendUnavailable(_unreachable(error)) from error
        if response.status_code >= 500:
            # Triton answers some client mistakes (unparsable JSON) with a 500: only on this
            # error path does the gateway read the request to tell the caller what is wrong.
            problem = await self._client_mistake(model, version, body, headers)
            if problem is not None:
                response = BackendResponse(400, json.dumps({"error": problem}).encode(),
                                           {"content-type": "application/json"})
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
        labels = (model, variant, str(version or ""))
        self._metrics.requests.labels(*labels, str(status)).inc()
        self._metrics.latency.labels(*labels).observe(elapsed)
        if status >= 500:
            self._metrics.errors.labels(*labels).inc()
        request_log.bind(request_id=request_id, model=model, variant=variant,
                         version=version, status=status,
                         latency_ms=round(elapsed * 1000, 3)).info("inference")
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
        except httpx.HTTPError:
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
            if not await self._backend.warm(self.model, version):
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


def input_mismatch(inputs: object, expected: list[dict[str, Any]]) -> str | None:
    """What is wrong with a request's inputs against the model metadata, if anything."""
    if not isinstance(inputs, list):
        return "`inputs` must be a list of tensors"
    given = {t.get("name"): t for t in inputs if isinstance(t, dict)}
    for spec in expected:
        tensor = given.get(spec["name"])
        if tensor is None:
            return f"input {spec['name']!r} is missing"
        if tensor.get("datatype") != spec["datatype"]:
            return (f"input {spec['name']!r} has datatype {tensor.get('datatype')}, "
                    f"the model expects {spec['datatype']}")
        shape = tensor.get("shape")
        if (not isinstance(shape, list) or len(shape) != len(spec["shape"])
                or any(e not in (-1, g) for e, g in zip(spec["shape"], shape, strict=True))):
            return f"input {spec['name']!r} has shape {shape}, the model expects {spec['shape']}"
    return None


def _label(response: BackendResponse) -> int | None:
    header_length = response.headers.get("inference-header-content-length")
    return predicted_label(response.body, int(header_length) if header_length else None)


def _unreachable(error: httpx.HTTPError) -> str:
    return f"inference server unreachable: {type(error).__name__}"
