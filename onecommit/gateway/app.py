"""`create_app(settings)`: routes (HTTP only) over the dataplane."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import Route

from onecommit import __version__
from onecommit.gateway import ui
from onecommit.gateway.auth import require_bearer
from onecommit.gateway.backend_factory import make_backend
from onecommit.gateway.dataplane import DataPlane
from onecommit.gateway.enrichment import add_routes, config_file, follow_config
from onecommit.gateway.errors import UnknownRequestId, answer_errors
from onecommit.gateway.fastpath import InferenceRoutes
from onecommit.gateway.guard import Guard
from onecommit.gateway.metrics import GatewayMetrics, exposed
from onecommit.gateway.predictions import PredictionLog
from onecommit.gateway.settings import GatewaySettings
from onecommit.gateway.strata import splits
from onecommit.gateway.variants import AliasResolver, ServingState
from onecommit.serving.database import Database
from onecommit.serving.state import DesiredState, StateStore
from onecommit.strategies import weights
from onecommit.vocabulary import CHAMPION, Active, Role, Strategy, TrafficPolicy, Unpinnable


def _plane(request: Request) -> DataPlane:
    plane: DataPlane = request.app.state.dataplane
    return plane


Plane = Annotated[DataPlane, Depends(_plane)]


class TrafficBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy: Strategy
    challenger_weight: float = Field(default=0.0, ge=0, le=1)
    active: Active = CHAMPION
    sticky_key: str = Field(default="x-user-id", min_length=1, max_length=128)
    experiment: str = Field(default="default", max_length=256)


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=256)
    # A class for classification models, a number for regression models.
    label: float = Field(allow_inf_nan=False)


def _traffic(state: DesiredState) -> dict[str, Any]:
    return {"model": state.model, **asdict(state.policy), "weights": weights(state.policy),
            "revision": state.revision}


def _routes(settings: GatewaySettings, replica: str) -> tuple[APIRouter, APIRouter, APIRouter]:
    open_router, infer_router, admin_router = APIRouter(), APIRouter(), APIRouter()

    @open_router.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        # Liveness never touches a backend: a slow Triton must not get the gateway restarted.
        return {"live": True}

    @open_router.get("/v2/health/ready")
    async def ready(plane: Plane) -> JSONResponse:
        is_ready, reason = await plane.serving.readiness()
        return JSONResponse({"ready": is_ready, "reason": reason},
                            status_code=200 if is_ready else 503)

    @open_router.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "onecommit-gateway", "version": __version__, "extensions": []}

    @open_router.get("/version")
    async def version() -> dict[str, str]:
        return {"name": "onecommit-gateway", "version": __version__}

    @open_router.get("/metrics")
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(exposed(request.app.state.registry)),
                        media_type=CONTENT_TYPE_LATEST)

    @infer_router.get("/v2/models/{path:path}")
    async def model_metadata(path: str, plane: Plane) -> Response:
        answer = await plane.model_info(path)
        return Response(answer.body, answer.status_code, headers=answer.headers)

    @admin_router.get("/auth/check")
    async def auth_check() -> dict[str, bool]:
        # No side effect: lets a token rotation prove a token is accepted, or revoked.
        return {"authorized": True}

    @open_router.get("/models")
    async def models(plane: Plane) -> dict[str, Any]:
        return {"models": await plane.serving.models(), "replica": replica}

    @admin_router.post("/models/{model}/variant/{alias}/reload")
    async def reload(model: str, alias: Role, plane: Plane,
                     # Compare-and-set: the version the caller means; a moved alias is refused.
                     expected_version: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None
                     ) -> dict[str, Any]:
        variant, state = await plane.serving.reload(model, alias, expected_version)
        return {"model": model, **variant.as_dict(), "revision": state.revision}

    @admin_router.delete("/models/{model}/variant/{alias}")
    async def unpin(model: str, alias: Unpinnable, plane: Plane) -> dict[str, Any]:
        state = await plane.serving.unpin(model, alias)
        return {"model": model, "alias": alias, "version": None, "revision": state.revision}

    @open_router.get("/models/{model}/variants")
    async def variants(model: str, plane: Plane) -> dict[str, Any]:
        state = await plane.serving.require(model)
        shares = weights(state.policy)
        is_ready, reason = await plane.serving.readiness()
        return {"model": model, "revision": state.revision,
                "replica": replica, "ready": is_ready, "reason": reason, "variants": {
                    alias: {**v.as_dict(), "weight": shares.get(alias, 0.0)}
                    for alias, v in (await plane.serving.variants(model)).items()}}

    @open_router.get("/models/{model}/traffic")
    async def get_traffic(model: str, plane: Plane) -> dict[str, Any]:
        return {**_traffic(await plane.serving.require(model)), "replica": replica}

    @admin_router.put("/models/{model}/traffic")
    async def put_traffic(model: str, body: TrafficBody, plane: Plane) -> dict[str, Any]:
        state = await plane.serving.set_policy(model, TrafficPolicy(**body.model_dump()))
        return {**_traffic(state), "replica": replica}

    @open_router.get("/models/{model}/analysis")
    async def analysis(model: str, plane: Plane,
                       # Below 1e-9, 1 - alpha/2 rounds to 1: no normal quantile.
                       alpha: Annotated[float, Query(ge=1e-9, le=0.5)] = 0.05,
                       sample_size: Annotated[int, Query(ge=0, le=10**9)] = 0
                       ) -> dict[str, Any]:
        state = await plane.serving.require(model)
        return await plane.predictions.analysis(model, state.analysis_since,
                                                state.analysis_revision, alpha, sample_size)

    @open_router.get("/models/{model}/analysis/observations")
    async def observations(model: str, plane: Plane) -> dict[str, Any]:
        state = await plane.serving.require(model)
        history = await plane.serving.policies(model, state.analysis_revision)
        observed = await plane.predictions.observations(model, state.analysis_since,
                                                        splits(history))
        return observed.model_dump()

    @admin_router.post("/models/{model}/analysis/reset")
    async def reset(model: str, plane: Plane) -> dict[str, Any]:
        state = await plane.serving.reset_analysis(model)
        return {"model": model, "reset": True, "since": state.analysis_since,
                "revision": state.revision}

    feedback_router = admin_router if settings.gateway_feedback_needs_token else open_router

    @feedback_router.post("/feedback")
    async def feedback(body: FeedbackBody, plane: Plane) -> dict[str, Any]:
        joined = await plane.predictions.feedback(body.request_id, body.label)
        if joined is None:
            raise UnknownRequestId(f"unknown or expired request id {body.request_id!r}")
        return {"model": joined.model, "variant": joined.variant, "correct": joined.correct,
                "abs_error": joined.error}

    return open_router, infer_router, admin_router


def create_app(settings: GatewaySettings, registry: CollectorRegistry | None = None) -> FastAPI:
    metrics_registry = registry or CollectorRegistry()
    # Unique per app: a restarted or second instance in one process is another replica. Drawn,
    # not the host name and pid: open routes show it.
    replica = f"replica-{secrets.token_hex(4)}"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backend = make_backend(settings)
        resolver = AliasResolver(settings.mlflow_url, settings.mlflow_timeout_s)
        database = Database(settings.serving_db)
        metrics = GatewayMetrics(metrics_registry)
        serving = ServingState(StateStore(database.engine), database, backend, resolver,
                               replica, settings.gateway_state_poll_s,
                               on_change=metrics.publish_weights)
        predictions = PredictionLog(database, replica,
                                    retention_s=settings.gateway_prediction_retention_s)
        plane = DataPlane(backend, serving, predictions, metrics)
        app.state.registry = metrics_registry
        app.state.dataplane = plane
        enrichment_file = config_file(settings.state_dir)
        plane.enrichment.restore(enrichment_file)
        await serving.start()
        following = asyncio.create_task(follow_config(plane.enrichment, enrichment_file,
                                                      settings.gateway_state_poll_s))
        yield
        following.cancel()
        await serving.stop()
        await plane.enrichment.close()
        await plane.close()
        await resolver.close()
        database.close()

    # No /docs or /redoc, and /openapi.json for the admin token only: open routes show nothing
    # an anonymous client does not need (the API is the README's).
    app = FastAPI(title="onecommit gateway", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    openapi = [route for route in app.routes
               if isinstance(route, Route) and route.path == app.openapi_url]
    app.state.replica = replica
    open_router, infer_router, admin_router = _routes(settings, replica)
    add_routes(open_router, admin_router)
    ui.add_routes(open_router, admin_router, settings.mlflow_url)
    app.include_router(open_router)
    inference_tokens = settings.inference_tokens()
    inference_check = None if inference_tokens is None else require_bearer(inference_tokens,
                                                                           "inference")
    app.include_router(infer_router, dependencies=[] if inference_check is None else [
        Depends(inference_check)])
    app.include_router(admin_router)
    # Every error is a v2-style `{"error": ...}` with a 4xx/503, never a 500 with a trace.
    answer_errors(app)
    # The admin token, before any body is read, and the body limit (see guard.py).
    app.add_middleware(Guard, admin_routes=[*admin_router.routes, *openapi],
                       check=require_bearer(settings.admin_tokens(), "admin"),
                       max_body_bytes=settings.gateway_max_body_bytes)
    # Outermost: inference skips the framework's per-request machinery (see fastpath.py).
    app.add_middleware(InferenceRoutes, check=inference_check,
                       max_body_bytes=settings.gateway_max_body_bytes)
    return app
