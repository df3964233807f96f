"""SealedSecret manifests in the gitops tree: `gitops/envs/<env>/sealed/<secret>.yaml`.

Planning is pure (values in, file contents out); writing is all-or-nothing and refuses anything
but SealedSecrets, so a plaintext Secret never reaches the tree through this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from onecommit.secrets import SecretsError, plaintext
from onecommit.secrets.catalog import CREDENTIALS, plaintext_secrets
from onecommit.secrets.files import write_all
from onecommit.secrets.plaintext import Values
from onecommit.secrets.sealing import (
    Scope,
    dump_manifests,
    is_sealed_secret,
    load_public_key_from_cert,
    seal_secret,
)

HEADER = ("# Written by `invoke seal` / `invoke rotate`: values are encrypted for the cluster's "
          "sealed-secrets\n# controller (strict scope: this name in this namespace only). Do not "
          "edit; re-seal instead.\n")


def envs(root: Path) -> list[str]:
    """The envs of the tree: the directories under gitops/envs."""
    base = root / "gitops" / "envs"
    found = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    if not found:
        raise SecretsError(f"no env under {base}: run from the project root or pass the tree")
    return found


def select_envs(root: Path, wanted: list[str] | None) -> list[str]:
    """The requested envs (default: all), each checked against the tree."""
    known = envs(root)
    unknown = [env for env in wanted or [] if env not in known]
    if unknown:
        raise SecretsError(f"unknown env {unknown[0]!r}: the tree has {', '.join(known)}")
    return list(wanted) if wanted else known


def sealed_path(root: Path, env: str, secret_name: str) -> Path:
    return root / "gitops" / "envs" / env / "sealed" / f"{secret_name}.yaml"


def read_cert(path: Path | None) -> bytes:
    """The controller certificate, checked before anything is generated or written."""
    if path is None:
        raise SecretsError("no sealing certificate: pass --cert or set ONECOMMIT_SEALING_CERT "
                           "to the controller's certificate (`kubeseal --fetch-cert > cert.pem`)")
    try:
        cert_pem = path.read_bytes()
    except OSError as error:
        raise SecretsError(f"cannot read the sealing certificate {path}: "
                           f"{error.strerror}") from None
    load_public_key_from_cert(cert_pem)
    return cert_pem


def plan(root: Path, values: Values, cert_pem: bytes) -> dict[Path, str]:
    """File contents for every Secret of every credential given, sealed strict-scope."""
    contents: dict[Path, str] = {}
    for env, credentials in values.items():
        for name, entry in credentials.items():
            for secret in plaintext_secrets(CREDENTIALS[name], env, entry):
                sealed = seal_secret(secret, cert_pem, Scope.STRICT)
                path = sealed_path(root, env, secret["metadata"]["name"])
                contents[path] = HEADER + dump_manifests([sealed])
    return contents


def _refuse_plaintext(contents: Mapping[Path, str]) -> None:
    """The last gate before the tree: every document must be a SealedSecret."""
    for path, text in contents.items():
        docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
        if not docs or not all(is_sealed_secret(doc) for doc in docs):
            raise SecretsError(f"refusing to write {path}: it would hold something other than a "
                               "SealedSecret")


def write(contents: Mapping[Path, str], extra: Mapping[Path, str] | None = None,
          extra_modes: Mapping[Path, int] | None = None) -> None:
    """Write the manifests (and `extra` files, e.g. the plaintext source) all or nothing."""
    _refuse_plaintext(contents)
    write_all({**contents, **(extra or {})}, extra_modes)


def seal_tree(root: Path, source: Path, cert: Path | None, wanted: list[str] | None,
              environ: Mapping[str, str]) -> list[Path]:
    """`invoke seal`: every credential given in the source (file or environment) for the
    chosen envs, sealed and written; returns the manifests written."""
    cert_pem = read_cert(cert)
    chosen = select_envs(root, wanted)
    given = plaintext.load(source, envs(root), environ)
    values = {env: given[env] for env in chosen if given.get(env)}
    if not values:
        raise SecretsError(f"nothing to seal for {', '.join(chosen)}: put values in {source} or "
                           "ONECOMMIT_SECRET_* variables, or generate them with "
                           "`invoke rotate NAME`")
    contents = plan(root, values, cert_pem)
    write(contents)
    return sorted(contents)
