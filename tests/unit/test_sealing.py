"""Sealing must stay byte-compatible with the sealed-secrets controller and fail loudly."""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from onecommit.secrets.catalog import SEALING_CERT
from onecommit.secrets.sealing import (
    CLUSTER_WIDE_ANNOTATION,
    NAMESPACE_WIDE_ANNOTATION,
    Scope,
    SealingError,
    generate_controller_keypair,
    is_plaintext_secret,
    load_private_key,
    load_public_key_from_cert,
    reseal_tree,
    seal_secret,
    seal_value,
    unseal_sealed_secret,
    unseal_value,
)


@dataclass(frozen=True)
class KeyPair:
    key_pem: bytes
    cert_pem: bytes

    @property
    def private(self) -> rsa.RSAPrivateKey:
        return load_private_key(self.key_pem)

    @property
    def public(self) -> rsa.RSAPublicKey:
        return load_public_key_from_cert(self.cert_pem)


def make_pair(common_name: str, key_size: int = 2048) -> KeyPair:
    return KeyPair(*generate_controller_keypair(common_name, key_size=key_size))


@pytest.fixture(scope="module")
def old() -> KeyPair:
    return make_pair("sealed-secret-old")


@pytest.fixture(scope="module")
def new() -> KeyPair:
    return make_pair("sealed-secret-new")


@pytest.fixture(scope="module")
def stranger() -> KeyPair:
    return make_pair("someone-elses-controller")


def random_values() -> list[bytes]:
    rng = random.Random(20240601)
    sizes = [0, 1, 2, 31, 32, 33, 255, 256, 4096, 65536]
    sizes += [rng.randrange(0, 2048) for _ in range(200 - len(sizes))]
    return [rng.randbytes(size) for size in sizes]


def secret(name: str = "db", namespace: str | None = "serving", **extra: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {"app": "gateway"}}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, **extra}


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


@pytest.mark.parametrize("scope", list(Scope))
def test_round_trip_random_values(old: KeyPair, scope: Scope) -> None:
    label = scope.label("serving", "db")
    private, public = old.private, old.public
    for value in random_values():
        assert unseal_value(private, seal_value(public, value, label), label) == value


@pytest.mark.parametrize("scope", list(Scope))
def test_manifest_round_trip_data_and_string_data(old: KeyPair, scope: Scope) -> None:
    manifest = secret(
        data={"password": b64(b"\x00\xffbinary"), "user": b64(b"overridden")},
        stringData={"user": "admin", "url": "postgres://db:5432/x"},
    )
    sealed = seal_secret(manifest, old.cert_pem, scope)
    assert unseal_sealed_secret(sealed, old.key_pem) == {
        "password": b"\x00\xffbinary",
        "user": b"admin",
        "url": b"postgres://db:5432/x",
    }


@pytest.mark.parametrize(
    ("sealed_for", "unsealed_as"),
    [
        (("serving", "db"), ("staging", "db")),
        (("serving", "db"), ("serving", "cache")),
        (("serving", "db"), ("serving/db", "")),
    ],
)
def test_strict_value_is_bound_to_namespace_and_name(
    old: KeyPair, sealed_for: tuple[str, str], unsealed_as: tuple[str, str]
) -> None:
    sealed = seal_value(old.public, b"hunter2", Scope.STRICT.label(*sealed_for))
    with pytest.raises(SealingError, match="wrong scope"):
        unseal_value(old.private, sealed, Scope.STRICT.label(*unsealed_as))


def test_namespace_wide_value_is_bound_to_namespace(old: KeyPair) -> None:
    scope = Scope.NAMESPACE_WIDE
    sealed = seal_value(old.public, b"hunter2", scope.label("serving", "db"))
    assert unseal_value(old.private, sealed, scope.label("serving", "renamed")) == b"hunter2"
    with pytest.raises(SealingError):
        unseal_value(old.private, sealed, scope.label("staging", "db"))


def test_moved_sealed_secret_names_object_and_key(old: KeyPair) -> None:
    sealed = seal_secret(secret(stringData={"token": "t"}), old.cert_pem, Scope.STRICT)
    sealed["metadata"]["namespace"] = "staging"
    with pytest.raises(SealingError, match=r"SealedSecret staging/db: key 'token'"):
        unseal_sealed_secret(sealed, old.key_pem)


def test_every_single_byte_flip_is_rejected(old: KeyPair) -> None:
    label = Scope.STRICT.label("serving", "db")
    blob = base64.b64decode(seal_value(old.public, b"short secret", label))
    private = old.private
    for position in range(len(blob)):
        tampered = bytearray(blob)
        tampered[position] ^= 0xFF
        with pytest.raises(SealingError):
            unseal_value(private, b64(bytes(tampered)), label)


def test_wrong_key_is_rejected(old: KeyPair, stranger: KeyPair) -> None:
    sealed = seal_value(stranger.public, b"value", b"")
    with pytest.raises(SealingError, match="wrong key"):
        unseal_value(old.private, sealed, b"")


@pytest.mark.parametrize(
    ("sealed", "message"),
    [
        ("", "too short"),
        ("not base64!", "base64"),
        (b64(b"\x01"), "too short"),
        (b64(b"\x01\x00" + bytes(255)), "too short"),
        (b64(b"\x00\x04abcd" + bytes(16)), "cannot unseal"),
    ],
)
def test_malformed_input_is_rejected(old: KeyPair, sealed: str, message: str) -> None:
    with pytest.raises(SealingError, match=message):
        unseal_value(old.private, sealed, b"")


@pytest.mark.parametrize("key_size", [2048, 4096])
def test_wire_format_matches_controller(old: KeyPair, key_size: int) -> None:
    pair = old if key_size == 2048 else make_pair("sealed-secret-4096", key_size=4096)
    label = b"serving/db"
    blob = base64.b64decode(seal_value(pair.public, b"plain value", label), validate=True)
    rsa_length = int.from_bytes(blob[:2], "big")
    assert rsa_length == key_size // 8
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label)
    session_key = pair.private.decrypt(blob[2 : 2 + rsa_length], oaep)
    assert len(session_key) == 32
    body = blob[2 + rsa_length :]
    assert AESGCM(session_key).decrypt(bytes(12), body, None) == b"plain value"
    assert len(body) == len(b"plain value") + 16


@pytest.mark.parametrize(
    ("scope", "label"),
    [(Scope.STRICT, b"serving/db"), (Scope.NAMESPACE_WIDE, b"serving"), (Scope.CLUSTER_WIDE, b"")],
)
def test_manifest_uses_controller_label(old: KeyPair, scope: Scope, label: bytes) -> None:
    sealed = seal_secret(secret(stringData={"k": "v"}), old.cert_pem, scope)
    assert scope.label("serving", "db") == label
    assert unseal_value(old.private, sealed["spec"]["encryptedData"]["k"], label) == b"v"


def test_each_value_gets_a_fresh_session_key(old: KeyPair) -> None:
    sealed = {seal_value(old.public, b"same", b"") for _ in range(5)}
    assert len(sealed) == 5


@pytest.mark.parametrize(
    ("scope", "annotations"),
    [
        (Scope.STRICT, {}),
        (Scope.NAMESPACE_WIDE, {NAMESPACE_WIDE_ANNOTATION: "true"}),
        (Scope.CLUSTER_WIDE, {CLUSTER_WIDE_ANNOTATION: "true"}),
    ],
)
def test_manifest_shape(old: KeyPair, scope: Scope, annotations: dict[str, str]) -> None:
    manifest = secret(type="kubernetes.io/basic-auth", stringData={"username": "u"})
    manifest["metadata"]["annotations"] = {
        "team": "ml",
        "kubectl.kubernetes.io/last-applied-configuration": '{"stringData":{"username":"u"}}',
        CLUSTER_WIDE_ANNOTATION: "true",
    }
    sealed = seal_secret(manifest, old.cert_pem, scope)
    assert sealed["apiVersion"] == "bitnami.com/v1alpha1"
    assert sealed["kind"] == "SealedSecret"
    assert sealed["metadata"]["name"] == "db"
    assert sealed["metadata"]["namespace"] == "serving"
    assert sealed["metadata"].get("annotations", {}) == annotations
    template = sealed["spec"]["template"]
    assert template["type"] == "kubernetes.io/basic-auth"
    assert template["metadata"] == {
        "name": "db",
        "namespace": "serving",
        "labels": {"app": "gateway"},
        "annotations": {"team": "ml", **annotations},
    }
    assert set(sealed["spec"]["encryptedData"]) == {"username"}
    assert "stringData" not in sealed["spec"]
    assert "data" not in sealed["spec"]


def test_default_type_is_opaque_and_immutable_is_kept(old: KeyPair) -> None:
    sealed = seal_secret(secret(data={}, immutable=True), old.cert_pem, Scope.STRICT)
    assert sealed["spec"]["template"]["type"] == "Opaque"
    assert sealed["spec"]["template"]["immutable"] is True
    assert sealed["spec"]["encryptedData"] == {}


def test_namespace_is_required_unless_cluster_wide(old: KeyPair) -> None:
    manifest = secret(namespace=None, stringData={"k": "v"})
    for scope in (Scope.STRICT, Scope.NAMESPACE_WIDE):
        with pytest.raises(SealingError, match="namespace"):
            seal_secret(manifest, old.cert_pem, scope)
    sealed = seal_secret(manifest, old.cert_pem, Scope.CLUSTER_WIDE)
    assert "namespace" not in sealed["metadata"]
    assert unseal_sealed_secret(sealed, old.key_pem) == {"k": b"v"}


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, "kind Secret"),
        (secret(data={"k": "%%%"}), "data key 'k' is not valid base64"),
        (secret(stringData={"k": 5}), "stringData key 'k' must be a string"),
        (secret(name=""), "metadata.name"),
    ],
)
def test_bad_secret_manifest_is_refused(
    old: KeyPair, manifest: dict[str, Any], message: str
) -> None:
    with pytest.raises(SealingError, match=message):
        seal_secret(manifest, old.cert_pem, Scope.STRICT)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"apiVersion": "v1", "kind": "Secret"}, True),
        ({"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret"}, False),
        ({"apiVersion": "v1", "kind": "ConfigMap"}, False),
        (None, False),
        (["Secret"], False),
    ],
)
def test_is_plaintext_secret(doc: object, expected: bool) -> None:
    assert is_plaintext_secret(doc) is expected


def test_bad_key_material_is_refused(old: KeyPair) -> None:
    with pytest.raises(SealingError, match=r"X\.509"):
        load_public_key_from_cert(b"not a cert")
    with pytest.raises(SealingError, match="PEM"):
        load_private_key(old.cert_pem)


def test_generated_certificate_is_self_signed_with_common_name(old: KeyPair) -> None:
    cert = x509.load_pem_x509_certificate(old.cert_pem)
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "CN=sealed-secret-old"
    assert old.key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")


def sealed_doc(pair: KeyPair, name: str, scope: Scope, **values: str) -> dict[str, Any]:
    return seal_secret(secret(name=name, stringData=values), pair.cert_pem, scope)


def write_tree(root: Path, pair: KeyPair) -> dict[Path, list[dict[str, Any]]]:
    """A GitOps-like tree: single and multi-doc files, a plain manifest and a Helm template."""
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    docs = {
        root / "db.yaml": [sealed_doc(pair, "db", Scope.STRICT, password="p1", user="u1")],
        root / "apps" / "gateway" / "secrets.yml": [
            sealed_doc(pair, "api", Scope.NAMESPACE_WIDE, token="t1"),
            config_map,
            sealed_doc(pair, "registry", Scope.CLUSTER_WIDE, auth="a1"),
        ],
        root / "apps" / "config.yaml": [config_map],
    }
    for path, content in docs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(content, sort_keys=False))
    template = root / "charts" / "templates" / "secret.yaml"
    template.parent.mkdir(parents=True)
    template.write_text("kind: Secret\nname: {{ .Values.name }}\n")
    return docs


def snapshot(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_reseal_changes_ciphertexts_and_keeps_plaintexts(
    tmp_path: Path, old: KeyPair, new: KeyPair
) -> None:
    docs = write_tree(tmp_path, old)
    (tmp_path / "db.yaml").chmod(0o640)
    before = snapshot(tmp_path)

    rewritten = reseal_tree([tmp_path], old.key_pem, new.cert_pem)

    assert sorted(rewritten) == sorted(p for p in docs if p.name != "config.yaml")
    after = snapshot(tmp_path)
    assert set(after) == set(before)
    assert [p for p in after if after[p] != before[p]] == sorted(rewritten)
    assert (tmp_path / "db.yaml").stat().st_mode & 0o777 == 0o640
    for path in rewritten:
        resealed = list(yaml.safe_load_all(path.read_text()))
        assert [d["kind"] for d in resealed] == [d["kind"] for d in docs[path]]
        for original, doc in zip(docs[path], resealed, strict=True):
            if doc["kind"] != "SealedSecret":
                assert doc == original
                continue
            assert doc["metadata"] == original["metadata"]
            assert doc["spec"]["template"] == original["spec"]["template"]
            old_data, new_data = original["spec"]["encryptedData"], doc["spec"]["encryptedData"]
            assert all(old_data[key] != new_data[key] for key in old_data)
            plain = unseal_sealed_secret(original, old.key_pem)
            assert unseal_sealed_secret(doc, new.key_pem) == plain
            with pytest.raises(SealingError):
                unseal_sealed_secret(doc, old.key_pem)


def test_reseal_writes_nothing_when_one_object_fails(
    tmp_path: Path, old: KeyPair, new: KeyPair, stranger: KeyPair
) -> None:
    write_tree(tmp_path, old)
    bad = tmp_path / "zz-foreign.yaml"
    bad.write_text(
        yaml.safe_dump_all(
            [
                sealed_doc(old, "fine", Scope.STRICT, k="v"),
                sealed_doc(stranger, "foreign", Scope.STRICT, k="v"),
            ]
        )
    )
    before = snapshot(tmp_path)

    with pytest.raises(SealingError, match=r"zz-foreign\.yaml: SealedSecret serving/foreign"):
        reseal_tree([tmp_path], old.key_pem, new.cert_pem)

    assert snapshot(tmp_path) == before


def test_reseal_accepts_files_and_refuses_missing_paths(
    tmp_path: Path, old: KeyPair, new: KeyPair
) -> None:
    write_tree(tmp_path, old)
    only = tmp_path / "db.yaml"
    assert reseal_tree([only, only], old.key_pem, new.cert_pem) == [only]
    assert unseal_sealed_secret(yaml.safe_load(only.read_text()), new.key_pem) == {
        "password": b"p1",
        "user": b"u1",
    }
    with pytest.raises(SealingError, match="no such file"):
        reseal_tree([tmp_path / "missing"], old.key_pem, new.cert_pem)


def test_reseal_replaces_the_certificate_records_of_the_old_key(
    tmp_path: Path, old: KeyPair, new: KeyPair, stranger: KeyPair
) -> None:
    write_tree(tmp_path, old)
    ours, theirs = tmp_path / "dev" / SEALING_CERT, tmp_path / "prod" / SEALING_CERT
    for path, pair in ((ours, old), (theirs, stranger)):
        path.parent.mkdir()
        path.write_bytes(pair.cert_pem)

    rewritten = reseal_tree([tmp_path], old.key_pem, new.cert_pem)

    assert ours in rewritten
    assert theirs not in rewritten
    assert ours.read_bytes() == new.cert_pem
    assert theirs.read_bytes() == stranger.cert_pem
