"""The cluster profile's cert-manager chain: schema-valid, and wired end to end (self-signed →
CA Certificate → CA ClusterIssuer → each env's ingress certificate, renewed before expiry), with
one issuer file (kind applies it too) and one way for the ingress to get its certificate."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from onecommit.lint.checks import Schemas
from onecommit.platform import kind
from onecommit.settings import PROJECT_ROOT, Settings

ISSUERS = PROJECT_ROOT / "baseline" / "cert-manager" / "issuers.yaml"
ENVS = sorted(p.parent.name for p in (PROJECT_ROOT / "gitops" / "envs").glob("*/certificates.yaml"))
_HOURS = re.compile(r"^(\d+)h$")


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def named(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs(ISSUERS) if d["kind"] == kind}


def hours(value: str) -> int:
    match = _HOURS.match(value)
    assert match, f"{value!r}: write durations in hours"
    return int(match.group(1))


@pytest.fixture(scope="module")
def schemas() -> Schemas:
    return Schemas.load(Settings().shared_dir)


def test_every_object_matches_the_cert_manager_crds(schemas: Schemas) -> None:
    files = [ISSUERS, *(PROJECT_ROOT / "gitops" / "envs" / env / "certificates.yaml"
                        for env in ENVS)]
    for path in files:
        for doc in docs(path):
            assert schemas.validate(doc) == [], f"{path}: {doc['kind']}/{doc['metadata']['name']}"


def test_the_ca_is_self_signed_and_backs_the_ca_issuer() -> None:
    ca = named("Certificate")["onecommit-ca"]["spec"]
    issuers = named("ClusterIssuer")
    assert ca["isCA"] is True
    assert "selfSigned" in issuers[ca["issuerRef"]["name"]]["spec"]
    assert issuers["onecommit-ca"]["spec"]["ca"]["secretName"] == ca["secretName"]
    assert 0 < hours(ca["renewBefore"]) < hours(ca["duration"])


@pytest.mark.parametrize("env", ENVS)
def test_each_ingress_certificate_comes_from_the_ca_and_matches_the_chart(env: str) -> None:
    values = yaml.safe_load((PROJECT_ROOT / "charts" / "gateway" / "values.yaml").read_text())
    env_values = yaml.safe_load(
        (PROJECT_ROOT / "gitops" / "envs" / env / "values" / "gateway.yaml").read_text())
    ingress = {**values["ingress"], **env_values.get("ingress", {})}
    (cert,) = docs(PROJECT_ROOT / "gitops" / "envs" / env / "certificates.yaml")
    spec = cert["spec"]
    assert cert["metadata"]["namespace"] == f"onecommit-{env}"
    assert spec["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer",
                                 "name": "onecommit-ca"}
    assert "ca" in named("ClusterIssuer")[spec["issuerRef"]["name"]]["spec"]
    assert spec["secretName"] == ingress["tlsSecretName"]
    assert spec["dnsNames"] == [ingress["host"]]
    assert 0 < hours(spec["renewBefore"]) < hours(spec["duration"])


def test_the_ingress_is_issued_by_the_certificate_only() -> None:
    template = (PROJECT_ROOT / "charts" / "gateway" / "templates" / "ingress.yaml").read_text()
    assert "cert-manager.io/" not in template
    assert PROJECT_ROOT / kind.ISSUERS == ISSUERS
