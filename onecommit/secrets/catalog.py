"""The credentials `invoke seal` and `invoke rotate` manage, the Secrets they become, and where
those live in the tree.

A credential is what `secrets.local.yaml` holds per env (its keys); its Secrets are what the
charts read, each in the namespace of its layer and with the keys the chart expects, derived from
the credential: a database password also becomes the URLs that carry it, so the values can never
disagree. A cluster runs one env, and every Secret it needs is sealed under
`gitops/envs/<env>/sealed/` (core namespace), `sealed/optional/` and `sealed/baseline/` for that
cluster's controller, whose certificate is `gitops/envs/<env>/sealing-cert.pem`.

Standard library only: the lint (its own environment) reads this layout too.
"""

from __future__ import annotations

import base64
import json
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from onecommit.secrets import SecretsError

# Layer -> namespace of an env, as the ApplicationSets name them (baseline is per cluster).
NAMESPACES = {"core": "onecommit-{env}", "optional": "onecommit-optional-{env}",
              "baseline": "onecommit-baseline"}
# The baseline MinIO every env's services reach (the envs' s3EndpointUrl values).
OBJECT_STORE_URL = "http://minio.onecommit-baseline.svc.cluster.local:9000"
# Airflow's REST API user on clusters, as on the local profile (airflow.config.core in the chart).
AIRFLOW_USER = "onecommit"
GRAFANA_USER = "admin"
# What the tree records beside each env's sealed secrets: the controller certificate they are for.
SEALING_CERT = "sealing-cert.pem"
# Access key ids are upper-case letters and digits, like the ones MinIO and AWS issue.
_KEY_ID_ALPHABET = string.ascii_uppercase + string.digits

Values = Mapping[str, str]


def new_token() -> str:
    """A bearer token or password: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def namespace(env: str, layer: str = "core") -> str:
    """The namespace a layer of env deploys to."""
    return NAMESPACES[layer].format(env=env)


def env_dir(root: Path, env: str) -> Path:
    return root / "gitops" / "envs" / env


def envs(root: Path) -> list[str]:
    """The envs of the tree: the directories under gitops/envs."""
    base = env_dir(root, "")
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def sealed_dir(root: Path, env: str, layer: str = "core") -> Path:
    """Where the SealedSecrets of a layer of env live (each directory is one Application)."""
    base = env_dir(root, env) / "sealed"
    return base if layer == "core" else base / layer


def sealed_path(root: Path, env: str, secret_name: str, layer: str = "core") -> Path:
    return sealed_dir(root, env, layer) / f"{secret_name}.yaml"


def sealing_cert_path(root: Path, env: str) -> Path:
    """The public certificate of the controller env's secrets are sealed for (committed)."""
    return env_dir(root, env) / SEALING_CERT


@dataclass(frozen=True)
class Secret:
    """A Kubernetes Secret a credential becomes: its data from the credential's values and env."""

    name: str
    layer: str
    data: Callable[[Values, str], dict[str, str]]


@dataclass(frozen=True)
class Credential:
    name: str
    description: str
    # The keys of the credential in secrets.local.yaml, all required.
    keys: tuple[str, ...]
    secrets: tuple[Secret, ...]
    # New values for an env.
    generate: Callable[[str], dict[str, str]]

    @property
    def secret_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.secrets)


def _as_given(values: Values, env: str) -> dict[str, str]:
    return dict(values)


def _key(credential_key: str, secret_key: str) -> Callable[[Values, str], dict[str, str]]:
    return lambda values, env: {secret_key: values[credential_key]}


def _access_key_pair(env: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(20)),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
    }


def _airflow_s3_connection(values: Values, env: str) -> dict[str, str]:
    """Airflow's connection URI for the remote task logs (conn id onecommit_s3)."""
    login = quote(values["AWS_ACCESS_KEY_ID"], safe="")
    password = quote(values["AWS_SECRET_ACCESS_KEY"], safe="")
    return {"uri": f"aws://{login}:{password}@/?endpoint_url={quote(OBJECT_STORE_URL, safe='')}"
                   "&region_name=us-east-1"}


def _minio_root(values: Values, env: str) -> dict[str, str]:
    # The cluster's MinIO root user is its env's key pair: one identity for every service.
    return {"rootUser": values["AWS_ACCESS_KEY_ID"],
            "rootPassword": values["AWS_SECRET_ACCESS_KEY"]}


def _postgres_host(env: str) -> str:
    """The PostgreSQL of Airflow's chart (release airflow-<env>), which also holds the MLflow and
    serving databases (its initdb script, `onecommit-postgresql-init`)."""
    return f"airflow-{env}-postgresql.{namespace(env)}.svc.cluster.local"


def _database(env: str) -> dict[str, str]:
    return {"host": _postgres_host(env), "postgres-password": new_token(),
            "mlflow-password": new_token(), "serving-password": new_token()}


def _url(scheme: str, user: str, password: str, host: str, database: str) -> str:
    return f"{scheme}://{user}:{quote(password, safe='')}@{host}:5432/{database}"


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _initdb(values: Values, env: str) -> dict[str, str]:
    """Roles and databases of MLflow and the serving state, created at the first start."""
    lines = [f"CREATE ROLE {user} LOGIN PASSWORD {_sql_literal(values[f'{user}-password'])};\n"
             f"CREATE DATABASE {user} OWNER {user};\n" for user in ("mlflow", "serving")]
    return {"databases.sql": "".join(lines)}


def _airflow_api(values: Values, env: str) -> dict[str, str]:
    """The sync Job logs in with username/password; SimpleAuthManager reads passwords.json."""
    return {"username": AIRFLOW_USER, "password": values["password"],
            "passwords.json": json.dumps({AIRFLOW_USER: values["password"]})}


def _airflow_keys(env: str) -> dict[str, str]:
    return {"fernet-key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "api-secret-key": new_token(), "jwt-secret": new_token()}


_DATABASE_SECRETS = (
    Secret("airflow-postgresql", "core", _key("postgres-password", "postgres-password")),
    Secret("airflow-metadata", "core", lambda v, env: {"connection": _url(
        "postgresql", "postgres", v["postgres-password"], v["host"], "postgres")
        + "?sslmode=disable"}),
    Secret("mlflow-backend", "core", lambda v, env: {"uri": _url(
        "postgresql", "mlflow", v["mlflow-password"], v["host"], "mlflow")}),
    Secret("serving-db", "core", lambda v, env: {"url": _url(
        "postgresql+psycopg", "serving", v["serving-password"], v["host"], "serving")}),
    Secret("onecommit-postgresql-init", "core", _initdb),
)

CREDENTIALS: dict[str, Credential] = {c.name: c for c in (
    Credential("gateway-admin-token", "bearer token of the gateway's admin API", ("token",),
               (Secret("gateway-admin-token", "core", _as_given),),
               lambda env: {"token": new_token()}),
    Credential("object-store-keys", "S3 key pair of MinIO (its root user) for MLflow, Triton "
               "and Airflow's task logs", ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
               (Secret("mlflow-s3", "core", _as_given), Secret("triton-s3", "core", _as_given),
                Secret("airflow-s3-connection", "core", _airflow_s3_connection),
                Secret("minio-root", "baseline", _minio_root)),
               _access_key_pair),
    Credential("database", "PostgreSQL of the env: host and the passwords of Airflow, MLflow "
               "and the serving state", ("host", "postgres-password", "mlflow-password",
                                         "serving-password"),
               _DATABASE_SECRETS, _database),
    Credential("airflow-api-credentials", "password of Airflow's REST API user onecommit",
               ("password",), (Secret("airflow-api-credentials", "core", _airflow_api),),
               lambda env: {"password": new_token()}),
    Credential("airflow-keys", "Airflow's Fernet key, API secret key and JWT secret",
               ("fernet-key", "api-secret-key", "jwt-secret"),
               tuple(Secret(f"airflow-{key}", "core", _key(key, key))
                     for key in ("fernet-key", "api-secret-key", "jwt-secret")),
               _airflow_keys),
    Credential("redis-password", "password of the optional layer's Redis", ("password",),
               (Secret("redis-auth", "optional", _as_given),),
               lambda env: {"password": new_token()}),
    Credential("grafana-admin", "password of Grafana's admin user", ("password",),
               (Secret("grafana-admin", "baseline", lambda v, env: {
                   "admin-user": GRAFANA_USER, "admin-password": v["password"]}),),
               lambda env: {"password": new_token()}),
    Credential("triton-control-key", "key Triton's model control (load, unload) asks for; "
               "held by the reconciler and the publish step", ("key",),
               (Secret("triton-control-key", "core", _as_given),),
               lambda env: {"key": new_token()}),
    Credential("webhook-signing-secret", "HMAC key that signs webhook deliveries", ("secret",),
               (Secret("webhook-signing-secret", "core", _as_given),),
               lambda env: {"secret": secrets.token_hex(32)}),
)}


# What `invoke rotate all` means: every credential at once, e.g. for a new cluster's env.
ALL = "all"


def credentials(name: str) -> list[Credential]:
    """The credential of that name, or every one for ALL."""
    if name == ALL:
        return list(CREDENTIALS.values())
    try:
        return [CREDENTIALS[name]]
    except KeyError:
        raise SecretsError(f"unknown credential {name!r}: choose one of "
                           f"{', '.join(CREDENTIALS)} or {ALL}") from None


def producing(secret_name: str) -> Credential | None:
    """The credential whose Secrets include this name, if any."""
    return next((c for c in CREDENTIALS.values() if secret_name in c.secret_names), None)


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


def plaintext_secrets(cred: Credential, env: str, values: Values) -> list[dict[str, Any]]:
    """The v1 Secrets this credential becomes in env. In memory only: they are sealed at once."""
    labels = {"app.kubernetes.io/part-of": "onecommit", "onecommit.dev/credential": cred.name}
    return [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {"name": secret.name, "namespace": namespace(env, secret.layer),
                          "labels": labels},
             "stringData": secret.data(values, env)} for secret in cred.secrets]
