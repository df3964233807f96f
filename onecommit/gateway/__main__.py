"""Run the gateway: `python -m onecommit.gateway` (settings from ONECOMMIT_* variables), as
`ONECOMMIT_GATEWAY_WORKERS` uvicorn processes on one port."""

from __future__ import annotations

import os
import sys
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import uvicorn
from loguru import logger

from onecommit.gateway.server import BoundedHttp, Limits
from onecommit.gateway.settings import GatewaySettings

if TYPE_CHECKING:
    from fastapi import FastAPI


def configure_logging(settings: GatewaySettings) -> None:
    """JSON lines, one per request, rotated by size and kept for a bounded number of files.
    The prediction log hands over its lines already formatted (predictions.py), in batches;
    loguru writes them from a background thread so the event loop never waits on the disk.
    Workers write a file each: rotation is not safe across processes."""
    name = ("gateway-requests.jsonl" if settings.gateway_workers == 1
            else f"gateway-requests.{os.getpid()}.jsonl")
    logger.remove()
    logger.add(settings.logs_dir / name, format="{message}", enqueue=True,
               filter=lambda record: record["extra"].get("kind") == "request",
               rotation="20 MB", retention=5, level="INFO")
    logger.add(sys.stderr, level="WARNING")


def app_from_environment() -> FastAPI:
    """The app of one worker process (uvicorn's factory)."""
    # Imported here, in the workers only: the process that spawns them would spend 2 s of CPU
    # on it before the first worker starts, on every (re)start of the gateway.
    from onecommit.gateway.app import create_app

    settings = GatewaySettings()
    configure_logging(settings)
    return create_app(settings)


def main() -> None:
    settings = GatewaySettings()
    if settings.gateway_workers > 1:
        from onecommit.gateway.metrics import share_between_workers

        share_between_workers(settings.state_dir / "gateway-metrics")
    limits = Limits(settings.gateway_header_timeout_s, settings.gateway_body_timeout_s,
                    settings.gateway_max_header_bytes, settings.gateway_max_connections)
    # With a certificate the gateway speaks HTTPS only: plain HTTP on its port fails the handshake.
    uvicorn.run("onecommit.gateway.__main__:app_from_environment", factory=True,
                # uvicorn builds the protocol per connection with its own arguments.
                http=cast(Any, partial(BoundedHttp, limits=limits)),
                timeout_keep_alive=settings.gateway_keep_alive_s,
                workers=settings.gateway_workers, host=settings.host,
                port=settings.gateway_port, log_level="warning", access_log=False,
                ssl_certfile=settings.gateway_tls_cert_file,
                ssl_keyfile=settings.gateway_tls_key_file)


if __name__ == "__main__":
    main()
