"""Run the gateway: `python -m onecommit.gateway` (settings from ONECOMMIT_* variables)."""

from __future__ import annotations

import sys

import uvicorn
from loguru import logger

from onecommit.gateway.app import create_app
from onecommit.gateway.settings import GatewaySettings


def configure_logging(settings: GatewaySettings) -> None:
    """JSON lines, one per request, rotated by size and kept for a bounded number of files.
    The request log hands over its lines already formatted (requestlog.py), in batches;
    loguru writes them from a background thread so the event loop never waits on the disk."""
    logger.remove()
    logger.add(settings.logs_dir / "gateway-requests.jsonl", format="{message}", enqueue=True,
               filter=lambda record: record["extra"].get("kind") == "request",
               rotation="20 MB", retention=5, level="INFO")
    logger.add(sys.stderr, level="WARNING")


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings)
    # With a certificate the gateway speaks HTTPS only: plain HTTP on its port fails the handshake.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.gateway_port,
                log_level="warning", access_log=False,
                ssl_certfile=settings.gateway_tls_cert_file,
                ssl_keyfile=settings.gateway_tls_key_file)


if __name__ == "__main__":
    main()
