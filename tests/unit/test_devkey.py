"""The kind cluster's sealing key: derived from the committed seed, the same on every machine,
and the key every committed dev secret opens with; no private key is in the tree."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from onecommit.secrets import SecretsError
from onecommit.secrets.catalog import sealing_cert_path
from onecommit.secrets.devkey import (
    SEED_FILE,
    Seed,
    check_committed_cert,
    derive,
    derive_key,
    main,
)
from onecommit.secrets.sealing import load_private_key, unseal_sealed_secret
from onecommit.settings import PROJECT_ROOT

SEED = Seed.load()


@pytest.fixture(scope="module")
def dev_key() -> tuple[bytes, bytes]:
    return derive(SEED)


def test_the_derivation_is_deterministic(dev_key: tuple[bytes, bytes]) -> None:
    assert derive(SEED) == dev_key
    key = load_private_key(dev_key[0])
    assert key.key_size == SEED.bits
    assert key.private_numbers().public_numbers.e == 65537


def test_another_seed_gives_another_key() -> None:
    other = Seed(SEED.env, SEED.seed + " (changed)", 1024, SEED.common_name, SEED.not_before,
                 SEED.valid_days)
    assert derive_key(other).private_numbers().p != derive_key(SEED).private_numbers().p


def test_the_committed_certificate_is_the_derived_one(dev_key: tuple[bytes, bytes]) -> None:
    check_committed_cert(PROJECT_ROOT, SEED)
    cert = x509.load_pem_x509_certificate(sealing_cert_path(PROJECT_ROOT, SEED.env).read_bytes())
    assert cert == x509.load_pem_x509_certificate(dev_key[1])
    assert cert.subject.rfc4514_string() == f"CN={SEED.common_name}"


def test_every_committed_dev_secret_opens_with_the_derived_key(
        dev_key: tuple[bytes, bytes]) -> None:
    sealed = sorted((PROJECT_ROOT / "gitops" / "envs" / SEED.env / "sealed").rglob("*.yaml"))
    assert len(sealed) >= 16
    for path in sealed:
        values = unseal_sealed_secret(yaml.safe_load(path.read_text()), dev_key[0])
        assert values, path
        assert all(values.values()), path


def test_no_other_env_opens_with_it(dev_key: tuple[bytes, bytes]) -> None:
    path = PROJECT_ROOT / "gitops/envs/prod/sealed/gateway-admin-token.yaml"
    with pytest.raises(SecretsError, match="wrong key"):
        unseal_sealed_secret(yaml.safe_load(path.read_text()), dev_key[0])


def test_a_changed_seed_without_resealing_is_refused(tmp_path: Path) -> None:
    (tmp_path / "kind").mkdir()
    seed_file = tmp_path / SEED_FILE
    seed_file.write_text((PROJECT_ROOT / SEED_FILE).read_text().replace(
        f"seed: {SEED.seed}", f"seed: {SEED.seed} 2"))
    cert = sealing_cert_path(tmp_path, SEED.env)
    cert.parent.mkdir(parents=True)
    shutil.copy(sealing_cert_path(PROJECT_ROOT, SEED.env), cert)
    with pytest.raises(SecretsError, match=r"is not the certificate of the key .* re-seal dev"):
        check_committed_cert(tmp_path, Seed.load(tmp_path))
    assert main(["secret", "--root", str(tmp_path), "--out", str(tmp_path / "key.yaml")]) == 1
    assert not (tmp_path / "key.yaml").exists()


def test_the_key_secret_is_written_owner_only(tmp_path: Path,
                                              dev_key: tuple[bytes, bytes]) -> None:
    out = tmp_path / "state" / "key.yaml"
    assert main(["secret", "--namespace", "sealed-secrets", "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    secret = yaml.safe_load(out.read_text())
    assert secret["metadata"]["namespace"] == "sealed-secrets"
    assert secret["type"] == "kubernetes.io/tls"


def test_a_broken_seed_file_is_one_line(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "kind").mkdir()
    (tmp_path / SEED_FILE).write_text("env: dev\n")
    assert main(["cert", "--root", str(tmp_path), "--out", str(tmp_path / "c.pem")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "cannot read the dev key seed" in line
    assert "it needs env, seed, bits" in line
