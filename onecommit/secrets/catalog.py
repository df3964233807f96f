"""The credentials `invoke seal` and `invoke rotate` manage, and the Secrets they become.

Each credential lands in every env's namespace as one or more Kubernetes Secrets with the keys
the charts read (see charts/*/templates/deployment.yaml).
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from onecommit.secrets import SecretsError
from onecommit.secrets.local_store import new_token

# Access key ids are upper-case letters and digits, like the ones MinIO and AWS issue.
_KEY_ID_ALPHABET = string.ascii_uppercase + string.digits


def _access_key_pair() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(20)),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
    }


@dataclass(frozen=True)
class Credential:
    name: str
    description: str
    # The keys of the Secret(s), all required.
    keys: tuple[str, ...]
    # The Kubernetes Secrets (same keys, same values) in each env's namespace.
    secret_names: tuple[str, ...]
    generate: Callable[[], dict[str, str]]


CREDENTIALS: dict[str, Credential] = {c.name: c for c in (
    Credential("gateway-admin-token", "bearer token of the gateway's admin API", ("token",),
               ("gateway-admin-token",), lambda: {"token": new_token()}),
    Credential("object-store-keys", "S3 access key pair MLflow and Triton use for MinIO",
               ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), ("mlflow-s3", "triton-s3"),
               _access_key_pair),
    Credential("webhook-signing-secret", "HMAC key that signs webhook deliveries", ("secret",),
               ("webhook-signing-secret",), lambda: {"secret": secrets.token_hex(32)}),
)}


def credential(name: str) -> Credential:
    try:
        return CREDENTIALS[name]
    except KeyError:
        raise SecretsError(f"unknown credential {name!r}: choose one of "
                           f"{', '.join(CREDENTIALS)}") from None


def namespace(env: str) -> str:
    """The env's namespace, as the core ApplicationSet names it."""
    return f"onecommit-{env}"


def check_values(cred: Credential, values: Mapping[str, object], where: str) -> dict[str, str]:
    """Exactly the credential's keys, each a non-empty string."""
    missing = [key for key in cred.keys if key not in values]
    unknown = [key for key in values if key not in cred.keys]
    if missing or unknown:
        raise SecretsError(f"{where}: {cred.name} needs exactly the keys {', '.join(cred.keys)} "
                           f"(missing: {', '.join(missing) or '-'}; unknown: "
                           f"{', '.join(map(str, unknown)) or '-'})")
    bad = [key for key in cred.keys if not isinstance(values[key], str) or not values[key]]
    if bad:
        raise SecretsError(f"{where}: {cred.name} key {bad[0]} must be a non-empty string")
    return {key: str(values[key]) for key in cred.keys}


def plaintext_secrets(cred: Credential, env: str,
                      values: Mapping[str, str]) -> list[dict[str, Any]]:
    """The v1 Secrets this credential becomes in env. In memory only: they are sealed at once."""
    labels = {"app.kubernetes.io/part-of": "onecommit", "onecommit.dev/credential": cred.name}
    return [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {"name": name, "namespace": namespace(env), "labels": labels},
             "stringData": dict(values)} for name in cred.secret_names]
