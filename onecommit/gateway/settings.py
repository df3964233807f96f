"""Gateway settings: the shared `ONECOMMIT_*` settings plus the gateway's own knobs."""

from __future__ import annotations

from pydantic import Field

from onecommit.settings import Settings


class GatewaySettings(Settings):
    triton_timeout_s: float = Field(default=10.0, gt=0)
    triton_max_connections: int = Field(default=64, ge=1)

    @property
    def triton_url(self) -> str:
        return self.url(self.triton_http_port)
