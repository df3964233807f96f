"""The one error base of the project. Every fault a user can meet and fix is an OnecommitError
(or a subclass named for its domain); its message names the cause and the fix. The invoke
tasks turn it into one line on standard error and a non-zero exit (`onecommit/tasks/__init__.py`),
never a traceback.

Imports nothing: the gateway and the DAG tasks raise these too.
"""

from __future__ import annotations


class OnecommitError(Exception):
    """A fault with one clear cause; the message names it and how to fix it."""

    # Extra lines worth showing under the message (a component's log tail, say).
    detail: str = ""
