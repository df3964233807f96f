"""The gateway's bearer tokens: constant-time match against a set, re-read when files change."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from onecommit.files import write_private
from onecommit.gateway.auth import StaticTokens, TokenFiles, require_bearer, token_matches
from onecommit.gateway.errors import answer_errors
from onecommit.gateway.settings import GatewaySettings
from onecommit.secrets.local_store import gateway_token_files


def app_with(source: StaticTokens | TokenFiles) -> TestClient:
    app = FastAPI()
    answer_errors(app)

    @app.get("/admin", dependencies=[Depends(require_bearer(source, "admin"))])
    async def admin() -> dict[str, bool]:
        return {"ok": True}

    return TestClient(app)


def call(client: TestClient, header: str | None) -> int:
    headers = {} if header is None else {"Authorization": header}
    return client.get("/admin", headers=headers).status_code


def test_every_accepted_token_matches_and_nothing_else() -> None:
    accepted = [b"first-token", b"second-token"]
    assert token_matches(b"first-token", accepted)
    assert token_matches(b"second-token", accepted)
    assert not token_matches(b"first-toke", accepted)
    assert not token_matches(b"first-tokenX", accepted)
    assert not token_matches(b"", accepted)
    assert not token_matches(b"first-token", [])


@pytest.mark.parametrize(("header", "status"), [
    ("Bearer s3cret", 200), ("bearer s3cret", 200), ("Bearer  s3cret ", 200),
    ("Bearer wrong", 401), ("Basic s3cret", 401), ("s3cret", 401), (None, 401),
])
def test_header_forms(header: str | None, status: int) -> None:
    assert call(app_with(StaticTokens((b"s3cret",))), header) == status


def test_no_configured_token_closes_the_routes_and_says_how_to_fix_it() -> None:
    response = app_with(StaticTokens(())).get("/admin", headers={"Authorization": "Bearer x"})
    assert response.status_code == 503
    assert "invoke up" in response.json()["error"]


def test_token_files_are_re_read_when_replaced(tmp_path: Path) -> None:
    current, rotation = gateway_token_files(tmp_path)
    write_private(current, "old\n")
    client = app_with(TokenFiles((current, rotation)))
    assert call(client, "Bearer old") == 200
    assert call(client, "Bearer new") == 401
    write_private(rotation, "old\nnew\n")
    assert call(client, "Bearer new") == 200
    write_private(current, "new\n")
    assert call(client, "Bearer old") == 200  # still listed in the rotation file
    rotation.unlink()
    assert call(client, "Bearer old") == 401
    assert call(client, "Bearer new") == 200


def test_settings_pick_the_static_token_over_the_files(tmp_path: Path) -> None:
    current, _ = gateway_token_files(tmp_path)
    write_private(current, "from-file\n")
    from_files = GatewaySettings(state_dir=tmp_path).admin_tokens()
    assert list(from_files.tokens()) == [b"from-file"]
    static = GatewaySettings(state_dir=tmp_path, gateway_admin_token="from-env").admin_tokens()
    assert list(static.tokens()) == [b"from-env"]
    assert GatewaySettings(state_dir=tmp_path).inference_tokens() is None


def test_tls_files_come_in_pairs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ONECOMMIT_GATEWAY_TLS_KEY_FILE"):
        GatewaySettings(state_dir=tmp_path, gateway_tls_cert_file=tmp_path / "c.pem")
