"""Gateway settings: the shared `ONECOMMIT_*` settings plus the gateway's own knobs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from onecommit.gateway.auth import StaticTokens, TokenFiles, TokenSource
from onecommit.secrets.local_store import gateway_token_files
from onecommit.settings import Settings


class GatewaySettings(Settings):
    triton_timeout_s: float = Field(default=10.0, gt=0)
    triton_max_connections: int = Field(default=64, ge=1)
    mlflow_timeout_s: float = Field(default=5.0, gt=0)
    gateway_max_body_bytes: int = Field(default=8 * 2**20, ge=1024)
    # Admin calls (reload, traffic, feedback) need this bearer token. Unset: the tokens in the
    # files the platform generates at first `up` and `invoke rotate` switches (re-read on change).
    gateway_admin_token: SecretStr | None = None
    # When set, inference needs this bearer token too.
    gateway_inference_token: SecretStr | None = None
    # Certificate chain and key (PEM) to serve HTTPS with; both or neither (`invoke up --tls`).
    gateway_tls_cert_file: Path | None = None
    gateway_tls_key_file: Path | None = None
    gateway_feedback_needs_token: bool = True
    # Per worker: a request head must be complete this long after the connection opens (or
    # the previous request ends), and its body this long after its head; idle keep-alive
    # connections close after `gateway_keep_alive_s`. At most `gateway_max_connections`
    # connections are open; heads are at most `gateway_max_header_bytes` (server.py).
    gateway_header_timeout_s: float = Field(default=5.0, gt=0, le=300)
    gateway_body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    gateway_keep_alive_s: int = Field(default=5, ge=1, le=600)
    gateway_max_connections: int = Field(default=1000, ge=1)
    gateway_max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    # On clusters Triton and MLflow are other services; locally they are on this host's ports.
    gateway_triton_url: str | None = None
    gateway_mlflow_url: str | None = None
    # Who runs inference: Triton (over `gateway_triton_protocol`), or ONNX Runtime inside the
    # gateway for hosts where Triton cannot run (reads <onnx model dir>/<model>/<version>/).
    gateway_backend: Literal["triton", "onnx"] = "triton"
    gateway_triton_protocol: Literal["http", "grpc"] = "http"
    # host:port of Triton's gRPC endpoint; locally this host's port.
    gateway_triton_grpc_url: str | None = None
    triton_grpc_channels: int = Field(default=2, ge=1)
    # Default: the Triton model repository in the state dir.
    gateway_onnx_model_dir: Path | None = None
    gateway_onnx_threads: int = Field(default=2, ge=1)
    # How often each replica asks the serving database for a newer desired state: a change
    # reaches every replica within this (plus a warm-up inference per new version).
    gateway_state_poll_s: float = Field(default=0.2, gt=0, le=5)
    # How long the shared prediction log keeps requests, feedback and shadow comparisons.
    gateway_prediction_retention_s: float = Field(default=86_400, ge=60)

    @property
    def triton_url(self) -> str:
        return self.gateway_triton_url or self.url(self.triton_http_port)

    @property
    def triton_grpc_target(self) -> str:
        return self.gateway_triton_grpc_url or f"{self.host}:{self.triton_grpc_port}"

    @property
    def onnx_model_dir(self) -> Path:
        return self.gateway_onnx_model_dir or self.model_repository

    @property
    def mlflow_url(self) -> str:
        return self.gateway_mlflow_url or self.url(self.mlflow_port)

    def admin_tokens(self) -> TokenSource:
        if self.gateway_admin_token is not None:
            return StaticTokens((self.gateway_admin_token.get_secret_value().encode(),))
        return TokenFiles(gateway_token_files(self.state_dir))

    def inference_tokens(self) -> TokenSource | None:
        """None: inference is open."""
        token = self.gateway_inference_token
        return None if token is None else StaticTokens((token.get_secret_value().encode(),))

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewaySettings:
        if (self.gateway_tls_cert_file is None) != (self.gateway_tls_key_file is None):
            raise ValueError("set both ONECOMMIT_GATEWAY_TLS_CERT_FILE and "
                             "ONECOMMIT_GATEWAY_TLS_KEY_FILE, or neither")
        return self
