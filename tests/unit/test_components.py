"""What `up` may skip: Airflow's migration, when nothing changed since the last one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from onecommit.platform.components import _migration_key
from onecommit.settings import Settings


def _database(state_dir: Path, revision: str) -> None:
    (state_dir / "airflow").mkdir(exist_ok=True)
    with sqlite3.connect(state_dir / "airflow" / "airflow.db") as db:
        db.execute("CREATE TABLE IF NOT EXISTS alembic_version (version_num TEXT)")
        db.execute("DELETE FROM alembic_version")
        db.execute("INSERT INTO alembic_version VALUES (?)", (revision,))


def test_the_migration_key_follows_the_database_revision_and_the_installation(
        tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    (envs / "platform").mkdir(parents=True)
    settings = Settings(state_dir=tmp_path / "state", envs_path=envs)
    settings.state_dir.mkdir()
    assert _migration_key(settings) == ""  # no database: migrate
    _database(settings.state_dir, "d2f4e1b3c5a7")
    (envs / "platform" / ".requirements.sha256").write_text("aaa")
    migrated = _migration_key(settings)
    assert migrated == "aaa d2f4e1b3c5a7"
    _database(settings.state_dir, "e0000000000")  # another schema revision
    assert _migration_key(settings) != migrated
    _database(settings.state_dir, "d2f4e1b3c5a7")
    (envs / "platform" / ".requirements.sha256").write_text("bbb")  # Airflow reinstalled
    assert _migration_key(settings) != migrated
