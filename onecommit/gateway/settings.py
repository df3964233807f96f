"""Gateway settings: the shared `ONECOMMIT_*` settings plus the gateway's own knobs."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from onecommit.settings import Settings


class GatewaySettings(Settings):
    gateway_model: str = "breast-cancer"
    triton_timeout_s: float = Field(default=10.0, gt=0)
    triton_max_connections: int = Field(default=64, ge=1)
    mlflow_timeout_s: float = Field(default=5.0, gt=0)
    gateway_max_body_bytes: int = Field(default=8 * 2**20, ge=1024)
    # Admin calls (reload, traffic, feedback) need this bearer token. Unset: read from the file
    # the platform generates at first `up`.
    gateway_admin_token: SecretStr | None = None
    # When set, inference needs this bearer token too.
    gateway_inference_token: SecretStr | None = None
    gateway_feedback_needs_token: bool = True
    # On clusters Triton and MLflow are other services; locally they are on this host's ports.
    gateway_triton_url: str | None = None
    gateway_mlflow_url: str | None = None

    @property
    def triton_url(self) -> str:
        return self.gateway_triton_url or self.url(self.triton_http_port)

    @property
    def mlflow_url(self) -> str:
        return self.gateway_mlflow_url or self.url(self.mlflow_port)

    @property
    def admin_token_file(self) -> Path:
        return self.state_dir / "gateway" / "admin_token"

    def admin_token(self) -> str:
        if self.gateway_admin_token is not None:
            return self.gateway_admin_token.get_secret_value()
        try:
            return self.admin_token_file.read_text().strip()
        except OSError:
            raise RuntimeError(f"no gateway admin token: set ONECOMMIT_GATEWAY_ADMIN_TOKEN or "
                               f"run `invoke up` to generate {self.admin_token_file}") from None
