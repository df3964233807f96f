"""How the compose profile's images choose their base and CA bundle when no flag forces them:
the public Python image when the engine has it or the public registry answers, else Debian's
packages; the host's trust store (which holds a TLS-inspecting proxy's CA) unless forced.
The probe is tried against real servers on 127.0.0.1: one that answers, none, one that never
answers, and one whose certificate only a given CA vouches for, as a proxy's."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from onecommit.platform.images import (
    HOST_CA_BUNDLE,
    PUBLIC_BASE,
    ImageError,
    choose_base,
    choose_ca_bundle,
    registry_silence,
)
from onecommit.secrets.ca import ensure_certs
from onecommit.settings import Settings


def _never() -> bool:
    raise AssertionError("asked, though the choice was made without it")


def _silent() -> str | None:
    raise AssertionError("probed, though the choice was made without it")


@pytest.mark.parametrize("forced", ["python", "debian"])
def test_a_forced_base_is_used_without_looking(forced: str) -> None:
    base, line = choose_base(forced, _never, _silent)  # type: ignore[arg-type]
    assert base == forced
    assert line == f"image base: {forced} (forced by --base / ONECOMMIT_IMAGE_BASE)"


def test_the_cached_public_image_needs_no_registry() -> None:
    base, line = choose_base(None, lambda: True, _silent)
    assert base == "python"
    assert PUBLIC_BASE in line
    assert "--base debian" in line


def test_a_registry_that_answers_gives_the_public_image() -> None:
    base, line = choose_base(None, lambda: False, lambda: None)
    assert base == "python"
    assert line == ("image base: python (the public registry answered at registry-1.docker.io; "
                    "--base debian forces Debian's packages)")


def test_no_registry_answering_gives_debian_in_one_line() -> None:
    base, line = choose_base(None, lambda: False,
                             lambda: "ConnectError: [Errno -3] Temporary failure")
    assert base == "debian"
    assert line == ("image base: debian (no registry answered at registry-1.docker.io: "
                    "ConnectError: [Errno -3] Temporary failure; --base python forces it)")


class _Registry(BaseHTTPRequestHandler):
    """What a registry's /v2/ answers an anonymous client."""

    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


@contextmanager
def _serving(tls: ssl.SSLContext | None = None) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def registry() -> Iterator[ThreadingHTTPServer]:
    with _serving() as server:
        yield server


def _url(server: ThreadingHTTPServer | socket.socket, scheme: str = "http") -> str:
    port = (server.server_address if isinstance(server, ThreadingHTTPServer)
            else server.getsockname())[1]
    return f"{scheme}://127.0.0.1:{port}/v2/"


def test_an_answer_of_any_status_is_an_answer(registry: ThreadingHTTPServer) -> None:
    assert registry_silence(_url(registry), timeout_s=5) is None


def test_nothing_listening_is_silence() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = _url(closed)
    assert str(registry_silence(url, timeout_s=5)).startswith("ConnectError: ")


def test_a_registry_that_never_answers_is_silence_after_the_timeout() -> None:
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen()  # connections are accepted by the kernel, and never answered
        assert registry_silence(_url(mute), timeout_s=0.2) == "ReadTimeout: timed out"


@pytest.fixture
def proxied_registry(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A registry behind TLS signed by a CA of its own, as an inspecting proxy re-signs it; and
    that CA's certificate."""
    settings = Settings(state_dir=tmp_path)
    ensure_certs(settings)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*settings.tls_pair("gateway"))
    with _serving(context) as server:
        yield _url(server, "https"), settings.tls_pair("ca")[0]


def test_a_proxy_the_trust_store_lacks_is_silence(proxied_registry: tuple[str, Path]) -> None:
    url, _ = proxied_registry
    assert "CERTIFICATE_VERIFY_FAILED" in str(registry_silence(url, timeout_s=5))


def test_a_proxy_the_trust_store_holds_answers(proxied_registry: tuple[str, Path]) -> None:
    url, proxy_ca = proxied_registry
    assert registry_silence(url, timeout_s=5, ca_bundle=proxy_ca) is None


def test_the_hosts_trust_store_is_the_default(tmp_path: Path) -> None:
    host = tmp_path / "ca-certificates.crt"
    host.write_text("PEM")
    bundle, line = choose_ca_bundle("host", host)
    assert bundle == host
    assert line.startswith(f"image CA bundle: {host} (the host's")
    assert "--ca-bundle none" in line


def test_without_a_host_trust_store_none_is_added(tmp_path: Path) -> None:
    bundle, line = choose_ca_bundle("host", tmp_path / "missing.crt")
    assert bundle is None
    assert "--ca-bundle PEM adds one" in line


def test_a_forced_bundle_or_none_wins_over_the_host(tmp_path: Path) -> None:
    forced = tmp_path / "proxy.pem"
    forced.write_text("PEM")
    assert choose_ca_bundle(forced, HOST_CA_BUNDLE)[0] == forced
    assert choose_ca_bundle("none", forced)[0] is None
    with pytest.raises(ImageError, match=r"does not exist: give a PEM file.*--ca-bundle none"):
        choose_ca_bundle(tmp_path / "missing.pem")
