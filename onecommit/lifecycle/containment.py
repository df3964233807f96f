"""A commit's files stay inside the commit: the checks every path a spec names passes before the
platform reads it, at validation in the sync and again where training reads files.

A commit is untrusted input. A symlink in its tree could point at the platform's own files (the
admin token, the databases), and a path with `..` or an absolute path could name them; a message
quoting such a file's content would carry it into records, logs and notifications. So: the tree
holds no symlinks; `data.source` and `training.entrypoint` name regular files inside the tree;
an absolute `data.source` must lie under a root the operator lists (ONECOMMIT_DATA_ROOTS). No
message here quotes a file's content, only the paths the commit itself wrote.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from onecommit.errors import OnecommitError
from onecommit.lifecycle.spec import Data, ModelSpec, Training


class ContainmentError(OnecommitError):
    """A path of the commit leaves the commit (or the operator's data roots)."""


def tree_problems(tree: Path) -> list[str]:
    """Every symlink in the commit's tree: the platform reads no links, so a commit holding one
    is refused before any of its files is read."""
    return [f"{path.relative_to(tree)}: a symbolic link; the platform follows no links in a "
            "commit: commit the file itself" for path in sorted(tree.rglob("*"))
            if path.is_symlink()]


def in_tree(tree: Path, relative: str, field: str) -> Path:
    """The regular file `relative` names in the tree, checked component by component: no
    absolute path, no `..`, no symlink on the way, a regular file at the end."""
    parts = PurePosixPath(relative).parts
    if PurePosixPath(relative).is_absolute() or ".." in parts:
        raise ContainmentError(f"{field}: {relative} leaves the commit: name a file of the "
                               "gitops repository by its path from the repository's root")
    path = tree
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise ContainmentError(f"{field}: {path.relative_to(tree)} is a symbolic link; "
                                   "the platform follows no links in a commit: commit the "
                                   "file itself")
    if path.exists() and not stat.S_ISREG(path.lstat().st_mode):
        raise ContainmentError(f"{field}: {relative} is not a regular file: name a file")
    return path


def under_roots(source: str, roots: Sequence[Path], field: str) -> Path:
    """An absolute path on this machine, allowed only when it resolves (links followed) under
    one of the operator's data roots."""
    resolved = Path(source).resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        listed = ", ".join(str(root) for root in roots) or "none listed"
        raise ContainmentError(f"{field}: {source} is outside the data roots ({listed}): put "
                               "the file in the gitops repository, or have the operator add "
                               "its folder to ONECOMMIT_DATA_ROOTS")
    return resolved


def data_file(data: Data, tree: Path | None, roots: Sequence[Path]) -> Path | None:
    """The data file training may read, checked; None for built-in sets and object stores, and
    for a file in the repository when no tree is checked out (data.py says so)."""
    if data.builtin is not None or data.is_s3:
        return None
    if not data.in_repo:
        return under_roots(data.source, roots, "data.source")
    return None if tree is None else in_tree(tree, data.source, "data.source")


def entrypoint_file(training: Training, tree: Path) -> Path:
    """The user's training file, checked to be a regular file inside the tree."""
    assert training.entrypoint_file is not None
    return in_tree(tree, training.entrypoint_file, "training.entrypoint")


def _refusal(check: Callable[[], object]) -> list[str]:
    try:
        check()
    except ContainmentError as error:
        return [str(error)]
    return []


def spec_problems(spec: ModelSpec, tree: Path, roots: Sequence[Path]) -> list[str]:
    """What in the spec's paths leaves the commit; empty when its files may be read."""
    data, training = spec.data, spec.training
    problems = _refusal(lambda: data_file(data, tree, roots)) if data is not None else []
    if training is not None and training.entrypoint is not None:
        problems += _refusal(lambda: entrypoint_file(training, tree))
    return problems
