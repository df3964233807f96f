"""The gateway's domain errors: each carries the HTTP status it is answered with, and every one
is answered in the same v2 envelope, `{"error": "<what is wrong and what to do>"}`."""

from __future__ import annotations

from onecommit.errors import OnecommitError


class GatewayError(OnecommitError):
    status_code = 500


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


class InvalidModelName(GatewayError):
    """A model name in a path that no model spec could have (the spec's naming rule)."""

    status_code = 422
