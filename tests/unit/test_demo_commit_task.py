"""`invoke demo-commit`: its flags choose the kind of commit, one at a time."""

from __future__ import annotations

from typing import Any

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from onecommit.tasks import loop as tasks


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kind each run_commit was asked for; nothing is run."""
    kinds: list[str] = []
    monkeypatch.setattr(tasks, "load_settings", lambda profile=None: None)
    monkeypatch.setattr(tasks, "chosen_models", lambda settings, asked: ["breast-cancer"])

    def run_commit(settings: Any, kind: str, models: list[str], as_json: bool = False) -> None:
        kinds.append(kind)
    monkeypatch.setattr(tasks, "run_commit", run_commit)
    return kinds


@pytest.mark.parametrize(("flags", "kind"), [
    ({}, "good"), ({"bad": True}, "bad"), ({"worse": True}, "worse"),
    ({"invalid": True}, "invalid")])
def test_each_flag_asks_for_its_kind(asked: list[str], flags: dict[str, bool], kind: str) -> None:
    tasks.demo_commit(Context(), **flags)
    assert asked == [kind]


@pytest.mark.parametrize("flags", [{"bad": True, "worse": True}, {"worse": True, "invalid": True},
                                   {"bad": True, "invalid": True}])
def test_the_kinds_exclude_each_other(asked: list[str], flags: dict[str, bool]) -> None:
    with pytest.raises(Exit, match="choose one of --bad, --worse and --invalid") as raised:
        tasks.demo_commit(Context(), **flags)
    assert raised.value.code == 2
    assert asked == []


def test_worse_is_documented_in_the_help() -> None:
    assert "wrong class" in tasks.demo_commit.help["worse"]
