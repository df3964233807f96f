"""`create_app(settings)`: routes (HTTP only) over the dataplane."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from onecommit import __version__
from onecommit.gateway.auth import require_bearer
from onecommit.gateway.backends import BackendUnavailable, make_backend
from onecommit.gateway.dataplane import DataPlane
from onecommit.gateway.enrichment import add_routes, config_file
from onecommit.gateway.fastpath import InferenceRoutes
from onecommit.gateway.metrics import GatewayMetrics
from onecommit.gateway.router import TrafficPolicy
from onecommit.gateway.settings import GatewaySettings
from onecommit.gateway.variants import AliasResolver, VariantError


def _plane(request: Request) -> DataPlane:
    plane: DataPlane = request.app.state.dataplane
    return plane


Plane = Annotated[DataPlane, Depends(_plane)]


class TrafficBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy: Literal["ab", "canary", "bluegreen", "shadow"]
    challenger_weight: float = Field(default=0.0, ge=0, le=1)
    active: Literal["champion", "challenger"] = "champion"
    sticky_key: str = "x-user-id"
    experiment: str = "default"


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str
    label: int


def _routes(settings: GatewaySettings) -> tuple[APIRouter, APIRouter, APIRouter]:
    open_router, infer_router, admin_router = APIRouter(), APIRouter(), APIRouter()

    @open_router.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        # Liveness never touches a backend: a slow Triton must not get the gateway restarted.
        return {"live": True}

    @open_router.get("/v2/health/ready")
    async def ready(plane: Plane) -> JSONResponse:
        is_ready = await plane.ready()
        return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)

    @open_router.get("/version")
    async def version() -> dict[str, str]:
        return {"name": "onecommit-gateway", "version": __version__}

    @open_router.get("/metrics")
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(request.app.state.registry),
                        media_type=CONTENT_TYPE_LATEST)

    @infer_router.get("/v2/models/{path:path}")
    async def model_metadata(path: str, plane: Plane) -> Response:
        answer = await plane.model_info(path)
        return Response(answer.body, answer.status_code, headers=answer.headers)

    @admin_router.get("/auth/check")
    async def auth_check() -> dict[str, bool]:
        # No side effect: lets a token rotation prove a token is accepted, or revoked.
        return {"authorized": True}

    @admin_router.post("/variant/{alias}/reload")
    async def reload(alias: str, plane: Plane) -> dict[str, Any]:
        try:
            variant = await plane.reload(alias)
        except VariantError as error:
            raise HTTPException(409, str(error)) from None
        return variant.as_dict()

    @open_router.get("/variants")
    async def variants(plane: Plane) -> dict[str, Any]:
        weights = plane.weights()
        return {"model": plane.model, "variants": {
            alias: {**v.as_dict(), "weight": weights.get(alias, 0.0)}
            for alias, v in plane.variants.snapshot().items()}}

    @open_router.get("/traffic")
    async def get_traffic(plane: Plane) -> dict[str, Any]:
        return {**plane.policy.__dict__, "weights": plane.weights()}

    @admin_router.put("/traffic")
    async def put_traffic(body: TrafficBody, plane: Plane) -> dict[str, Any]:
        plane.set_policy(TrafficPolicy(**body.model_dump()))
        return {**plane.policy.__dict__, "weights": plane.weights()}

    @open_router.get("/analysis")
    async def analysis(plane: Plane, alpha: float = 0.05, sample_size: int = 0) -> dict[str, Any]:
        report = plane.outcomes.analysis(alpha, sample_size)
        total = sum(plane.shadow_agreement.values())
        report["shadow_comparisons"] = total
        report["shadow_agreement"] = plane.shadow_agreement["agree"] / total if total else None
        return report

    @admin_router.post("/analysis/reset")
    async def reset(plane: Plane) -> dict[str, bool]:
        plane.outcomes.reset()
        plane.shadow_agreement.update(agree=0, disagree=0)
        return {"reset": True}

    feedback_router = admin_router if settings.gateway_feedback_needs_token else open_router

    @feedback_router.post("/feedback")
    async def feedback(body: FeedbackBody, plane: Plane) -> dict[str, Any]:
        joined = plane.outcomes.feedback(body.request_id, body.label)
        if joined is None:
            raise HTTPException(404, f"unknown or expired request id {body.request_id!r}")
        return {"variant": joined[0], "correct": joined[1]}

    return open_router, infer_router, admin_router


def _install_errors(app: FastAPI, settings: GatewaySettings) -> None:
    """Every error is a v2-style `{"error": ...}` with a 4xx/503, never a 500 with a trace."""

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": error.detail}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return JSONResponse({"error": f"{where}: {first['msg']}"}, status_code=422)

    @app.exception_handler(BackendUnavailable)
    async def unavailable(_: Request, error: BackendUnavailable) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=503)

    @app.middleware("http")
    async def body_limit(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                         ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and int(length) > settings.gateway_max_body_bytes:
            return JSONResponse({"error": f"request body of {length} bytes exceeds the limit of "
                                          f"{settings.gateway_max_body_bytes}"}, status_code=413)
        return await call_next(request)


def create_app(settings: GatewaySettings, registry: CollectorRegistry | None = None) -> FastAPI:
    metrics_registry = registry or CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backend = make_backend(settings)
        resolver = AliasResolver(settings.mlflow_url, settings.mlflow_timeout_s)
        app.state.registry = metrics_registry
        plane = DataPlane(backend, resolver, settings.gateway_model,
                          GatewayMetrics(metrics_registry))
        app.state.dataplane = plane
        plane.enrichment.restore(config_file(settings.state_dir))
        # A restarted gateway pins what the registry says now; unset aliases stay unpinned.
        await plane.pin_registered(("champion", "challenger"))
        yield
        await plane.enrichment.close()
        await plane.close()
        await resolver.close()

    app = FastAPI(title="onecommit gateway", version=__version__, lifespan=lifespan)
    open_router, infer_router, admin_router = _routes(settings)
    add_routes(open_router, admin_router)
    app.include_router(open_router)
    inference_tokens = settings.inference_tokens()
    inference_check = None if inference_tokens is None else require_bearer(inference_tokens,
                                                                           "inference")
    app.include_router(infer_router, dependencies=[] if inference_check is None else [
        Depends(inference_check)])
    app.include_router(admin_router, dependencies=[
        Depends(require_bearer(settings.admin_tokens(), "admin"))])
    _install_errors(app, settings)
    # Outermost: inference skips the framework's per-request machinery (see fastpath.py).
    app.add_middleware(InferenceRoutes, check=inference_check,
                       max_body_bytes=settings.gateway_max_body_bytes)
    return app
