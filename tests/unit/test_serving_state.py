"""Desired serving state in the serving database (SQLite here, as on the local profile)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from onecommit.serving.database import open_engine
from onecommit.serving.state import StateError, StateStore
from onecommit.vocabulary import TrafficPolicy


def _store(path: Path) -> StateStore:
    return StateStore(open_engine(f"sqlite:///{path}"))


def test_every_change_bumps_the_revision_and_is_recorded(tmp_path: Path) -> None:
    store = _store(tmp_path / "serving.db")
    assert store.read("m") is None
    first = store.change("m", "test", pins={"champion": 3})
    assert (first.revision, dict(first.pins)) == (1, {"champion": 3})
    canary = TrafficPolicy(strategy="canary", challenger_weight=0.2)
    second = store.change("m", "test", pins={"challenger": 4}, policy=canary)
    assert second.revision == 2
    assert dict(second.pins) == {"champion": 3, "challenger": 4}
    assert second.policy == canary
    third = store.change("m", "test", pins={"challenger": None}, reset_analysis=True)
    assert dict(third.pins) == {"champion": 3}
    assert third.policy == canary
    assert third.analysis_since >= second.analysis_since
    assert store.read("m") == third
    assert store.revisions() == {"m": 3}
    assert [e["revision"] for e in store.events("m")] == [1, 2, 3]
    assert store.events("m")[2]["change"] == {"pins": {"challenger": None},
                                              "reset_analysis": True}


@pytest.mark.parametrize(("pins", "message"), [
    ({"champion": None}, "champion cannot be unpinned"),
    ({"canary": 2}, "unknown alias 'canary'"),
    ({"champion": 0}, "positive integer"),
    ({"champion": True}, "positive integer"),
])
def test_a_refused_change_writes_nothing(tmp_path: Path, pins: dict[str, int | None],
                                         message: str) -> None:
    store = _store(tmp_path / "serving.db")
    before = store.change("m", "test", pins={"champion": 1})
    with pytest.raises(StateError, match=message):
        store.change("m", "test", pins=pins)
    assert store.read("m") == before
    assert len(store.events("m")) == 1


def test_seed_never_overwrites_what_is_in_force(tmp_path: Path) -> None:
    store = _store(tmp_path / "serving.db")
    seeded = store.seed("m", {"champion": 2, "previous": 1}, "gateway-a")
    assert dict(seeded.pins) == {"champion": 2, "previous": 1}
    store.change("m", "test", pins={"champion": 5})
    again = store.seed("m", {"champion": 2}, "gateway-b")
    assert again.pins["champion"] == 5


def _hammer(path: str, worker: int, changes: int) -> None:
    store = StateStore(open_engine(f"sqlite:///{path}"))
    for i in range(changes):
        store.change("m", f"worker-{worker}", pins={"challenger": worker * 1000 + i + 1})


def test_changes_from_several_processes_at_once_are_all_applied(tmp_path: Path) -> None:
    path = tmp_path / "serving.db"
    _store(path).change("m", "test", pins={"champion": 1})
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_hammer, args=(str(path), n, 40)) for n in (1, 2, 3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    store = _store(path)
    assert store.read("m").revision == 121  # type: ignore[union-attr]
    assert [e["revision"] for e in store.events("m", limit=200)] == list(range(1, 122))


def test_policies_name_the_policy_in_force_at_every_revision_of_a_window(tmp_path: Path
                                                                       ) -> None:
    store = _store(tmp_path / "serving.db")
    store.seed("m", {"champion": 1}, "gateway")                          # 1: default policy
    small = TrafficPolicy(strategy="canary", challenger_weight=0.1)
    store.change("m", "test", pins={"challenger": 2}, policy=small)      # 2
    store.change("m", "test", reset_analysis=True)                       # 3: the window starts
    store.note("m", "rollout", {"kind": "start"})                        # no revision of its own
    store.change("m", "test", pins={"previous": 1})                      # 4
    large = TrafficPolicy(strategy="canary", challenger_weight=0.5)
    store.change("m", "test", policy=large)                              # 5
    # The policy set before the window started is the one in force at its first revision.
    assert store.policies("m", 3) == [(3, small), (4, small), (5, large)]
    assert store.policies("m", 0) == [(0, TrafficPolicy()), (1, TrafficPolicy()),
                                      (2, small), (3, small), (4, small), (5, large)]
    store.retire("m", "sync", {"reason": "spec gone"})                   # 6: default again
    assert store.policies("m", 5) == [(5, large), (6, TrafficPolicy())]
    assert store.policies("never-deployed", 0) == [(0, TrafficPolicy())]
