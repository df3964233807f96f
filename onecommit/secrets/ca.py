"""The local profile's internal CA: a CA and leaf certificates for the gateway and the UIs.

The files live in `<state dir>/tls/` (`<name>.crt`, `<name>.key`, all 0600 in a 0700 directory).
`ensure_certs` is idempotent: it issues what is missing, renews a leaf that expires within
`RENEW_BEFORE` (like cert-manager's renewBefore on clusters), and re-issues every leaf when the CA
is replaced. Keys are ECDSA P-256. The CA carries critical name constraints: it can vouch for the
leaves' hosts only, so its key, if it leaked, could not impersonate any other site to a client
that trusts it (a CA from before, or for another host, is replaced).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from onecommit.files import PRIVATE_DIR, PRIVATE_FILE, write_all
from onecommit.secrets import SecretsError
from onecommit.settings import Settings

CA_NAME = "ca"
# Leaves for the services a browser or client reaches: the gateway, and the MLflow and Airflow UIs.
LEAVES = ("gateway", "mlflow", "airflow")
CA_VALIDITY = datetime.timedelta(days=5 * 365)
LEAF_VALIDITY = datetime.timedelta(days=90)
RENEW_BEFORE = datetime.timedelta(days=30)
# Hosts every leaf answers for besides the configured host.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")


class CertificateError(SecretsError):
    """The CA or a certificate cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Issued:
    """One certificate on disk and what `invoke certs` reports about it."""

    name: str
    cert: Path
    key: Path
    not_after: datetime.datetime
    hosts: tuple[str, ...]
    renewed: bool


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _name_constraints(hosts: tuple[str, ...]) -> x509.NameConstraints:
    """What the CA may vouch for: these names (and their subdomains) and these addresses."""
    permitted: list[x509.GeneralName] = []
    for host in hosts:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            permitted.append(x509.DNSName(host))
            continue
        permitted.append(x509.IPAddress(ipaddress.ip_network(f"{address}/"
                                                             f"{address.max_prefixlen}")))
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None)


def _constrained_to(cert: x509.Certificate, hosts: tuple[str, ...]) -> bool:
    try:
        found = cert.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        return False
    return found.critical and found.value == _name_constraints(hosts)


def _hosts(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(str(name.value) for name in san)


def _write(settings: Settings, name: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> None:
    """Certificate and key replaced together, so a reader never pairs a new key with an old
    certificate."""
    cert_file, key_file = settings.tls_pair(name)
    settings.tls_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    settings.tls_dir.chmod(PRIVATE_DIR)
    write_all({cert_file: _pem_cert(cert), key_file: _pem_key(key)},
              {cert_file: PRIVATE_FILE, key_file: PRIVATE_FILE})


def _load(settings: Settings, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_file, key_file = settings.tls_pair(name)
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise CertificateError(f"cannot read {cert_file} / {key_file} ({error}): delete both "
                               "and run `invoke certs` to issue them again") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{key_file} is not an ECDSA key: delete it and {cert_file} and "
                               "run `invoke certs`")
    return cert, key


def _issue_ca(settings: Settings, hosts: tuple[str, ...]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "onecommit"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "onecommit local CA")])
    now = _now()
    identifier = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        # Path length 0: this CA signs leaves only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(_name_constraints(hosts), critical=True)
        .add_extension(identifier, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(identifier),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(settings, CA_NAME, cert, key)


def _issue_leaf(settings: Settings, name: str, hosts: tuple[str, ...],
                ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    ca_identifier = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"onecommit {name}")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + LEAF_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca_identifier), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(settings, name, cert, key)


def _due(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - _now() < RENEW_BEFORE


def _leaf_current(settings: Settings, name: str, hosts: tuple[str, ...],
                  ca_cert: x509.Certificate) -> bool:
    cert_file, key_file = settings.tls_pair(name)
    if not (cert_file.exists() and key_file.exists()):
        return False
    cert, _ = _load(settings, name)
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return not _due(cert) and set(_hosts(cert)) == set(hosts)


def leaf_hosts(settings: Settings) -> tuple[str, ...]:
    """What each leaf answers for: loopback by name and address, and the configured host."""
    return tuple(dict.fromkeys((*LOOPBACK_HOSTS, settings.host)))


def ensure_certs(settings: Settings, renew: bool = False) -> list[Issued]:
    """The CA and every leaf, issued or renewed as needed (`renew`: re-issue every leaf now)."""
    ca_cert_file, ca_key_file = settings.tls_pair(CA_NAME)
    hosts = leaf_hosts(settings)
    new_ca = not (ca_cert_file.exists() and ca_key_file.exists()) or _ca_replaced(settings,
                                                                                  hosts)
    if new_ca:
        _issue_ca(settings, hosts)
    ca = _load(settings, CA_NAME)
    issued = [_report(settings, CA_NAME, new_ca)]
    for name in LEAVES:
        fresh = new_ca or renew or not _leaf_current(settings, name, hosts, ca[0])
        if fresh:
            _issue_leaf(settings, name, hosts, ca)
        issued.append(_report(settings, name, fresh))
    return issued


def _ca_replaced(settings: Settings, hosts: tuple[str, ...]) -> bool:
    """Due for renewal, or not constrained to exactly the leaves' hosts."""
    cert, _ = _load(settings, CA_NAME)
    return _due(cert) or not _constrained_to(cert, hosts)


def _report(settings: Settings, name: str, renewed: bool) -> Issued:
    cert_file, key_file = settings.tls_pair(name)
    cert, _ = _load(settings, name)
    return Issued(name, cert_file, key_file, cert.not_valid_after_utc, _hosts(cert), renewed)
