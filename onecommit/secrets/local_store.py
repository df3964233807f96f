"""The local profile's live credentials: owner-only files in the state dir.

The gateway admin token is two files. `admin_token` holds the one token clients use.
`admin_token.rotation`, present only while `invoke rotate` runs, holds tokens the gateway accepts
as well, so switching from the old token to the new one never leaves a client without a valid
token. Clients made by `gateway_client` read the current token at every request.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Generator
from pathlib import Path

import httpx

from onecommit.files import read_lines, read_or_create
from onecommit.secrets.catalog import AIRFLOW_USER, new_token
from onecommit.settings import Settings


def airflow_password(state_dir: Path) -> str:
    """The platform REST client's Airflow password, generated at the first `up` (mode 0600), in
    the file SimpleAuthManager reads."""
    passwords = json.loads(read_or_create(
        state_dir / "airflow" / "passwords.json",
        lambda: json.dumps({AIRFLOW_USER: secrets.token_urlsafe(24)})))
    return str(passwords[AIRFLOW_USER])


def gateway_token_files(state_dir: Path) -> tuple[Path, Path]:
    """(current, rotation): clients read current; the gateway accepts the lines of both."""
    current = state_dir / "gateway" / "admin_token"
    return current, current.with_name("admin_token.rotation")


def gateway_admin_token(state_dir: Path) -> str:
    """The token clients use, generated at the first `up` (mode 0600) and never logged."""
    current, _ = gateway_token_files(state_dir)
    return read_or_create(current, new_token).strip()


def triton_control_key(settings: Settings) -> str:
    """The key Triton's model control asks for: the setting (clusters: from a Secret), else the
    one generated at the first `up` (mode 0600) for the local Triton."""
    if settings.triton_control_key is not None:
        return settings.triton_control_key.get_secret_value()
    return read_or_create(settings.state_dir / "triton" / "control_key", new_token).strip()


def accepted_gateway_tokens(state_dir: Path) -> list[str]:
    """Every token the gateway accepts now: current first, then a rotation's extras."""
    current, rotation = gateway_token_files(state_dir)
    return list(dict.fromkeys(read_lines(current) + read_lines(rotation)))


class AdminTokenAuth(httpx.Auth):
    """Bearer auth with the token that is current at each request, so a long-lived client keeps
    working across `invoke rotate gateway-admin-token`."""

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {gateway_admin_token(self._state_dir)}"
        yield request


def gateway_client(settings: Settings, timeout_s: float = 30) -> httpx.Client:
    """A client of the local gateway's admin API: current token, certificate checked against
    the internal CA when TLS is on."""
    return httpx.Client(base_url=settings.gateway_url, timeout=timeout_s,
                        verify=settings.gateway_verify(), auth=AdminTokenAuth(settings.state_dir))
