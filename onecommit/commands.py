"""The one way the project runs a program: `run`, with one error type whose one-line message
names the command and the tail of its output.

Imports nothing of the project but the error base: the lint environment, the gateway's and the
DAG tasks' import it too. A long-lived process that its owner keeps and stops (a server under a
supervisor, the Docker engine) is started with `subprocess.Popen` where it is owned, with a
comment saying so; everything that runs to an end runs here.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, overload

from onecommit.errors import OnecommitError

Arg = str | Path
# The lines of a failed command's output its message carries, and at most how many characters.
_TAIL_LINES, _TAIL_CHARS, _SHOWN_CHARS = 4, 600, 160


class CommandError(OnecommitError):
    """A command failed, timed out or could not start. `returncode` is None when it never
    finished; `output` is what it printed (stderr, else stdout)."""

    def __init__(self, argv: Sequence[Arg], why: str, output: str = "",
                 returncode: int | None = None) -> None:
        self.argv = [str(a) for a in argv]
        self.returncode = returncode
        self.output = output
        tail = last_lines(output)
        super().__init__(f"`{shown(argv)}` {why}" + (f": {tail}" if tail else ""))


def shown(argv: Sequence[Arg]) -> str:
    """A command line as a shell would read it, cut to a length a message can carry."""
    line = shlex.join(str(a) for a in argv)
    return line if len(line) <= _SHOWN_CHARS else line[: _SHOWN_CHARS - 3] + "..."


def last_lines(output: str | bytes, lines: int = _TAIL_LINES) -> str:
    """What a command printed last, on one line."""
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    tail = " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())
    return tail if len(tail) <= _TAIL_CHARS else "..." + tail[-_TAIL_CHARS:]


@overload
def run(argv: Sequence[Arg], *, input: str | None = ..., env: Mapping[str, str] | None = ...,
        replace_env: bool = ..., cwd: Path | None = ..., timeout_s: float | None = ...,
        check: bool = ..., capture: bool = ..., text: Literal[True] = ...
        ) -> subprocess.CompletedProcess[str]: ...


@overload
def run(argv: Sequence[Arg], *, input: bytes | None = ..., env: Mapping[str, str] | None = ...,
        replace_env: bool = ..., cwd: Path | None = ..., timeout_s: float | None = ...,
        check: bool = ..., capture: bool = ..., text: Literal[False]
        ) -> subprocess.CompletedProcess[bytes]: ...


def run(argv: Sequence[Arg], *, input: str | bytes | None = None,
        env: Mapping[str, str] | None = None, replace_env: bool = False,
        cwd: Path | None = None, timeout_s: float | None = None, check: bool = True,
        capture: bool = True, text: bool = True
        ) -> subprocess.CompletedProcess[str] | subprocess.CompletedProcess[bytes]:
    """Run a program to its end and return what it did.

    `env` adds variables to this process's environment (`replace_env`: is the whole of it);
    `capture=False` lets the output go to the terminal as it comes. With `check` (the default)
    a non-zero exit raises CommandError; without, the caller reads `returncode`. A program that
    cannot start or outlives `timeout_s` always raises CommandError.
    """
    environment = None if env is None else dict(env) if replace_env else {**os.environ, **env}
    try:
        result = subprocess.run([str(a) for a in argv], input=input, env=environment,
                                cwd=cwd, timeout=timeout_s, capture_output=capture, text=text,
                                check=False)
    except FileNotFoundError:
        raise CommandError(argv, f"could not start: {argv[0]} is not installed") from None
    except subprocess.TimeoutExpired as error:
        raise CommandError(argv, f"did not finish within {timeout_s:g} s",
                           _printed(error.stderr, error.stdout)) from None
    if check and result.returncode != 0:
        raise CommandError(argv, f"failed (exit {result.returncode})",
                           _printed(result.stderr, result.stdout), result.returncode)
    return result


def _printed(stderr: str | bytes | None, stdout: str | bytes | None) -> str:
    """What explains a failure: its standard error, else its standard output."""
    for stream in (stderr, stdout):
        if stream:
            return stream.decode(errors="replace") if isinstance(stream, bytes) else stream
    return ""
