"""`invoke optional --on/--off` on clusters: the toggle flipped and committed, alone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from onecommit.features.gitops import flip
from onecommit.gitops_toggle import load, toggle_file

DETACHED = """# Optional layer of dev.
- component: redis
  state: detached   # the online store
- component: feast
  state: detached
"""


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          check=True).stdout


def _repo(tmp_path: Path) -> Path:
    toggle = toggle_file(tmp_path, "dev")
    toggle.parent.mkdir(parents=True)
    toggle.write_text(DETACHED)
    (tmp_path / "other.txt").write_text("not mine\n")
    _git(tmp_path, "init", "--quiet")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init")
    (tmp_path / "other.txt").write_text("someone else's change\n")
    return tmp_path


def test_attach_commits_the_toggle_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _repo(tmp_path)
    for name, value in (("GIT_AUTHOR_NAME", "t"), ("GIT_COMMITTER_NAME", "t"),
                        ("GIT_AUTHOR_EMAIL", "t@example.com"),
                        ("GIT_COMMITTER_EMAIL", "t@example.com")):
        monkeypatch.setenv(name, value)
    changed = flip("dev", True, root)
    committed = _git(root, "show", "--name-only", "--format=%s", "HEAD").split()
    assert (changed, {a.state for a in load(toggle_file(root, "dev"))}, committed[-1],
            _git(root, "status", "--porcelain").strip()) == (
        ["redis", "feast"], {"attached"}, "gitops/envs/dev/optional.yaml", "M other.txt")


def test_flipping_to_the_current_state_commits_nothing(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    head = _git(root, "rev-parse", "HEAD")
    assert (flip("dev", False, root), _git(root, "rev-parse", "HEAD")) == (
        [], head)
