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
import fcntl
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, MetaData, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from onecommit.errors import OnecommitError

METADATA = MetaData()
T = TypeVar("T")


class DatabaseError(OnecommitError):
    """The serving database cannot be opened or answered with an error."""


# Alembic's scripts: every schema change is a migration there (README, "Serving database").
MIGRATIONS = Path(__file__).with_name("migrations")
# What a database from before migrations holds: its tables, and no alembic_version.
_BEFORE_MIGRATIONS = "0001_baseline"
# Any fixed key: the PostgreSQL advisory lock every migrating process takes.
_MIGRATION_LOCK = 0x6F6E6563


def open_engine(url: str) -> Engine:
    """An engine on the serving database, migrated to the newest schema (idempotent)."""
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
        migrate(engine)
    except DBAPIError as error:
        raise DatabaseError(f"cannot open the serving database {parsed.render_as_string()}: "
                            f"{error.orig}; check ONECOMMIT_SERVING_DB_URL") from None
    return engine


@contextmanager
def opened(url: str) -> Iterator[Engine]:
    """`open_engine` for one piece of work (a sync pass): its connections closed after."""
    engine = open_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection whose reads all see the database as it was at the first of them: counts
    read by several queries (requests, then their feedback) agree with one another while the
    writers go on. PostgreSQL: a REPEATABLE READ transaction. SQLite (WAL): an explicit BEGIN,
    as its driver starts no transaction for reads of its own. Read only: never committed."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as \
                connection, connection.begin():
            yield connection
        return
    with engine.connect() as connection:
        connection.exec_driver_sql("BEGIN")
        yield connection


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    # Readers never block the writer and the writer never blocks readers. FULL syncs the WAL
    # at every commit: a desired-state change acknowledged to a caller survives a power loss
    # (NORMAL could lose the last commits).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


@contextmanager
def _one_migrator(engine: Engine) -> Iterator[None]:
    """Several processes open the database at once (gateway workers, the reconciler): one
    migrates while the others wait, then find it at the newest revision. SQLite's DDL does not
    wait on another's, so a lock file beside the database serialises them; PostgreSQL takes an
    advisory lock in the migration's transaction instead."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def migrate(engine: Engine) -> None:
    """Upgrade the database in place to the newest schema, keeping every row; a database from
    before migrations is taken as the baseline revision first."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with _one_migrator(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
        config.attributes["connection"] = connection
        tables = set(inspect(connection).get_table_names())
        if "serving_state" in tables and "alembic_version" not in tables:
            command.stamp(config, _BEFORE_MIGRATIONS)
        command.upgrade(config, "head")


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
