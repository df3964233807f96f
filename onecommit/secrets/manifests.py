"""SealedSecret manifests in the gitops tree: `gitops/envs/<env>/sealed/[<layer>/]<secret>.yaml`,
each env sealed for the controller of its own cluster, whose certificate the tree records
beside them (`gitops/envs/<env>/sealing-cert.pem`).

Planning is pure (values in, file contents out); writing is all-or-nothing and refuses anything
but SealedSecrets, so a plaintext Secret never reaches the tree through this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from onecommit.files import write_all
from onecommit.secrets import SecretsError, catalog, plaintext
from onecommit.secrets.catalog import (
    CREDENTIALS,
    plaintext_secrets,
    sealed_dir,
    sealed_path,
    sealing_cert_path,
)
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
FETCH_CERT = "the controller's certificate (`kubeseal --fetch-cert > cert.pem`)"


def envs(root: Path) -> list[str]:
    """The envs of the tree, at least one."""
    found = catalog.envs(root)
    if not found:
        raise SecretsError(f"no env under {catalog.env_dir(root, '')}: run from the project "
                           "root or pass the tree")
    return found


def select_envs(root: Path, wanted: list[str] | None) -> list[str]:
    """The requested envs (default: all), each checked against the tree."""
    known = envs(root)
    unknown = [env for env in wanted or [] if env not in known]
    if unknown:
        raise SecretsError(f"unknown env {unknown[0]!r}: the tree has {', '.join(known)}")
    return list(wanted) if wanted else known


def read_cert(path: Path) -> bytes:
    """A controller certificate, checked before anything is generated or written."""
    try:
        cert_pem = path.read_bytes()
    except OSError as error:
        raise SecretsError(f"cannot read the sealing certificate {path}: "
                           f"{error.strerror}") from None
    load_public_key_from_cert(cert_pem)
    return cert_pem


def sealing_certs(root: Path, chosen: list[str],
                  override: Path | None) -> tuple[dict[str, bytes], dict[Path, str]]:
    """The certificate each env is sealed for, and the records to update. With an override
    (--cert, ONECOMMIT_SEALING_CERT) every chosen env is sealed for it and records it; else each
    env uses the certificate it records."""
    if override is not None:
        cert_pem = read_cert(override)
        records = {sealing_cert_path(root, env): cert_pem.decode() for env in chosen
                   if _recorded(root, env) != cert_pem}
        return dict.fromkeys(chosen, cert_pem), records
    missing = [env for env in chosen if _recorded(root, env) is None]
    if missing:
        raise SecretsError(f"no sealing certificate for {missing[0]}: "
                           f"{sealing_cert_path(root, missing[0])} is missing; pass --cert or "
                           f"set ONECOMMIT_SEALING_CERT to {FETCH_CERT}")
    return {env: read_cert(sealing_cert_path(root, env)) for env in chosen}, {}


def _recorded(root: Path, env: str) -> bytes | None:
    path = sealing_cert_path(root, env)
    return path.read_bytes() if path.is_file() else None


def plan(root: Path, values: Values, certs: Mapping[str, bytes]) -> dict[Path, str]:
    """File contents for every Secret of every credential given, sealed strict-scope for the
    certificate of its env."""
    contents: dict[Path, str] = {}
    for env, credentials in values.items():
        for name, entry in credentials.items():
            cred = CREDENTIALS[name]
            for spec, secret in zip(cred.secrets, plaintext_secrets(cred, env, entry),
                                    strict=True):
                sealed = seal_secret(secret, certs[env], Scope.STRICT)
                contents[sealed_path(root, env, spec.name, spec.layer)] = (
                    HEADER + dump_manifests([sealed]))
    return contents


def refuse_mixed_keys(root: Path, contents: Mapping[Path, str],
                      records: Mapping[Path, str]) -> None:
    """An env whose certificate changes must be sealed whole: a file left out would stay sealed
    for the old key while the tree says the new one."""
    for record in records:
        env = record.parent.name
        left = sorted(p for p in sealed_dir(root, env).rglob("*.yaml") if p not in contents)
        if left:
            raise SecretsError(f"{left[0]} is sealed for the certificate {record} records, which "
                               f"this run replaces: seal every credential of {env} in one run "
                               f"(`invoke rotate all --env {env}`, or `invoke seal` with all of "
                               "them in secrets.local.yaml), or re-encrypt with `invoke reseal`")


def _refuse_plaintext(contents: Mapping[Path, str]) -> None:
    """The last gate before the tree: every document must be a SealedSecret."""
    for path, text in contents.items():
        docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
        if not docs or not all(is_sealed_secret(doc) for doc in docs):
            raise SecretsError(f"refusing to write {path}: it would hold something other than a "
                               "SealedSecret")


def write(contents: Mapping[Path, str], extra: Mapping[Path, str] | None = None,
          extra_modes: Mapping[Path, int] | None = None) -> None:
    """Write the manifests (and `extra` files: certificate records, the plaintext source) all or
    nothing."""
    _refuse_plaintext(contents)
    write_all({**contents, **(extra or {})}, extra_modes)


def seal_tree(root: Path, source: Path, cert: Path | None, wanted: list[str] | None,
              environ: Mapping[str, str]) -> list[Path]:
    """`invoke seal`: every credential given in the source (file or environment) for the
    chosen envs, sealed and written; returns the manifests, then the certificate records."""
    chosen = select_envs(root, wanted)
    certs, records = sealing_certs(root, chosen, cert)
    given = plaintext.load(source, envs(root), environ)
    values = {env: given[env] for env in chosen if given.get(env)}
    if not values:
        raise SecretsError(f"nothing to seal for {', '.join(chosen)}: put values in {source} or "
                           "ONECOMMIT_SECRET_* variables, or generate them with "
                           "`invoke rotate NAME`")
    contents = plan(root, values, certs)
    records = {path: text for path, text in records.items() if path.parent.name in values}
    refuse_mixed_keys(root, contents, records)
    write(contents, records)
    return sorted(contents) + sorted(records)
