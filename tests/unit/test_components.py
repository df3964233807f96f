"""What `up` may skip: Airflow's migration, when nothing changed since the last one."""

from __future__ import annotations

import json
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


def test_every_setting_reaches_a_program_as_supervisor_reads_it() -> None:
    """Supervisor's lexer knows no escapes: a JSON setting (promotion registries) and a `%`
    still arrive as set."""
    from supervisor.datatypes import dict_of_key_value_pairs

    from onecommit.platform.supervisor import _environment

    settings = Settings(promotion_registries={"dev": "http://127.0.0.1:5000"})
    environment = {**settings.as_environment(), "RATE": "50%"}
    parsed = dict_of_key_value_pairs(_environment(environment))
    assert json.loads(parsed["ONECOMMIT_PROMOTION_REGISTRIES"]) == {"dev": "http://127.0.0.1:5000"}
    assert parsed["RATE"] == "50%%"  # supervisor's own interpolation turns it back into 50%
    assert parsed == {k: v.replace("%", "%%") for k, v in environment.items()}
