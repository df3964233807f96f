"""`invoke lint` refuses credentials in tracked files: plaintext Secrets, private keys and
token-looking strings; sealed manifests and untracked files pass."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from onecommit.secrets.manifests import seal_tree
from onecommit.secrets.sealing import generate_controller_keypair
from tests.lint.test_lint_bites import lint_python, run_lint  # noqa: F401  (fixture)

PLAINTEXT_SECRET = {"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "db", "namespace": "onecommit-dev"},
                    "stringData": {"password": "hunter2"}}


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def findings(lint_python: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:  # noqa: F811
    """One lint run over a small git tree with one planted credential of each kind."""
    root = tmp_path_factory.mktemp("tree")
    key_pem, cert_pem = generate_controller_keypair("planted", key_size=2048)
    files = {
        "gitops/envs/dev/model.yaml": "model: m\n",
        "gitops/envs/dev/values/db.yaml": yaml.safe_dump(PLAINTEXT_SECRET),
        "docs/example-secret.yaml": yaml.safe_dump(PLAINTEXT_SECRET),
        "deploy/tls.key": key_pem.decode(),
        "deploy/app.env": f"GATEWAY_ADMIN_TOKEN={secrets.token_urlsafe(32)}\n",
        "notes.md": f"ask AWS for key {'AKIA' + 'Q' * 16} again\n",
        "untracked.key": key_pem.decode(),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "cert.pem").write_bytes(cert_pem)
    environ = {"ONECOMMIT_SECRET_DEV_GATEWAY_ADMIN_TOKEN_TOKEN": secrets.token_urlsafe(32)}
    seal_tree(root, root / "absent.yaml", root / "cert.pem", None, environ)
    git(root, "init", "-q")
    git(root, "add", *[n for n in files if n != "untracked.key"],
        "cert.pem", "gitops/envs/dev/sealed/gateway-admin-token.yaml")
    result = run_lint(lint_python, root)
    assert result.returncode == 1, result.stderr
    return result.stdout.splitlines()


def found(findings: list[str], file: str, words: str) -> bool:
    return any(line.startswith(f"{file}: ") and words in line for line in findings)


def test_plaintext_secret_is_caught_inside_and_outside_the_manifest_dirs(
        findings: list[str]) -> None:
    assert found(findings, "gitops/envs/dev/values/db.yaml", "Secret/db: plaintext Secret")
    assert found(findings, "docs/example-secret.yaml", "Secret/db: plaintext Secret")


def test_private_key_is_caught(findings: list[str]) -> None:
    assert found(findings, "deploy/tls.key", "line 1: private key in a tracked file")


def test_token_looking_strings_are_caught(findings: list[str]) -> None:
    assert found(findings, "deploy/app.env", "line 1: credential-looking value")
    assert found(findings, "notes.md", "line 1: AWS access key id")


def test_findings_never_print_the_credential(findings: list[str]) -> None:
    assert not any("AKIAQQ" in line or "hunter2" in line for line in findings)


def test_sealed_manifests_certificates_and_untracked_files_pass(findings: list[str]) -> None:
    passing = ("gitops/envs/dev/sealed/", "cert.pem", "untracked.key")
    assert not any(line.startswith(passing) for line in findings), findings
