"""Online feature enrichment: a v2 request that names an entity instead of carrying the model's
feature vector gets that vector from the Feast feature server before inference.

The contract, for the default configuration the Optional layer pushes:
  request   `{"inputs": [{"name": "patient_id", "datatype": "INT64", "shape": [n] or [n, 1],
             "data": [ids...]}]}`, JSON data, no other input
  becomes   `{"inputs": [{"name": "X", "datatype": "FP32", "shape": [n, 30], "data": [...]}]}`
            (request `id`, `parameters` and `outputs` kept), then inferred like any request.
Requests without the entity input pass through untouched (one substring test of the body).
Failures never reach the model: enrichment off → 422, feature server down or failing → 503,
an id without every feature in the online store → 404.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import orjson
from fastapi import APIRouter, Request
from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, model_validator

from onecommit.files import write_file
from onecommit.gateway.errors import GatewayError

_ID_TYPES = ("INT64", "INT32")
# Headers that describe the original body; the rewritten one is plain JSON.
_BODY_HEADERS = ("content-length", "inference-header-content-length")


class EnrichmentError(GatewayError):
    """A request the feature layer cannot enrich; the status says whose side the fault is on."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message, status_code)


class EnrichmentConfig(BaseModel):
    """What `PUT /enrichment` sets and `<state dir>/features/enrichment.json` holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    feature_server_url: str = ""
    entity: str = "patient_id"
    # `view:feature` references, in the model input's column order.
    features: list[str] = Field(default_factory=list)
    model_input: str = "X"
    datatype: Literal["FP32", "FP64"] = "FP32"
    timeout_s: Annotated[float, Field(gt=0, le=30)] = 2.0
    max_connections: Annotated[int, Field(ge=1, le=256)] = 32

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> EnrichmentConfig:
        if self.enabled and not (self.feature_server_url and self.features):
            raise ValueError("enabled enrichment needs feature_server_url and features")
        if any(":" not in ref for ref in self.features):
            raise ValueError("features must be `view:feature` references")
        return self


class Enrichment:
    """The switchable enrichment step the dataplane calls first for every inference."""

    def __init__(self) -> None:
        self.config = EnrichmentConfig()
        self._client: httpx.AsyncClient | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    def restore(self, path: Path) -> None:
        """Take the configuration the layer last wrote, so a restarted gateway keeps it."""
        config = read_config(path)
        if config is not None:
            self._swap(config)

    async def configure(self, config: EnrichmentConfig) -> None:
        timeout = self.config.timeout_s
        old = self._swap(config)
        if old is not None:
            # Requests in flight may still use the old client: close it once the last of them
            # has answered or timed out, so a switch never fails a request.
            task = asyncio.create_task(_close_after(old, timeout + 1))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()

    def _swap(self, config: EnrichmentConfig) -> httpx.AsyncClient | None:
        # One assignment each: a request in flight keeps the client it started with.
        old = self._client
        self._client = httpx.AsyncClient(
            base_url=config.feature_server_url, timeout=config.timeout_s,
            limits=httpx.Limits(max_connections=config.max_connections,
                                max_keepalive_connections=config.max_connections),
        ) if config.enabled else None
        self.config = config
        return old

    async def apply(self, body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        """The request to infer: unchanged, or rewritten with features from the online store."""
        config, client = self.config, self._client
        if f'"{config.entity}"'.encode() not in body:
            return body, headers
        request = _json_header(body, headers)
        ids = entity_ids(request, config)
        if ids is None:
            return body, headers
        if client is None:
            raise EnrichmentError(422, f"input {config.entity!r} needs online features, which "
                                       "are off: run `invoke optional --on`, or send the full "
                                       f"feature vector as {config.model_input!r}")
        rows = feature_rows(await _fetch(client, config, ids), config, ids)
        kept = {k: v for k, v in headers.items() if k.lower() not in _BODY_HEADERS}
        return rewrite(request, config, rows), {**kept, "content-type": "application/json"}


async def _close_after(client: httpx.AsyncClient, delay_s: float) -> None:
    try:
        await asyncio.sleep(delay_s)
    finally:
        await client.aclose()


def _json_header(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    length = headers.get("inference-header-content-length")
    try:
        request = orjson.loads(body[: int(length)] if length else body)
    except (orjson.JSONDecodeError, ValueError) as error:
        raise EnrichmentError(400, f"request body is not valid JSON: {error}") from None
    if not isinstance(request, dict):
        raise EnrichmentError(400, "request body must be a JSON object")
    return request


def entity_ids(request: dict[str, Any], config: EnrichmentConfig) -> list[int] | None:
    """The entity ids an enrichment request asks for; None when it carries no entity input."""
    inputs = request.get("inputs")
    if not isinstance(inputs, list):
        return None
    tensors = [t for t in inputs if isinstance(t, dict) and t.get("name") == config.entity]
    if not tensors:
        return None
    if len(inputs) != 1:
        raise EnrichmentError(400, f"send either {config.entity!r} alone or the full feature "
                                   f"vector {config.model_input!r}, not both")
    tensor = tensors[0]
    if tensor.get("datatype") not in _ID_TYPES:
        raise EnrichmentError(400, f"input {config.entity!r} has datatype "
                                   f"{tensor.get('datatype')}, expected one of {_ID_TYPES}")
    data = tensor.get("data")
    if not isinstance(data, list):
        raise EnrichmentError(400, f"input {config.entity!r} must carry JSON `data`, not binary")
    ids = [v for row in data for v in (row if isinstance(row, list) else [row])]
    shape = tensor.get("shape")
    if shape not in ([len(ids)], [len(ids), 1]) or not ids:
        raise EnrichmentError(400, f"input {config.entity!r} has shape {shape} for {len(ids)} "
                                   "values: expected [n] or [n, 1] with n >= 1")
    if any(type(v) is not int for v in ids):
        raise EnrichmentError(400, f"input {config.entity!r} must hold integers")
    return ids


async def _fetch(client: httpx.AsyncClient, config: EnrichmentConfig,
                 ids: list[int]) -> dict[str, Any]:
    query = {"entities": {config.entity: ids}, "features": config.features}
    try:
        response = await client.post("/get-online-features", content=orjson.dumps(query),
                                     headers={"content-type": "application/json"})
    except httpx.HTTPError as error:
        raise EnrichmentError(503, f"feature server unreachable at {config.feature_server_url} "
                                   f"({type(error).__name__}): send the full feature vector "
                                   f"as {config.model_input!r}, or run `invoke optional --on`"
                              ) from None
    if response.status_code != 200:
        raise EnrichmentError(503, f"feature server answered {response.status_code}: "
                                   f"{response.text[:200]}")
    try:
        answer: dict[str, Any] = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise EnrichmentError(503, "feature server sent a body that is not JSON") from None
    return answer


def feature_rows(answer: dict[str, Any], config: EnrichmentConfig,
                 ids: list[int]) -> list[list[float]]:
    """One row per id in the configured feature order; any missing value refuses the request.

    Feast answers column-major: `results[j].values[i]` is feature j of entity i, named by
    `metadata.feature_names[j]`."""
    try:
        columns = dict(zip(answer["metadata"]["feature_names"], answer["results"], strict=True))
        wanted = [columns[ref.split(":", 1)[1]] for ref in config.features]
    except (KeyError, TypeError, ValueError) as error:
        raise EnrichmentError(503, f"feature server answer lacks {error}: the feature view "
                                   "does not match the configured features") from None
    missing = sorted({ids[i] for column in wanted
                      for i, (value, status) in enumerate(zip(column["values"],
                                                              column["statuses"], strict=True))
                      if status != "PRESENT" or not _finite(value)})
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
        raise EnrichmentError(404, f"no online features for {config.entity} {shown}: unknown "
                                   "entity, or not materialised")
    return [[float(column["values"][i]) for column in wanted] for i in range(len(ids))]


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def rewrite(request: dict[str, Any], config: EnrichmentConfig, rows: list[list[float]]) -> bytes:
    tensor = {"name": config.model_input, "datatype": config.datatype,
              "shape": [len(rows), len(config.features)],
              "data": [value for row in rows for value in row]}
    return orjson.dumps({**request, "inputs": [tensor]})


def read_config(path: Path) -> EnrichmentConfig | None:
    """The configuration the layer last wrote; None when there is none. A broken file leaves
    enrichment as it is rather than the gateway down."""
    try:
        return EnrichmentConfig.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.warning(f"enrichment unchanged: {path} is not a valid configuration "
                       f"({error}); run `invoke optional --on` to rewrite it")
        return None


async def follow_config(enrichment: Enrichment, path: Path, every_s: float) -> None:
    """Every replica takes the configuration the layer writes (its PUT reaches only one)."""
    seen: float | None = None
    while True:
        await asyncio.sleep(every_s)
        try:
            stamp = path.stat().st_mtime
        except OSError:
            continue
        if stamp != seen:
            seen = stamp
            config = read_config(path)
            if config is not None and config != enrichment.config:
                await enrichment.configure(config)


def config_file(state_dir: Path) -> Path:
    """Where the layer records the configuration a (re)started gateway takes."""
    return state_dir / "features" / "enrichment.json"


def add_routes(open_router: APIRouter, admin_router: APIRouter) -> None:
    """`GET /enrichment` (open) and `PUT /enrichment` (admin token): read or switch, live."""

    @open_router.get("/enrichment")
    async def get_enrichment(request: Request) -> dict[str, Any]:
        # Which worker answered: each follows the configuration file on its own.
        return {**_enrichment(request).config.model_dump(), "replica": request.app.state.replica}

    @admin_router.put("/enrichment")
    async def put_enrichment(config: EnrichmentConfig, request: Request) -> dict[str, Any]:
        await _enrichment(request).configure(config)
        return config.model_dump()


def _enrichment(request: Request) -> Enrichment:
    enrichment: Enrichment = request.app.state.dataplane.enrichment
    return enrichment


def write_config(path: Path, config: EnrichmentConfig) -> None:
    """Atomically, so a gateway starting meanwhile reads the old or the new file, never half."""
    write_file(path, orjson.dumps(config.model_dump(), option=orjson.OPT_INDENT_2).decode())
