"""The one way the project replaces a file: atomically (a reader sees the old file or the new
one, never half), all files of a change or none, secrets owner-only.

Imports nothing beyond the standard library: the gateway's, the lint's and Feast's environments
write through it too.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
# Manifests and other files meant for git: readable by everyone, like a checkout.
PUBLIC_FILE = 0o644
EXECUTABLE_FILE = 0o755


def _stage(path: Path, text: str, mode: int) -> Path:
    """Write text to a temp file beside path (same filesystem, for os.replace) with mode."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    staged = Path(name)
    try:
        # mkstemp creates 0600: a secret is never readable by others, not even while staged.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged


def write_all(contents: Mapping[Path, str], modes: Mapping[Path, int] | None = None) -> None:
    """Stage every file before replacing any, so a failed write leaves every file as it was.

    A file gets its mode from `modes`, else keeps its current one, else PUBLIC_FILE.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, text in contents.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            current = stat.S_IMODE(path.stat().st_mode) if path.exists() else PUBLIC_FILE
            staged.append((_stage(path, text, (modes or {}).get(path, current)), path))
        for temp, path in staged:
            os.replace(temp, path)
    finally:
        for temp, _ in staged:
            temp.unlink(missing_ok=True)


def write_file(path: Path, text: str, mode: int | None = None) -> None:
    """Replace one file atomically; it gets `mode`, else keeps its current one, else
    PUBLIC_FILE."""
    write_all({path: text}, None if mode is None else {path: mode})


@contextmanager
def replacing(path: Path, mode: int = PUBLIC_FILE) -> Iterator[BinaryIO]:
    """A binary file to write `path`'s new content to: it replaces `path` when the block ends,
    and not at all when the block raises (a binary copied out of an archive, a Parquet file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    staged = Path(name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)


def write_private(path: Path, text: str) -> None:
    """Replace path atomically with an owner-only file; its directory is owner-only too."""
    path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    write_all({path: text}, {path: PRIVATE_FILE})


def read_or_create(path: Path, make: Callable[[], str]) -> str:
    """A generated credential: read it, creating it once (owner-only) if missing.

    The file appears complete or not at all, and when two processes race the first one's value
    wins for both (os.link refuses to replace an existing file).
    """
    if not path.exists():
        path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        staged = _stage(path, make(), PRIVATE_FILE)
        try:
            os.link(staged, path)
        except FileExistsError:
            pass
        finally:
            staged.unlink()
    return path.read_text()


def read_lines(path: Path) -> list[str]:
    """The non-empty stripped lines of a file; a missing file has none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


def append_line(path: Path, line: str) -> None:
    """Append one line to a log file in a single write (O_APPEND): concurrent writers never
    interleave within a line, and a reader sees at most a torn line after a crash, which the
    next line does not continue."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, PUBLIC_FILE)
    try:
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        os.write(fd, (("\n" if torn else "") + line.rstrip("\n") + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
