"""A gateway app in this process, on the ONNX backend over a model repository: for tests of
the gateway's own logic that need no inference server and no platform."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from pydantic import SecretStr

from onecommit.gateway.app import create_app
from onecommit.gateway.settings import GatewaySettings


def onnx_settings(state_dir: Path, repository: Path, mlflow_port: int,
                  token: str) -> GatewaySettings:
    return GatewaySettings(state_dir=state_dir, gateway_backend="onnx",
                           gateway_onnx_model_dir=repository,
                           gateway_admin_token=SecretStr(token), mlflow_port=mlflow_port,
                           mlflow_timeout_s=0.5, gateway_state_poll_s=0.1)


@asynccontextmanager
async def started(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    """The app started (its lifespan run) and a client of it; stopped after the block."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client
