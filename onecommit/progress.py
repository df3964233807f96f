"""Progress of long steps (`invoke up`, `invoke demo`) as a report callback. On a terminal the
step in progress is a spinner with its elapsed time and each step done stays printed; anywhere
else every report is a plain line, so CI logs stay readable and nothing redraws."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.status import Status

from onecommit.platform.local import WORKING


class Progress:
    """A `Report` for `local.up` and the like: `with Progress() as report: up(settings, report)`."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console()
        self._status: Status | None = None
        self._since = time.monotonic()

    def __enter__(self) -> Progress:
        if self._console.is_terminal:
            self._status = self._console.status("starting…")
            self._status.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._status is not None:
            self._status.stop()

    def __call__(self, message: str) -> None:
        elapsed = f"[{time.monotonic() - self._since:5.1f} s]"
        if self._status is None:
            print(f"{elapsed} {message}", flush=True)
        elif message.endswith(WORKING):
            self._status.update(f"{message} {elapsed}")
        else:
            self._console.print(f"[dim]{elapsed}[/dim] [green]✓[/green] {message}",
                                highlight=False)
