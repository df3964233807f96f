"""Invoke task modules; `tasks.py` at the project root composes them.

Every task is declared with this package's `task`, which puts the one error handler around it:
an OnecommitError (every domain error is one) or a bad setting becomes one line on standard
error naming the cause and the fix, and a non-zero exit; an unreachable service says which and
what to run; anything else is reported as a bug in one line. Never a traceback, unless
ONECOMMIT_DEBUG=1 asks for one.

Every invoke command loads every task module, so they import only what is light at the top;
a task that runs the loop, the proof or a benchmark imports it in its body. Otherwise each
command, `invoke down` included, paid 15 s of CPU for MLflow and scikit-learn first.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

import httpx
from invoke.exceptions import Exit, Failure
from invoke.tasks import Task
from invoke.tasks import task as invoke_task
from pydantic import ValidationError

from onecommit.errors import OnecommitError

F = TypeVar("F", bound=Callable[..., Any])


def one_line(error: BaseException) -> Exit:
    """The Exit a task ends with for an error: its message in one line, and the fix."""
    if isinstance(error, OnecommitError):
        if error.detail:
            print(error.detail)
        return Exit(f"error: {error}", code=1)
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        return Exit(f"invalid setting {field}={first.get('input')!r}: {first['msg']} "
                    f"(fix the --{field} flag or ONECOMMIT_{field.upper()})", code=2)
    if isinstance(error, httpx.HTTPError):
        where = error.request.url if isinstance(error, httpx.RequestError) else "a service"
        return Exit(f"error: {type(error).__name__} talking to {where}: is the platform up? "
                    "See `invoke status`; start it with `invoke up`", code=1)
    if isinstance(error, KeyboardInterrupt):
        return Exit("interrupted", code=130)
    return Exit(f"error: unexpected {type(error).__name__}: {error} (a bug in onecommit: "
                "ONECOMMIT_DEBUG=1 shows the traceback; please report it)", code=1)


def _guarded(body: F) -> F:
    @functools.wraps(body)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return body(*args, **kwargs)
        except (Exit, Failure):
            raise  # invoke's own: it reports a failed command without a traceback
        except (Exception, KeyboardInterrupt) as error:
            if os.environ.get("ONECOMMIT_DEBUG") == "1":
                raise
            raise one_line(error) from None

    return run  # type: ignore[return-value]


@overload
def task(body: Callable[..., Any], /) -> Task[Any]: ...


@overload
def task(**options: Any) -> Callable[[Callable[..., Any]], Task[Any]]: ...


def task(body: Callable[..., Any] | None = None, /,
         **options: Any) -> Task[Any] | Callable[[Callable[..., Any]], Task[Any]]:
    """`invoke.task` (bare or with its options), with the one error handler around the body."""
    # invoke types its decorator loosely; what it makes is a Task.
    if body is not None:
        return cast(Task[Any], invoke_task(_guarded(body)))

    def declare(function: Callable[..., Any]) -> Task[Any]:
        return cast(Task[Any], invoke_task(**options)(_guarded(function)))

    return declare
