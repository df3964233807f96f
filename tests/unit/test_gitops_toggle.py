"""The optional layer's committed toggle: flipped in place, validated, atomic."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from onecommit import gitops_toggle
from onecommit.gitops_toggle import ATTACHED, DETACHED, AddOn, ToggleError, set_state, toggle_file
from onecommit.settings import PROJECT_ROOT


@pytest.fixture
def root(tmp_path: Path) -> Path:
    target = toggle_file(tmp_path, "dev")
    target.parent.mkdir(parents=True)
    shutil.copy(toggle_file(PROJECT_ROOT, "dev"), target)
    set_state(tmp_path, "dev", DETACHED)
    return tmp_path


def states(root: Path) -> list[AddOn]:
    return gitops_toggle.load(toggle_file(root, "dev"))


def test_the_committed_toggles_are_valid() -> None:
    for env in ("dev", "prod"):
        assert {a.component for a in gitops_toggle.load(toggle_file(PROJECT_ROOT, env))} == {
            "redis", "feast"}


def test_attach_all_then_nothing_left_to_change(root: Path) -> None:
    assert set_state(root, "dev", ATTACHED) == ["redis", "feast"]
    assert states(root) == [AddOn("redis", ATTACHED), AddOn("feast", ATTACHED)]
    assert set_state(root, "dev", ATTACHED) == []


def test_detach_one_keeps_the_others_and_the_comments(root: Path) -> None:
    set_state(root, "dev", ATTACHED)
    before = toggle_file(root, "dev").read_text()
    assert set_state(root, "dev", DETACHED, ["feast"]) == ["feast"]
    after = toggle_file(root, "dev").read_text()
    assert states(root) == [AddOn("redis", ATTACHED), AddOn("feast", DETACHED)]
    assert [ln for ln in after.splitlines() if ln.startswith("#")] == [
        ln for ln in before.splitlines() if ln.startswith("#")]
    assert list(toggle_file(root, "dev").parent.glob(".optional.yaml.*")) == []


def test_unknown_add_on_is_refused_naming_the_known_ones(root: Path) -> None:
    with pytest.raises(ToggleError, match=r"no add-on kafka \(known: redis, feast\)"):
        set_state(root, "dev", ATTACHED, ["kafka"])
    assert states(root) == [AddOn("redis", DETACHED), AddOn("feast", DETACHED)]


def test_unknown_state_is_refused(root: Path) -> None:
    with pytest.raises(ToggleError, match="'on' is not one of attached, detached"):
        set_state(root, "dev", "on")


def test_a_broken_file_names_the_entry(root: Path) -> None:
    path = toggle_file(root, "dev")
    path.write_text(path.read_text().replace("state: detached", "state: enabled", 1))
    with pytest.raises(ToggleError, match="redis: state 'enabled' is not one of"):
        set_state(root, "dev", ATTACHED)


def test_an_env_without_toggle_is_named(tmp_path: Path) -> None:
    with pytest.raises(ToggleError, match="does not exist"):
        set_state(tmp_path, "staging", ATTACHED)
