"""The sync's pure parts: the inputs fingerprint follows what decides a model's artifact and
nothing else; hostile YAML is a one-line problem, never a crash; records survive a torn line;
a force-push is seen as history rewritten."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from onecommit.lifecycle.spec import dump_spec, spec_from_text
from onecommit.settings import PROJECT_ROOT, Settings
from onecommit.sync import git, read_syncs, records, syncs_file, validation
from onecommit.sync.convergence import fingerprint

CHURN = PROJECT_ROOT / "examples" / "churn-own-code"
SPEC = "envs/dev/models/churn.yaml"


def _git(work: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
                          cwd=work, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A git working tree holding the churn example, one commit."""
    work = tmp_path / "work"
    shutil.copytree(CHURN, work)
    _git(work, "init", "--quiet", "--initial-branch", "main")
    _git(work, "add", "--all")
    _git(work, "commit", "--quiet", "-m", "seed")
    return work


def _commit(work: Path, path: str, text: str) -> str:
    (work / path).write_text(text)
    _git(work, "add", "--all")
    _git(work, "commit", "--quiet", "-m", f"edit {path}")
    return _git(work, "rev-parse", "HEAD")


def _fingerprint(work: Path, sha: str) -> str:
    """The fingerprint of the spec as the commit holds it."""
    spec = spec_from_text(_git(work, "show", f"{sha}:{SPEC}"), Path(SPEC))
    return fingerprint(work / ".git", sha, spec, Settings())


def test_the_fingerprint_follows_data_code_and_artifact_fields_only(work: Path) -> None:
    seed = _git(work, "rev-parse", "HEAD")
    first = _fingerprint(work, seed)
    readme = _commit(work, "README.md", "notes\n")
    assert _fingerprint(work, readme) == first
    spec = yaml.safe_load((work / SPEC).read_text())
    spec["rollout"] = {**spec["rollout"], "pause_s": 7}
    rollout_only = _commit(work, SPEC, dump_spec(spec))
    assert _fingerprint(work, rollout_only) == first
    helper = _commit(work, "training/churn_features.py",
                     (work / "training/churn_features.py").read_text() + "\n# edited\n")
    assert _fingerprint(work, helper) != first
    data = _commit(work, "data/churn.csv", (work / "data/churn.csv").read_text() + "\n")
    assert len({first, _fingerprint(work, helper), _fingerprint(work, data)}) == 3


def test_a_field_added_later_changes_the_fingerprint_only_when_set(work: Path) -> None:
    """An upgrade that adds `faults.flip_rate` leaves every served model Synced: its default
    is not in the digest, so a spec that does not set it keeps the digest it had."""
    seed = _git(work, "rev-parse", "HEAD")
    spec = yaml.safe_load((work / SPEC).read_text())
    unset = _fingerprint(work, seed)
    same = _commit(work, SPEC, dump_spec({**spec, "faults": {"flip_rate": 0.0}}))
    assert _fingerprint(work, same) == unset
    flipped = _commit(work, SPEC, dump_spec({**spec, "faults": {"flip_rate": 0.1}}))
    assert _fingerprint(work, flipped) != unset


def test_a_revert_asks_for_the_same_fingerprint_again(work: Path) -> None:
    seed = _git(work, "rev-parse", "HEAD")
    spec = yaml.safe_load((work / SPEC).read_text())
    spec["training"]["params"] = {"hidden": [16, 8], "weights": {"0": 1, "1": 2}}
    changed = _commit(work, SPEC, dump_spec(spec))
    assert _fingerprint(work, changed) != _fingerprint(work, seed)
    _git(work, "revert", "--no-edit", "HEAD")
    assert _fingerprint(work, _git(work, "rev-parse", "HEAD")) == _fingerprint(work, seed)


@pytest.mark.parametrize(("text", "problem"), [
    ("model: " + "[" * 800 + "]" * 800 + "\n", "nests deeper than 64 levels: flatten it"),
    ("a: &a [x, x]\n" + "".join(f"b{i}: *a\n" for i in range(101)),
     "more than 100 YAML aliases: write the values out"),
    ("model: [unclosed\n", "not valid YAML"),
])
def test_hostile_yaml_is_a_one_line_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    loaded, found = validation.bounded_text(path, "envs/dev/models/bad.yaml", Settings())
    assert loaded is None
    assert found is not None
    assert problem in found
    assert "\n" not in found
    assert found.startswith("envs/dev/models/bad.yaml")


def test_a_file_over_the_size_bound_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("a: " + "x" * 2000 + "\n")
    _, found = validation.bounded_text(path, "big.yaml", Settings(sync_max_file_bytes=1000))
    assert found is not None
    assert "ONECOMMIT_SYNC_MAX_FILE_BYTES" in found


def test_a_torn_record_line_is_skipped(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    records.append(settings, records.SyncRecord(sha="a" * 40, env="dev", changed=[]))
    with syncs_file(settings).open("a") as out:
        out.write('{"sha": "b", "env"')  # a crash mid-write
    assert [r["sha"] for r in read_syncs(settings)] == ["a" * 40]
    records.append(settings, records.SyncRecord(sha="c" * 40, env="dev", changed=[]))
    assert [r["sha"] for r in read_syncs(settings)] == ["a" * 40, "c" * 40]
    records.mark_synced(settings, "c" * 40)
    assert records.last_synced(settings) == "c" * 40


def test_a_force_push_is_followed_as_a_rewritten_history(work: Path) -> None:
    repo = work / ".git"
    seed = _git(work, "rev-parse", "HEAD")
    later = _commit(work, "README.md", "one\n")
    latest = _commit(work, "README.md", "two\n")
    assert git.pending_commits(repo, latest, seed) == [later, latest]
    assert not git.rewritten(repo, latest, seed)
    assert git.rewritten(repo, seed, latest)  # pushed back to an older commit
    assert git.pending_commits(repo, seed, latest) == [seed]
    assert git.pending_commits(repo, latest, latest) == []
