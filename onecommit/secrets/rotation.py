"""`invoke rotate NAME|all`: new credentials, sealed into the tree, switched on the running
platform.

Order, so that a failure at any point leaves the old credential working:
1. generate a value per env and seal it (nothing written yet);
2. local profile: the gateway accepts the new admin token beside the old one; verified;
3. write the manifests and the plaintext source together (all or nothing);
4. switch the platform's clients to the new token; after a grace period for requests in flight,
   revoke the old one and verify it is refused.
A failure in 1-3 removes the new token from the gateway; only the old one was ever in use.
An interruption (Ctrl-C) anywhere ends the same way: before the switch the old token alone, after
it the new one alone; a rotation killed outright leaves its extra token accepted until the next
`invoke rotate`, which revokes it first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from onecommit.files import PRIVATE_FILE, write_private
from onecommit.secrets import SecretsError, manifests, plaintext
from onecommit.secrets.catalog import Credential, credentials, new_token
from onecommit.secrets.local_store import gateway_token_files
from onecommit.settings import Settings

Report = Callable[[str], None]
# The longest grace period: an old token valid for longer is a rotation that did not happen.
MAX_GRACE_S = 3600.0


class RotationError(SecretsError):
    """The rotation stopped; the message says which credential is in use now."""


@dataclass
class Rotation:
    """What a rotation did; `at` holds time.monotonic() of each local step."""

    name: str
    written: list[Path]
    local: str
    at: dict[str, float] = field(default_factory=dict)


class GatewayTokenSwitch:
    """Moves the running local gateway from its admin token to a new one with no request
    refused: the gateway accepts both while clients switch, then only the new one."""

    def __init__(self, settings: Settings, timeout_s: float = 15) -> None:
        self._settings = settings
        self._current, self._rotation = gateway_token_files(settings.state_dir)
        self._timeout_s = timeout_s
        self.old = self._current.read_text().strip()

    def _status(self, token: str) -> int:
        response = httpx.get(f"{self._settings.gateway_url}/auth/check", timeout=5,
                             headers={"Authorization": f"Bearer {token}"},
                             verify=self._settings.gateway_verify())
        return response.status_code

    def _await(self, token: str, expected: int, what: str) -> None:
        deadline = time.monotonic() + self._timeout_s
        status: int | str = "no answer"
        while time.monotonic() < deadline:
            try:
                status = self._status(token)
            except httpx.HTTPError as error:
                status = type(error).__name__
            if status == expected:
                return
            time.sleep(0.1)
        raise RotationError(f"the gateway did not {what} within {self._timeout_s:.0f} s "
                            f"(last answer: {status})")

    def accept(self, new: str) -> None:
        """Step 2: both tokens accepted, the new one proven."""
        write_private(self._rotation, f"{self.old}\n{new}\n")
        self._await(new, 200, "accept the new admin token")

    def abort(self) -> None:
        """The current token alone: before the switch the old one (step 2 undone), after it
        the new one (the old one revoked at once)."""
        self._rotation.unlink(missing_ok=True)

    def switch(self, new: str) -> None:
        """Clients read the current file at each request: from now on they send the new one."""
        write_private(self._current, f"{new}\n")

    def revoke(self) -> None:
        self._rotation.unlink()
        self._await(self.old, 401, "refuse the old admin token")


def _plan(settings: Settings, root: Path, creds: list[Credential], envs: list[str] | None,
          environ: dict[str, str]) -> tuple[dict[Path, str], dict[Path, str], str]:
    """Step 1: the sealed manifests, the certificate records and the new plaintext source, in
    memory."""
    chosen = manifests.select_envs(root, envs)
    certs, records = manifests.sealing_certs(root, chosen, settings.sealing_cert)
    source = settings.secrets_file
    plaintext.require_untracked(source)
    values = plaintext.load(source, manifests.envs(root), environ)
    fresh = {env: {cred.name: cred.generate(env) for cred in creds} for env in chosen}
    for env in chosen:
        values.setdefault(env, {}).update(fresh[env])
    contents = manifests.plan(root, fresh, certs)
    manifests.refuse_mixed_keys(root, contents, records)
    return contents, records, plaintext.render(values)


def rotate(settings: Settings, root: Path, name: str, *, envs: list[str] | None = None,
           grace_s: float = 5.0, confirm_timeout_s: float = 15.0,
           environ: dict[str, str] | None = None, report: Report = print,
           gateway_running: Callable[[], bool] | None = None) -> Rotation:
    """Rotate one credential, or all of them, in the tree's envs (each sealed for the
    certificate it records, or all for `settings.sealing_cert`) and, for the admin token, on the
    local gateway (each step confirmed within `confirm_timeout_s`). `gateway_running` tells
    whether the local gateway runs now (the platform's process manager knows; None: it does
    not run), so the switch happens live."""
    if not (math.isfinite(grace_s) and 0 <= grace_s <= MAX_GRACE_S):
        raise RotationError(f"--grace-s {grace_s} is not a grace period: give the seconds the "
                            f"old admin token stays valid after the switch, 0 to {MAX_GRACE_S:g}")
    creds = credentials(name)
    _revoke_interrupted(settings, report)
    sealed, records, source_text = _plan(settings, root, creds, envs, environ or {})
    source = settings.secrets_file
    admin_token = any(cred.name == "gateway-admin-token" for cred in creds)
    live = (GatewayTokenSwitch(settings, confirm_timeout_s)
            if admin_token and gateway_running is not None and gateway_running() else None)
    result = Rotation(name, sorted(sealed), "")
    new_local = new_token()
    if live is not None:
        try:
            live.accept(new_local)
        except BaseException:  # Ctrl-C included
            live.abort()
            raise
        result.at["accepted"] = time.monotonic()
        report("local gateway: accepts the new admin token beside the old one")
    try:
        manifests.write(sealed, {**records, source: source_text}, {source: PRIVATE_FILE})
    except OSError as error:
        if live is not None:
            live.abort()
        raise RotationError(f"writing the manifests and {source} failed ({error}): nothing was "
                            f"written and the old {name} stays in use") from None
    except BaseException:
        if live is not None:
            live.abort()
        raise
    report(f"{name}: sealed {len(sealed)} manifest(s); new values in {source}")
    if not admin_token:
        result.local = f"no local service uses {name}: nothing to apply"
        return result
    result.local = _switch_local_token(settings, live, new_local, grace_s, result, report)
    return result


def _revoke_interrupted(settings: Settings, report: Report) -> None:
    """A rotation killed before its end left its extra token accepted: the current token (the
    one clients use) alone again, before anything else."""
    extra = gateway_token_files(settings.state_dir)[1]
    if extra.exists():
        extra.unlink()
        report("local gateway: revoked the extra admin token an interrupted rotation left")


def _switch_local_token(settings: Settings, live: GatewayTokenSwitch | None, new_local: str,
                        grace_s: float, result: Rotation, report: Report) -> str:
    """Step 4 on the local profile for the admin token; the manifests are already written."""
    if live is None:
        write_private(gateway_token_files(settings.state_dir)[0], f"{new_local}\n")
        return "gateway not running: the next `invoke up` uses the new admin token"
    try:
        live.switch(new_local)
    except BaseException:
        live.abort()
        raise
    result.at["switched"] = time.monotonic()
    try:
        report(f"local gateway: clients switched; old token revoked in {grace_s:g} s")
        # Requests signed with the old token just before the switch may still be in flight.
        time.sleep(grace_s)
    except BaseException:
        # Interrupted in the grace period: the old token is revoked now, not never.
        live.abort()
        raise
    try:
        live.revoke()
    except RotationError as error:
        raise RotationError(f"the new admin token is in use, but {error}: the old one may still "
                            "be accepted; run the rotation again") from None
    result.at["revoked"] = time.monotonic()
    return "local gateway switched to the new admin token; the old one is refused"
