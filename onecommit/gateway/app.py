"""`create_app(settings)`: routes (HTTP only) over the dataplane."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from onecommit import __version__
from onecommit.gateway.backends import TritonBackend
from onecommit.gateway.dataplane import BackendUnavailable, DataPlane
from onecommit.gateway.settings import GatewaySettings


def _dataplane(request: Request) -> DataPlane:
    dataplane: DataPlane = request.app.state.dataplane
    return dataplane


Plane = Annotated[DataPlane, Depends(_dataplane)]
router = APIRouter()


@router.get("/v2/health/live")
async def live() -> dict[str, bool]:
    # Liveness never touches a backend: a slow Triton must not get the gateway restarted.
    return {"live": True}


@router.get("/v2/health/ready")
async def ready(plane: Plane) -> JSONResponse:
    is_ready = await plane.ready()
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


@router.get("/version")
async def version() -> dict[str, str]:
    return {"name": "onecommit-gateway", "version": __version__}


@router.api_route("/v2/models/{path:path}", methods=["GET", "POST"])
async def model(path: str, request: Request, plane: Plane) -> Response:
    body = await request.body()
    try:
        answer = await plane.model_call(request.method, f"/v2/models/{path}", body,
                                        dict(request.headers))
    except BackendUnavailable as error:
        return JSONResponse({"error": str(error)}, status_code=503)
    return Response(answer.body, status_code=answer.status_code, headers=answer.headers)


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backend = TritonBackend(settings.triton_url, settings.triton_timeout_s,
                                settings.triton_max_connections)
        app.state.dataplane = DataPlane(backend)
        yield
        await backend.close()

    app = FastAPI(title="onecommit gateway", version=__version__, lifespan=lifespan)
    app.include_router(router)
    return app
