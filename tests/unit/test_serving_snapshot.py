"""Reads that must agree with one another see one snapshot of the serving database while its
writers go on (the rollout's observations: requests counted, then their feedback)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, insert, select

from onecommit.gateway.predictions import feedback_rows
from onecommit.serving.database import open_engine, snapshot


def _feedback(request_id: str) -> dict[str, object]:
    return {"at": 1.0, "request_id": request_id, "label": 1.0, "replica": "test"}


def test_a_snapshot_does_not_see_rows_written_after_its_first_read(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'serving.db'}")
    count = select(func.count()).select_from(feedback_rows)
    with engine.begin() as writer:
        writer.execute(insert(feedback_rows).values(_feedback("a")))
    with snapshot(engine) as reader:
        assert reader.execute(count).scalar_one() == 1
        with engine.begin() as writer:
            writer.execute(insert(feedback_rows).values(_feedback("b")))
        assert reader.execute(count).scalar_one() == 1
    with engine.connect() as plain:
        assert plain.execute(count).scalar_one() == 2
        # Without a snapshot, each read sees the writes committed before it: the race the
        # observations had (labelled answers counted beyond the requests read before them).
        with engine.begin() as writer:
            writer.execute(insert(feedback_rows).values(_feedback("c")))
        assert plain.execute(count).scalar_one() == 3
    engine.dispose()
