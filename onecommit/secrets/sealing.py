"""Seal Kubernetes Secrets for the Bitnami sealed-secrets controller without kubeseal.

The wire format and scope labels mirror the controller's `pkg/crypto` and
`pkg/apis/sealedsecrets/v1alpha1`, so a stock controller unseals what this module writes and
SealedSecrets written by kubeseal can be verified and re-sealed here.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import enum
import os
import struct
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from onecommit.files import write_all
from onecommit.secrets import SecretsError
from onecommit.secrets.catalog import SEALING_CERT

API_VERSION = "bitnami.com/v1alpha1"
KIND = "SealedSecret"
NAMESPACE_WIDE_ANNOTATION = "sealedsecrets.bitnami.com/namespace-wide"
CLUSTER_WIDE_ANNOTATION = "sealedsecrets.bitnami.com/cluster-wide"
# kubectl and kubecfg keep a full copy of the applied object here: sealing it would leak values.
LAST_APPLIED_ANNOTATIONS = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "kubecfg.ksonnet.io/last-applied-configuration",
)
# Never copied onto the template: the scope ones are rewritten for the requested scope.
TEMPLATE_DROPPED_ANNOTATIONS = (
    *LAST_APPLIED_ANNOTATIONS,
    NAMESPACE_WIDE_ANNOTATION,
    CLUSTER_WIDE_ANNOTATION,
)
SESSION_KEY_BYTES = 32
# Every session key encrypts exactly one value, so a fixed nonce never repeats under a key.
ZERO_NONCE = bytes(12)
RSA_LENGTH_PREFIX = struct.Struct(">H")
YAML_SUFFIXES = (".yaml", ".yml")
# Longer single words are written on a line of their own (see `dump_manifests`).
FOLD_AT = 80


class SealingError(SecretsError):
    """Sealing or unsealing failed; the message names the file, object and key when known."""


class Scope(enum.Enum):
    """Where the controller may unseal a value: the scope is bound into the OAEP label."""

    STRICT = "strict"
    NAMESPACE_WIDE = "namespace-wide"
    CLUSTER_WIDE = "cluster-wide"

    def label(self, namespace: str, name: str) -> bytes:
        """The OAEP label; a mismatch at unseal time makes RSA decryption fail."""
        if self is Scope.CLUSTER_WIDE:
            return b""
        if self is Scope.NAMESPACE_WIDE:
            return namespace.encode()
        return f"{namespace}/{name}".encode()

    def annotations(self) -> dict[str, str]:
        """Annotations that tell the controller which label to use (none for strict)."""
        if self is Scope.CLUSTER_WIDE:
            return {CLUSTER_WIDE_ANNOTATION: "true"}
        if self is Scope.NAMESPACE_WIDE:
            return {NAMESPACE_WIDE_ANNOTATION: "true"}
        return {}

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, Any]) -> Scope:
        """Read the scope back exactly like the controller: cluster-wide wins, default strict."""
        if annotations.get(CLUSTER_WIDE_ANNOTATION) == "true":
            return cls.CLUSTER_WIDE
        if annotations.get(NAMESPACE_WIDE_ANNOTATION) == "true":
            return cls.NAMESPACE_WIDE
        return cls.STRICT


def _oaep(label: bytes) -> padding.OAEP:
    """RSA-OAEP as Go's rsa.EncryptOAEP(sha256.New(), ...): SHA-256 for both hash and MGF1."""
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label)


def seal_value(public_key: rsa.RSAPublicKey, value: bytes, label: bytes) -> str:
    """Hybrid-encrypt one value: len(rsa) ‖ RSA-OAEP(session key) ‖ AES-GCM(value), base64."""
    session_key = os.urandom(SESSION_KEY_BYTES)
    wrapped = public_key.encrypt(session_key, _oaep(label))
    body = AESGCM(session_key).encrypt(ZERO_NONCE, value, None)
    return base64.b64encode(RSA_LENGTH_PREFIX.pack(len(wrapped)) + wrapped + body).decode()


def _split_sealed(sealed: str) -> tuple[bytes, bytes]:
    """The RSA-wrapped session key and the AES-GCM body; malformed input is a SealingError."""
    try:
        blob = base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SealingError("sealed value is not valid base64") from exc
    if len(blob) < RSA_LENGTH_PREFIX.size:
        raise SealingError("sealed value is too short")
    (rsa_length,) = RSA_LENGTH_PREFIX.unpack_from(blob)
    rest = blob[RSA_LENGTH_PREFIX.size :]
    if len(rest) < rsa_length:
        raise SealingError("sealed value is too short for its RSA length prefix")
    return rest[:rsa_length], rest[rsa_length:]


def unseal_value(private_key: rsa.RSAPrivateKey, sealed: str, label: bytes) -> bytes:
    """Reverse `seal_value`; any wrong key, wrong label or modified byte raises SealingError."""
    wrapped, body = _split_sealed(sealed)
    try:
        session_key = private_key.decrypt(wrapped, _oaep(label))
        return AESGCM(session_key).decrypt(ZERO_NONCE, body, None)
    except (ValueError, InvalidTag) as exc:
        raise SealingError(
            "cannot unseal: wrong key, wrong scope (namespace/name) or tampered ciphertext"
        ) from exc


def load_public_key_from_cert(cert_pem: bytes) -> rsa.RSAPublicKey:
    """The controller publishes its sealing key only as an X.509 PEM certificate."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise SealingError("controller certificate is not a PEM X.509 certificate") from exc
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SealingError("controller certificate does not hold an RSA public key")
    return key


def load_private_key(private_key_pem: bytes) -> rsa.RSAPrivateKey:
    """Load the controller's tls.key (PKCS#1 or PKCS#8 PEM, unencrypted)."""
    try:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SealingError("private key is not an unencrypted PEM key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SealingError("private key is not an RSA key")
    return key


def controller_certificate(key: rsa.RSAPrivateKey, common_name: str,
                           not_before: datetime.datetime, valid_days: int,
                           serial: int) -> x509.Certificate:
    """A self-signed certificate shaped like the controller's own for this key. RSA PKCS#1 v1.5
    signatures are deterministic, so the same inputs give the same certificate, byte for byte."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )


def pem_pair(key: rsa.RSAPrivateKey, cert: x509.Certificate) -> tuple[bytes, bytes]:
    """(PKCS#1 key PEM, certificate PEM): the formats of the controller's `kubernetes.io/tls`
    key secret."""
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def generate_controller_keypair(
    common_name: str, *, key_size: int = 4096, valid_days: int = 3650
) -> tuple[bytes, bytes]:
    """A fresh key pair shaped like the controller's own, for tests and for bringing our own key:
    (PKCS#1 key PEM, self-signed certificate PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    now = datetime.datetime.now(datetime.UTC)
    return pem_pair(key, controller_certificate(key, common_name, now, valid_days,
                                                x509.random_serial_number()))


def _key_usage() -> x509.KeyUsage:
    """Same usages as the controller's certificate: key encipherment and digital signature."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def is_plaintext_secret(doc: object) -> bool:
    """True for a core v1 Secret, so writers can refuse to put plaintext into git."""
    if not isinstance(doc, Mapping):
        return False
    return doc.get("apiVersion") == "v1" and doc.get("kind") == "Secret"


def is_sealed_secret(doc: object) -> bool:
    """True for a SealedSecret document of the controller's API version."""
    if not isinstance(doc, Mapping):
        return False
    return doc.get("apiVersion") == API_VERSION and doc.get("kind") == KIND


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    """A manifest field that must be a mapping; absent or null reads as empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SealingError(f"{what} must be a mapping")
    return value


def _identity(metadata: Mapping[str, Any], scope: Scope) -> tuple[str, str]:
    """Name and namespace; the namespace is part of the label unless sealing cluster-wide."""
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise SealingError("metadata.name is missing")
    namespace = metadata.get("namespace", "")
    if not isinstance(namespace, str):
        raise SealingError(f"{name}: metadata.namespace must be a string")
    if scope is not Scope.CLUSTER_WIDE and not namespace:
        raise SealingError(f"{name}: must declare a namespace unless sealed cluster-wide")
    return name, namespace


def _plain_values(secret: Mapping[str, Any], where: str) -> dict[str, bytes]:
    """All values as bytes; stringData wins over data for the same key, as in the API server."""
    values: dict[str, bytes] = {}
    for key, encoded in _mapping(secret.get("data"), f"{where}: data").items():
        try:
            values[key] = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise SealingError(f"{where}: data key {key!r} is not valid base64") from exc
    for key, text in _mapping(secret.get("stringData"), f"{where}: stringData").items():
        if not isinstance(text, str):
            raise SealingError(f"{where}: stringData key {key!r} must be a string")
        values[key] = text.encode()
    return values


def _template_metadata(metadata: Mapping[str, Any], scope: Scope) -> dict[str, Any]:
    """What the controller copies onto the Secret it creates, minus leaking annotations."""
    annotations = {
        key: value
        for key, value in _mapping(metadata.get("annotations"), "metadata.annotations").items()
        if key not in TEMPLATE_DROPPED_ANNOTATIONS
    }
    annotations.update(scope.annotations())
    template = {key: metadata[key] for key in ("name", "namespace", "labels") if metadata.get(key)}
    if annotations:
        template["annotations"] = annotations
    return template


def _template(
    secret: Mapping[str, Any], metadata: Mapping[str, Any], scope: Scope
) -> dict[str, Any]:
    """The Secret the controller will create, minus its values; type defaults like the API's."""
    template: dict[str, Any] = {
        "metadata": _template_metadata(metadata, scope),
        "type": secret.get("type", "Opaque"),
    }
    if "immutable" in secret:
        template["immutable"] = secret["immutable"]
    return template


def _sealed_metadata(name: str, namespace: str, scope: Scope) -> dict[str, Any]:
    """The SealedSecret's own metadata: the controller derives the unseal label from it."""
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if scope.annotations():
        metadata["annotations"] = scope.annotations()
    return metadata


def seal_secret(
    secret_manifest: Mapping[str, Any], cert_pem: bytes, scope: Scope
) -> dict[str, Any]:
    """Turn a v1 Secret (data and/or stringData) into a SealedSecret safe to commit."""
    if not is_plaintext_secret(secret_manifest):
        raise SealingError("expected an apiVersion v1, kind Secret manifest")
    metadata = _mapping(secret_manifest.get("metadata"), "metadata")
    name, namespace = _identity(metadata, scope)
    values = _plain_values(secret_manifest, f"Secret {namespace}/{name}")
    public_key = load_public_key_from_cert(cert_pem)
    label = scope.label(namespace, name)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": _sealed_metadata(name, namespace, scope),
        "spec": {
            "encryptedData": {key: seal_value(public_key, v, label) for key, v in values.items()},
            "template": _template(secret_manifest, metadata, scope),
        },
    }


def _sealed_identity(sealed: Mapping[str, Any]) -> tuple[str, bytes]:
    """Display name and OAEP label from the SealedSecret's own metadata, as the controller does."""
    if not is_sealed_secret(sealed):
        raise SealingError(f"expected apiVersion {API_VERSION}, kind {KIND}")
    metadata = _mapping(sealed.get("metadata"), "metadata")
    scope = Scope.from_annotations(_mapping(metadata.get("annotations"), "metadata.annotations"))
    name, namespace = _identity(metadata, scope)
    return f"SealedSecret {namespace}/{name}", scope.label(namespace, name)


def _unseal_values(sealed: Mapping[str, Any], private_key: rsa.RSAPrivateKey) -> dict[str, bytes]:
    """Every encryptedData value in the clear; the error names the object and the key."""
    where, label = _sealed_identity(sealed)
    spec = _mapping(sealed.get("spec"), f"{where}: spec")
    values: dict[str, bytes] = {}
    for key, value in _mapping(spec.get("encryptedData"), f"{where}: encryptedData").items():
        if not isinstance(value, str):
            raise SealingError(f"{where}: key {key!r}: sealed value must be a string")
        try:
            values[key] = unseal_value(private_key, value, label)
        except SealingError as exc:
            raise SealingError(f"{where}: key {key!r}: {exc}") from exc
    return values


def unseal_sealed_secret(
    sealed_manifest: Mapping[str, Any], private_key_pem: bytes
) -> dict[str, bytes]:
    """The plain values of a SealedSecret, to verify a sealing or recover from a lost Secret."""
    return _unseal_values(sealed_manifest, load_private_key(private_key_pem))


def _resealed_doc(
    doc: Mapping[str, Any], old_key: rsa.RSAPrivateKey, new_key: rsa.RSAPublicKey
) -> dict[str, Any]:
    """The same document with every value re-encrypted for the new key, same scope label."""
    values = _unseal_values(doc, old_key)
    _, label = _sealed_identity(doc)
    resealed = copy.deepcopy(dict(doc))
    resealed["spec"]["encryptedData"] = {
        key: seal_value(new_key, value, label) for key, value in values.items()
    }
    return resealed


def _resealed_text(
    path: Path, old_key: rsa.RSAPrivateKey, new_key: rsa.RSAPublicKey
) -> str | None:
    """New file content, or None when the file holds no SealedSecret."""
    text = path.read_text(encoding="utf-8")
    # Cheap pre-filter: trees also hold Helm templates, which are not YAML until rendered.
    if KIND not in text:
        return None
    try:
        docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise SealingError(f"{path}: not valid YAML: {exc}") from exc
    if not any(is_sealed_secret(doc) for doc in docs):
        return None
    try:
        resealed = [_resealed_doc(d, old_key, new_key) if is_sealed_secret(d) else d for d in docs]
    except SealingError as exc:
        raise SealingError(f"{path}: {exc}") from exc
    return dump_manifests(resealed)


class _ManifestDumper(yaml.SafeDumper):
    """Writes a long word (a sealed value) as a folded block scalar on a line of its own: the
    line then has no space, which yamllint's line-length rule allows at any length."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = ">" if len(value) > FOLD_AT and not any(c.isspace() for c in value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ManifestDumper.add_representer(str, _represent_str)


def dump_manifests(docs: Iterable[Mapping[str, Any]]) -> str:
    """YAML for manifests holding sealed values, lint-clean and in the documents' key order."""
    return yaml.dump_all([dict(doc) for doc in docs], Dumper=_ManifestDumper, sort_keys=False)


def _files(paths: Iterable[Path], wanted: Callable[[Path], bool]) -> list[Path]:
    """Wanted files given directly or below given directories, each once."""
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            found.update(dict.fromkeys(sorted(p for p in path.rglob("*")
                                              if p.is_file() and wanted(p))))
        elif path.is_file():
            found[path] = None
        else:
            raise SealingError(f"{path}: no such file or directory")
    return [p for p in found if wanted(p)]


def _records_of(path: Path, old_key: rsa.RSAPrivateKey) -> bool:
    """A certificate record (see catalog) of the old key: it names the key being replaced."""
    try:
        public = load_public_key_from_cert(path.read_bytes())
    except (OSError, SealingError):
        return False
    return public.public_numbers() == old_key.public_key().public_numbers()


def reseal_tree(paths: list[Path], old_private_key_pem: bytes, new_cert_pem: bytes) -> list[Path]:
    """Re-encrypt every SealedSecret under paths for a new controller key; all or nothing.

    Each value is unsealed with the old key first, so a value that cannot be verified (sealed
    for another key, tampered) aborts the run before any file is written. The certificate
    records of the old key are replaced by the new certificate. Returns the rewritten files.
    """
    old_key = load_private_key(old_private_key_pem)
    new_key = load_public_key_from_cert(new_cert_pem)
    planned = {path: _resealed_text(path, old_key, new_key)
               for path in _files(paths, lambda p: p.suffix in YAML_SUFFIXES)}
    contents = {path: text for path, text in planned.items() if text is not None}
    contents |= {path: new_cert_pem.decode()
                 for path in _files(paths, lambda p: p.name == SEALING_CERT)
                 if _records_of(path, old_key)}
    write_all(contents)
    return list(contents)
