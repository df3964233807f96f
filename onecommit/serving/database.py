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

from sqlalchemy import Engine, MetaData, create_engine, event, inspect
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
    found = inspect(engine)
    for table in METADATA.sorted_tables:
        columns = {c["name"] for c in found.get_columns(table.name)}
        missing = [c.name for c in table.columns if c.name not in columns]
        if missing:
            raise DatabaseError(
                f"the serving database {engine.url.render_as_string()} has an older schema "
                f"({table.name} lacks {', '.join(missing)}): stop the platform and delete it; "
                "desired state is seeded again from the registry's aliases")


class Database:
    """An engine and the threads that talk to it, for async callers: database work never runs
    on the event loop. One thread writes, so a process's writes stay in order; reads that may
    take a while (analysis, feedback look-ups) have threads of their own, so they never hold up
    a write or a desired-state poll."""

    def __init__(self, url: str, readers: int = 2) -> None:
        self.engine = open_engine(url)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="serving-db")
        self._readers = ThreadPoolExecutor(max_workers=readers,
                                           thread_name_prefix="serving-db-read")

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """On the writer thread: writes, and the short reads that must follow them."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, call, *args)

    async def read(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, call, *args)

    def close(self) -> None:
        # Pending writes are finished; a read nobody waits for any more is dropped.
        self._readers.shutdown(wait=False, cancel_futures=True)
        self._writer.shutdown(wait=True)
        self.engine.dispose()
