"""Bearer tokens for the gateway's protected routes, compared in constant time.

Admin tokens are read from the platform's token files and re-read whenever one changes, so
`invoke rotate gateway-admin-token` switches tokens on a running gateway with no restart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fastapi import Request

from onecommit.files import read_lines
from onecommit.gateway.errors import NoTokenConfigured, Unauthorized

# (inode, mtime, size) of a file, or None when it does not exist.
Stamp = tuple[int, int, int] | None


class TokenSource(Protocol):
    def tokens(self) -> Sequence[bytes]:
        """Every token accepted right now; empty means nothing is (the routes are closed)."""
        ...


@dataclass(frozen=True)
class StaticTokens:
    """Tokens fixed at start (from settings)."""

    values: tuple[bytes, ...]

    def tokens(self) -> Sequence[bytes]:
        return self.values


class TokenFiles:
    """Tokens from files, one per line, re-read when a file is replaced or changed."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = tuple(paths)
        self._seen: tuple[Stamp, ...] | None = None
        self._tokens: tuple[bytes, ...] = ()

    def _signature(self) -> tuple[Stamp, ...]:
        # One stat per file and request: cheaper than any read, and an atomic replace always
        # changes the inode.
        found: list[Stamp] = []
        for path in self._paths:
            try:
                info = os.stat(path)
            except FileNotFoundError:
                found.append(None)
                continue
            found.append((info.st_ino, info.st_mtime_ns, info.st_size))
        return tuple(found)

    def tokens(self) -> Sequence[bytes]:
        signature = self._signature()
        if signature != self._seen:
            lines = [line for path in self._paths for line in read_lines(path)]
            self._tokens = tuple(dict.fromkeys(line.encode() for line in lines))
            self._seen = signature
        return self._tokens


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def token_matches(given: bytes, accepted: Sequence[bytes]) -> bool:
    """Constant-time: equal-length digests, and every accepted token compared, match or not,
    so timing reveals neither a prefix, nor the length, nor which token matched."""
    given_digest = _digest(given)
    matched = False
    for token in accepted:
        matched |= hmac.compare_digest(given_digest, _digest(token))
    return matched


def _bearer(request: Request) -> bytes:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip().encode() if scheme.lower() == "bearer" else b""


def require_bearer(source: TokenSource, what: str) -> Callable[[Request], Awaitable[None]]:
    """A route dependency: 401 unless the request carries one of the source's tokens."""

    async def check(request: Request) -> None:
        accepted = source.tokens()
        if not accepted:
            raise NoTokenConfigured(f"no {what} token is configured: run `invoke up` to "
                                    f"generate one or set it in the gateway's settings")
        if not token_matches(_bearer(request), accepted):
            raise Unauthorized("missing or wrong bearer token")

    return check
