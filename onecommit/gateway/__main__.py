"""Run the gateway: `python -m onecommit.gateway` (settings from ONECOMMIT_* variables)."""

from __future__ import annotations

import uvicorn

from onecommit.gateway.app import create_app
from onecommit.gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.gateway_port,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
