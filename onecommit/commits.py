"""A commit's tree, from a bare repository's path or from a URL: what the sync validates and a
deploy's training reads (code and config of one commit train together)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from onecommit.commands import run


@contextmanager
def commit_checkout(repo: str, sha: str) -> Iterator[Path]:
    """The commit's tree from a repository path or URL."""
    with local_repo(repo) as local, checkout(local, sha) as tree:
        yield tree


@contextmanager
def checkout(repo: Path, sha: str) -> Iterator[Path]:
    """The commit's tree in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="onecommit-sync-") as scratch:
        archive = run(["git", "--git-dir", repo, "archive", sha], text=False)
        run(["tar", "-x", "-C", scratch], input=archive.stdout, text=False)
        yield Path(scratch)


@contextmanager
def local_repo(repo: str) -> Iterator[Path]:
    """A bare repository path for `repo`: itself when local, else a fresh bare clone."""
    if Path(repo).is_dir():
        yield Path(repo).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="onecommit-repo-") as scratch:
        run(["git", "clone", "--quiet", "--bare", repo, scratch])
        yield Path(scratch)
