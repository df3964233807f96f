"""The serving database's schema is migrated in place: a database as main created it before
migrations keeps its desired state, history and prediction log through the upgrade."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from sqlalchemy import inspect, select, text

import onecommit.gateway.predictions as predictions
from onecommit.serving.database import open_engine
from onecommit.serving.state import StateStore

BEFORE_MIGRATIONS = Path(__file__).parents[1] / "data" / "serving-db-before-migrations.sql"
POLICY = {"strategy": "canary", "challenger_weight": 0.25, "active": "champion",
          "sticky_key": "x-user-id", "experiment": "default"}


def _old_database(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(BEFORE_MIGRATIONS.read_text())
        db.execute("INSERT INTO serving_state VALUES ('cancer', 7, ?, ?, 100.0, 6, 101.0, 'r')",
                   (json.dumps({"champion": 3, "challenger": 4}), json.dumps(POLICY)))
        db.execute("INSERT INTO serving_events (model, revision, at, actor, change) "
                   "VALUES ('cancer', 7, 101.0, 'r', '{\"policy\": {}}')")
        db.executemany(
            "INSERT INTO predictions (at, request_id, model, variant, version, status, "
            "latency_ms, infra, prediction, revision, replica) "
            "VALUES (?, ?, 'cancer', 'challenger', 4, 200, 1.5, 0, 1.0, 7, 'r')",
            [(200.0 + i, f"request-{i}") for i in range(5)])
        db.execute("INSERT INTO feedback (at, request_id, label, replica) "
                   "VALUES (210.0, 'request-0', 1.0, 'r')")


def test_a_database_from_before_migrations_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "serving.db"
    _old_database(path)
    engine = open_engine(f"sqlite:///{path}")
    state = StateStore(engine).read("cancer")
    assert state is not None
    assert (state.revision, dict(state.pins)) == (7, {"champion": 3, "challenger": 4})
    assert (state.policy.challenger_weight, state.retired) == (0.25, None)
    assert len(StateStore(engine).events("cancer")) == 1
    with engine.connect() as connection:
        rows = connection.execute(select(predictions.prediction_rows)).all()
        assert len(rows) == 5
        assert all(row.routed for row in rows)  # counted before: judged as routed
        # Logged before confidences were: none, so not scored (and the labels kept).
        assert [(row.prediction, row.confidence) for row in rows] == [(1.0, None)] * 5
        assert connection.execute(text("SELECT count(*) FROM feedback")).scalar_one() == 1
        assert connection.execute(text("SELECT version_num FROM alembic_version")
                                  ).scalar_one() == "0005_prediction_confidence"
    # Usable as it is now, and a second open (another worker) changes nothing.
    StateStore(engine).change("cancer", "test", pins={"challenger": 5})
    engine.dispose()
    again = open_engine(f"sqlite:///{path}")
    assert StateStore(again).read("cancer").pins["challenger"] == 5  # type: ignore[union-attr]
    again.dispose()


def test_a_new_database_is_created_at_the_newest_schema_and_syncs_every_commit(
        tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'serving.db'}")
    found = inspect(engine)
    assert {"serving_state", "serving_events", "predictions", "feedback",
            "shadow_comparisons", "alembic_version"} <= set(found.get_table_names())
    assert {"routed", "confidence"} <= {c["name"] for c in found.get_columns("predictions")}
    assert {"request_id", "champion_prediction", "challenger_prediction"} <= {
        c["name"] for c in found.get_columns("shadow_comparisons")}
    with engine.connect() as connection:
        # 2 is FULL: an acknowledged desired-state write survives a power loss.
        assert connection.execute(text("PRAGMA synchronous")).scalar_one() == 2
    engine.dispose()
