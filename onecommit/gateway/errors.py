"""The gateway's error table: every failure it answers is a GatewayError carrying the HTTP
status it is answered with, and every answer to a failure is the same v2 envelope,
`{"error": "<what is wrong and what to do>"}` (`error_body`), whichever path produced it: the
routes, the inference fast path or a backend."""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from loguru import logger
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from onecommit.errors import OnecommitError
from onecommit.serving.state import StateError

JSON = {"content-type": "application/json"}


def error_body(message: object) -> bytes:
    """The v2 error envelope."""
    return orjson.dumps({"error": message})


def error_response(status: int, message: object) -> Response:
    return Response(error_body(message), status, media_type=JSON["content-type"])


class GatewayError(OnecommitError):
    """A failure answered with `status_code` (the class's, or the one given)."""

    status_code = 500

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code


class BadRequest(GatewayError):
    """The request is malformed: its body, a header or a path parameter."""

    status_code = 400


class Unauthorized(GatewayError):
    """No bearer token, or not one the route accepts."""

    status_code = 401


class UnknownRequestId(GatewayError):
    """Feedback for a request id the prediction log does not hold (never seen, or expired)."""

    status_code = 404


class BodyTooLarge(GatewayError):
    """The request body exceeds the configured limit."""

    status_code = 413


class NoTokenConfigured(GatewayError):
    """A protected route while no token is configured: closed until one is."""

    status_code = 503


class BackendUnavailable(GatewayError):
    """The inference server could not be reached or did not answer in time."""

    status_code = 503


class VariantError(GatewayError):
    """An alias could not be resolved or its version is not servable; nothing was changed."""

    status_code = 409


class VersionNotServable(GatewayError):
    """The version an alias names is not READY in the inference server (yet): retry later."""

    status_code = 503


class StoreUnavailable(GatewayError):
    """Desired state could not be read or written; nothing was changed."""

    status_code = 503


class ModelNotDeployed(GatewayError):
    """The model has no desired state: nothing was ever deployed under its name."""

    status_code = 404


class ModelRetired(GatewayError):
    """The model was retired: its spec is gone from the gitops tip."""

    status_code = 404


class InvalidModelName(GatewayError):
    """A model name in a path that no model spec could have (the spec's naming rule)."""

    status_code = 422


def answer_errors(app: FastAPI) -> None:
    """Answer every failure of the app's routes in the v2 envelope with its status, never a
    500 with a trace: the gateway's own (GatewayError), desired state's refusals (409), the
    framework's (an unknown path, a body that fails its schema: 422), and the serving
    database's faults (503; their SQL and paths go to the log, never to the client)."""

    @app.exception_handler(GatewayError)
    async def domain(_: Request, error: GatewayError) -> Response:
        return error_response(error.status_code, str(error))

    @app.exception_handler(StateError)
    async def refused(_: Request, error: StateError) -> Response:
        return error_response(409, str(error))

    @app.exception_handler(HTTPException)
    async def framework(_: Request, error: HTTPException) -> Response:
        return error_response(error.status_code, error.detail)

    @app.exception_handler(SQLAlchemyError)
    async def database(_: Request, error: SQLAlchemyError) -> Response:
        logger.warning(f"serving database: {error}")
        return error_response(503, "the serving database is unreachable; retry")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return error_response(422, f"{where}: {first['msg']}")
