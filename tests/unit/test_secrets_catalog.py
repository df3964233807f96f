"""The credentials and the Secrets they become: derived consistently, and committed for every
env in the controller's wire format."""

from __future__ import annotations

import base64
import json
import struct
from urllib.parse import unquote, urlsplit

import jsonschema
import pytest
import yaml
from cryptography import x509

from onecommit.secrets.catalog import (
    CREDENTIALS,
    check_values,
    namespace,
    plaintext_secrets,
    sealed_path,
    sealing_cert_path,
)
from onecommit.settings import PROJECT_ROOT, Settings

ENVS = ("dev", "prod")
SEALED_SECRET_CRD = "crds/sealed-secrets/bitnami.com_sealedsecrets.yaml"


@pytest.mark.parametrize("name", sorted(CREDENTIALS))
def test_generated_values_have_exactly_the_credential_keys(name: str) -> None:
    cred = CREDENTIALS[name]
    for env in ENVS:
        values = cred.generate(env)
        assert check_values(cred, values, "generated") == values
    assert cred.generate("dev") != cred.generate("dev")


def _database(password: str) -> dict[str, dict[str, str]]:
    values = {"host": "db.example", "postgres-password": password,
              "mlflow-password": password + "-m", "serving-password": password + "-s"}
    return {s["metadata"]["name"]: s["stringData"]
            for s in plaintext_secrets(CREDENTIALS["database"], "dev", values)}


def test_one_database_password_becomes_the_same_value_everywhere() -> None:
    password = "p@ss'w:rd/%"
    secrets = _database(password)
    assert secrets["airflow-postgresql"] == {"postgres-password": password}
    for name, key, user, database in (("mlflow-backend", "uri", "mlflow", "mlflow"),
                                      ("serving-db", "url", "serving", "serving"),
                                      ("airflow-metadata", "connection", "postgres", "postgres")):
        url = urlsplit(secrets[name][key])
        assert (url.username, url.hostname, url.port, url.path) == (user, "db.example", 5432,
                                                                   f"/{database}")
        expected = password if user == "postgres" else f"{password}-{user[0]}"
        assert unquote(url.password or "") == expected
    assert secrets["serving-db"]["url"].startswith("postgresql+psycopg://")
    script = secrets["onecommit-postgresql-init"]["databases.sql"]
    assert "CREATE ROLE mlflow LOGIN PASSWORD 'p@ss''w:rd/%-m';" in script
    assert "CREATE DATABASE serving OWNER serving;" in script


def test_the_airflow_api_credential_is_what_the_job_and_the_auth_manager_read() -> None:
    (secret,) = plaintext_secrets(CREDENTIALS["airflow-api-credentials"], "prod",
                                  {"password": "pw"})
    data = secret["stringData"]
    assert (data["username"], data["password"]) == ("onecommit", "pw")
    assert json.loads(data["passwords.json"]) == {"onecommit": "pw"}
    fernet = base64.urlsafe_b64decode(CREDENTIALS["airflow-keys"].generate("dev")["fernet-key"])
    assert len(fernet) == 32


@pytest.fixture(scope="module")
def crd_schema() -> object:
    crd = yaml.safe_load((Settings().shared_dir / SEALED_SECRET_CRD).read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("env", ENVS)
def test_the_tree_holds_every_secret_of_every_credential_sealed_for_its_env(
        env: str, crd_schema: object) -> None:
    cert = x509.load_pem_x509_certificate(sealing_cert_path(PROJECT_ROOT, env).read_bytes())
    key_bytes = cert.public_key().key_size // 8  # type: ignore[union-attr]
    for cred in CREDENTIALS.values():
        for secret in cred.secrets:
            path = sealed_path(PROJECT_ROOT, env, secret.name, secret.layer)
            manifest = yaml.safe_load(path.read_text())
            jsonschema.validate(manifest, crd_schema)
            assert manifest["metadata"] == {"name": secret.name,
                                            "namespace": namespace(env, secret.layer)}, path
            expected = secret.data(cred.generate(env), env)
            assert set(manifest["spec"]["encryptedData"]) == set(expected), path
            for value in manifest["spec"]["encryptedData"].values():
                blob = base64.b64decode(value)
                # 2-byte length, RSA-OAEP of the session key for this env's key, AES-GCM body.
                assert struct.unpack(">H", blob[:2]) == (key_bytes,)
                assert len(blob) > 2 + key_bytes + 16
