"""The serving database: the desired serving state (`state.py`) and the shared prediction log
(`onecommit/gateway/predictions.py`) live in one SQL database that every process acting on
serving shares.

Locally that is a SQLite file in the state dir, in WAL mode, shared by every gateway worker and
the Triton reconciler. On clusters it is PostgreSQL (`ONECOMMIT_SERVING_DB_URL`, from the
`serving-db` Secret), shared by every gateway replica and every Triton pod's reconciler. The
SQL is SQLAlchemy Core, portable between the two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from onecommit.errors import OnecommitError

METADATA = MetaData()
T = TypeVar("T")


class DatabaseError(OnecommitError):
    """The serving database cannot be opened or answered with an error."""


def open_engine(url: str) -> Engine:
    """An engine on the serving database, with every table created (idempotent)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # The sqlite3 timeout is its busy timeout: a writer waits for another's transaction.
        engine = create_engine(url, connect_args={"timeout": 15, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)
    try:
        _create_tables(engine)
    except DBAPIError as error:
        raise DatabaseError(f"cannot open the serving database {parsed.render_as_string()}: "
                            f"{error.orig}; check ONECOMMIT_SERVING_DB_URL") from None
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    # Readers never block the writer and the writer never blocks readers; NORMAL syncs at
    # checkpoints only, which WAL makes safe against corruption (a crash may lose the last
    # commits, never the database).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _create_tables(engine: Engine) -> None:
    # Several processes open the database at once (gateway workers, the reconciler): the loser
    # of a create race finds the table there on its second look.
    try:
        METADATA.create_all(engine)
    except DBAPIError:
        METADATA.create_all(engine)


class Database:
    """An engine plus the one thread that talks to it, for async callers: database work never
    runs on the event loop, and one thread keeps a process's writes in order."""

    def __init__(self, url: str) -> None:
        self.engine = open_engine(url)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="serving-db")

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call, *args)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.engine.dispose()
