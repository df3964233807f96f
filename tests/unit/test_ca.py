"""The internal CA: leaves verify against it for the loopback names, keys stay owner-only, and
renewal happens when due, not before."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from onecommit.secrets import ca
from onecommit.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "state")


def serial(settings: Settings, name: str) -> int:
    cert_file, _ = settings.tls_pair(name)
    return x509.load_pem_x509_certificate(cert_file.read_bytes()).serial_number


def handshake(settings: Settings, server_name: str, cafile: Path | None) -> str:
    """A real TLS handshake against the gateway leaf; returns the negotiated version."""
    cert_file, key_file = settings.tls_pair("gateway")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cafile=cafile)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            with server_context.wrap_socket(connection, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname()) as raw, \
                client_context.wrap_socket(raw, server_hostname=server_name) as tls:
            return str(tls.version())
    finally:
        thread.join(timeout=5)
        listener.close()


def test_leaves_verify_against_the_ca_for_loopback_names(settings: Settings) -> None:
    issued = ca.ensure_certs(settings)
    assert [i.name for i in issued] == ["ca", "gateway", "mlflow", "airflow"]
    ca_file, _ = settings.tls_pair("ca")
    for name in ("127.0.0.1", "localhost"):
        assert handshake(settings, name, ca_file) in {"TLSv1.2", "TLSv1.3"}


def test_without_the_ca_the_leaf_is_not_trusted(settings: Settings) -> None:
    ca.ensure_certs(settings)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(settings, "127.0.0.1", None)


def test_a_name_outside_the_certificate_is_refused(settings: Settings) -> None:
    ca.ensure_certs(settings)
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(settings, "gateway.example", settings.tls_pair("ca")[0])


def test_keys_and_directory_are_owner_only(settings: Settings) -> None:
    ca.ensure_certs(settings)
    assert stat.S_IMODE(settings.tls_dir.stat().st_mode) == 0o700
    for name in ("ca", *ca.LEAVES):
        for path in settings.tls_pair(name):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_second_run_keeps_everything_and_renew_reissues_leaves_only(settings: Settings) -> None:
    ca.ensure_certs(settings)
    before = {name: serial(settings, name) for name in ("ca", *ca.LEAVES)}
    assert not any(i.renewed for i in ca.ensure_certs(settings))
    assert {name: serial(settings, name) for name in before} == before
    renewed = ca.ensure_certs(settings, renew=True)
    assert [i.name for i in renewed if i.renewed] == list(ca.LEAVES)
    assert serial(settings, "ca") == before["ca"]
    assert all(serial(settings, name) != before[name] for name in ca.LEAVES)


def test_a_leaf_due_for_renewal_is_reissued(settings: Settings,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ca.ensure_certs(settings)
    before = serial(settings, "gateway")
    monkeypatch.setattr(ca, "RENEW_BEFORE", ca.LEAF_VALIDITY)
    ca.ensure_certs(settings)
    assert serial(settings, "gateway") != before


def test_a_new_ca_reissues_every_leaf(settings: Settings) -> None:
    ca.ensure_certs(settings)
    before = serial(settings, "mlflow")
    for path in settings.tls_pair("ca"):
        path.unlink()
    ca.ensure_certs(settings)
    assert serial(settings, "mlflow") != before
    assert handshake(settings, "127.0.0.1", settings.tls_pair("ca")[0])


def test_a_broken_key_names_the_file_and_the_fix(settings: Settings) -> None:
    ca.ensure_certs(settings)
    settings.tls_pair("gateway")[1].write_text("not a key")
    with pytest.raises(ca.CertificateError, match=r"gateway\.key.*invoke certs"):
        ca.ensure_certs(settings)


def test_the_ca_cannot_vouch_for_a_name_beyond_the_leaves_hosts(settings: Settings) -> None:
    ca.ensure_certs(settings)
    ca_file, _ = settings.tls_pair("ca")
    authority = x509.load_pem_x509_certificate(ca_file.read_bytes())
    constraints = authority.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    # A leaf the CA's key signs for another site (as a thief of the key would) is refused.
    ca._issue_leaf(settings, "gateway", ("bank.example",), ca._load(settings, "ca"))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(settings, "bank.example", ca_file)


def test_a_ca_without_name_constraints_is_replaced(settings: Settings) -> None:
    ca.ensure_certs(settings)
    before = serial(settings, "ca")
    # A CA as issued before name constraints: none.
    cert, key = ca._load(settings, "ca")
    builder = x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer) \
        .public_key(key.public_key()).serial_number(x509.random_serial_number()) \
        .not_valid_before(cert.not_valid_before_utc).not_valid_after(cert.not_valid_after_utc)
    for extension in cert.extensions:
        if not isinstance(extension.value, x509.NameConstraints):
            builder = builder.add_extension(extension.value, extension.critical)
    ca._write(settings, "ca", builder.sign(key, hashes.SHA256()), key)
    issued = ca.ensure_certs(settings)
    assert all(i.renewed for i in issued)
    assert serial(settings, "ca") != before
