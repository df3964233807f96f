"""`invoke images`: every image of the compose profile, built from docker/*.Dockerfile.

Every image starts from `onecommit/base` (docker/base.Dockerfile): the pinned public Python
image, or for machines that reach no image registry one made from Debian's packages
(`debootstrap` + `docker import`), plus the host's CA bundle, which holds the CA of a proxy
that re-signs TLS if the host trusts one. Unforced, a probe of the public registry with a
bounded timeout picks the base; each choice is said in one line. The engine's own build cache
keeps every layer, and the Dockerfiles install requirements before copying code, so a code
change rebuilds seconds of layers, not the environments.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
from docker.errors import APIError, BuildError, ImageNotFound

from onecommit.commands import run
from onecommit.errors import OnecommitError
from onecommit.platform import engine
from onecommit.platform.kind import Tree
from onecommit.settings import PROJECT_ROOT, ImageBase, ImageCaBundle, tls_context

PUBLIC_BASE = "python:3.11.11-slim-bookworm"  # docker/base.Dockerfile's default, pinned
# Where the engine pulls PUBLIC_BASE from (Docker Hub's registry API: 401 when it answers), and
# how long the probe waits for it: a closed network fails at once on DNS, a filtered one by this.
PUBLIC_REGISTRY = "https://registry-1.docker.io/v2/"
REGISTRY_PROBE_S = 3.0
# The host's trust store (Debian's ca-certificates): what pip, curl and the engine trust here.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBIAN_BASE = "onecommit/debian:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Debian's Python in a virtual environment on PATH: `python` and `pip` then behave as in the
# public Python image (pip may install into it; Debian's own python3 refuses, PEP 668), and
# libpython is there for Triton's python-backend stub.
_DEBIAN_PACKAGES = "ca-certificates,python3,python3-venv,libpython3.11"
_DEBIAN_ENV = ("ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
               "/sbin:/bin", "ENV LANG=C.UTF-8")


class ImageError(OnecommitError):
    """An image could not be built; the message names it and the fix."""


@dataclass(frozen=True)
class Image:
    """One image: docker/<name>.Dockerfile, tagged onecommit/<name>:<tag>."""

    name: str
    what: str

    @property
    def dockerfile(self) -> Path:
        return PROJECT_ROOT / "docker" / f"{self.name}.Dockerfile"


IMAGES = (
    Image("base", "every image's parent: Python, the CA bundle"),
    Image("postgres", "PostgreSQL 15 (Debian) for Airflow, MLflow and the serving state"),
    Image("mlflow", "MLflow server, requirements/mlflow.txt"),
    # Before the platform image, which copies its environment.
    Image("feast", "the Feast feature server (optional layer), requirements/feast.txt"),
    Image("platform", "Airflow 3, the lifecycle and Feast's environment, "
          "requirements/platform(-cluster).txt"),
    Image("triton", "tritonserver from the nvidia-pytriton wheel, requirements/triton.txt"),
    Image("gateway", "the gateway and the Triton reconciler, requirements/gateway.txt"),
    Image("prometheus", "Prometheus (Debian) with the project's alert rules"),
    Image("alertmanager", "Alertmanager (Debian)"),
    Image("redis", "Redis (Debian), the optional layer's online store"),
)


def tag(image: Image) -> str:
    """The charts' image tags are the project version; compose uses the same."""
    return f"onecommit/{image.name}:{Tree().image_tag}"


def registry_silence(url: str = PUBLIC_REGISTRY, timeout_s: float = REGISTRY_PROBE_S,
                     ca_bundle: Path = HOST_CA_BUNDLE) -> str | None:
    """Why the registry at `url` did not answer within `timeout_s` (None: it answered, with
    any HTTP status), its certificate checked against the host's trust store as the engine
    checks it."""
    verify = tls_context(ca_bundle if ca_bundle.is_file() else None)
    try:
        httpx.get(url, timeout=timeout_s, verify=verify)
    except httpx.HTTPError as error:
        reason = " ".join(str(error).split()) or "no answer"
        return f"{type(error).__name__}: {reason[:120]}"
    return None


def choose_base(forced: ImageBase | None, public_cached: Callable[[], bool],
                silence: Callable[[], str | None]) -> tuple[ImageBase, str]:
    """The base to build on and the line that says why: as forced; else the public image when
    the engine has it or the registry answers; else Debian's packages."""
    if forced is not None:
        return forced, f"image base: {forced} (forced by --base / ONECOMMIT_IMAGE_BASE)"
    if public_cached():
        return "python", (f"image base: python ({PUBLIC_BASE} is in the engine's cache; "
                          "--base debian forces Debian's packages)")
    host = httpx.URL(PUBLIC_REGISTRY).host
    why = silence()
    if why is None:
        return "python", (f"image base: python (the public registry answered at {host}; "
                          "--base debian forces Debian's packages)")
    return "debian", (f"image base: debian (no registry answered at {host}: {why}; "
                      "--base python forces it)")


def choose_ca_bundle(setting: ImageCaBundle,
                     host: Path = HOST_CA_BUNDLE) -> tuple[Path | None, str]:
    """The CA bundle the images trust and the line that says why: the host's trust store
    unless another PEM file or none is forced."""
    if isinstance(setting, Path):
        if not setting.is_file():
            raise ImageError(f"CA bundle {setting} does not exist: give a PEM file, e.g. "
                             f"{HOST_CA_BUNDLE}, or --ca-bundle none")
        return setting, (f"image CA bundle: {setting} (forced by --ca-bundle / "
                         "ONECOMMIT_IMAGE_CA_BUNDLE)")
    if setting == "none":
        return None, "image CA bundle: none (forced by --ca-bundle none: the public CAs only)"
    if host.is_file():
        return host, (f"image CA bundle: {host} (the host's, so a TLS-inspecting proxy the "
                      "host trusts is trusted in the images; --ca-bundle none leaves it out)")
    return None, (f"image CA bundle: none (no {host} on this host; --ca-bundle PEM adds "
                  "one)")


def _public_cached(client: docker.DockerClient) -> bool:
    return _image_id(client, PUBLIC_BASE) is not None


def debian_base(client: docker.DockerClient, report: Callable[[str], None]) -> str:
    """The Debian base image, made once (`docker import` of a debootstrap tree; an import is
    never cached by the engine, so remaking it would rebuild every image on top)."""
    try:
        client.images.get(DEBIAN_BASE)
        return DEBIAN_BASE
    except ImageNotFound:
        pass
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed: `apt-get install debootstrap` (or "
                         "build on the public Python image: --base python)")
    report(f"{DEBIAN_BASE}: debootstrap bookworm from {DEBIAN_MIRROR} (about a minute)")
    with tempfile.TemporaryDirectory(prefix="onecommit-rootfs-") as scratch:
        root = Path(scratch) / "rootfs"
        run(["debootstrap", "--variant=minbase", f"--include={_DEBIAN_PACKAGES}", "bookworm",
             root, DEBIAN_MIRROR])
        run(["chroot", root, "python3", "-m", "venv", "/opt/python"])
        shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        archive = Path(scratch) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")
        client.api.import_image(src=str(archive), repository=DEBIAN_BASE.split(":")[0],
                                tag=DEBIAN_BASE.split(":")[1], changes=list(_DEBIAN_ENV))
    return DEBIAN_BASE


@dataclass(frozen=True)
class Built:
    image: str
    seconds: float
    size_mb: float


def build(base: ImageBase | None = None, ca_bundle: ImageCaBundle = "host",
          report: Callable[[str], None] = print, cached: bool = True) -> list[Built]:
    """Build every image of the compose profile, in dependency order, on the base and with the
    CA bundle chosen (each said in one line); without the engine's cache when not `cached` (a
    cold build's time)."""
    trusted, line = choose_ca_bundle(ca_bundle)
    client = engine.client()
    chosen, base_line = choose_base(base, lambda: _public_cached(client), registry_silence)
    report(base_line)
    report(line)
    parent = debian_base(client, report) if chosen == "debian" else PUBLIC_BASE
    built = []
    for image in IMAGES:
        arguments = _arguments(image, parent)
        started = time.monotonic()
        before = _image_id(client, tag(image))
        with _context(image, trusted) as context:
            _build(client, image, tag(image), context, arguments, report, cached)
        _remove_replaced(client, tag(image), before)
        size = client.images.get(tag(image)).attrs["Size"] / 2**20
        built.append(Built(tag(image), round(time.monotonic() - started, 1),
                           round(size, 1)))
        report(f"{tag(image)} ({image.what}): {built[-1].seconds:.1f} s, "
               f"{built[-1].size_mb:.0f} MB")
    return built


def _arguments(image: Image, parent: str) -> dict[str, str]:
    """Build arguments: every image's parent, and the image the platform copies Feast from."""
    if image.name == "base":
        return {"BASE_IMAGE": parent}
    built = {i.name: tag(i) for i in IMAGES}
    return {"BASE_IMAGE": built["base"], "FEAST_IMAGE": built["feast"]}


def _image_id(client: docker.DockerClient, name: str) -> str | None:
    try:
        return str(client.images.get(name).id)
    except ImageNotFound:
        return None


def _remove_replaced(client: docker.DockerClient, name: str, before: str | None) -> None:
    """The image a rebuild replaced, unless a container still runs it: every code change
    would otherwise leave a platform image's worth of disk behind."""
    if before is None or before == _image_id(client, name):
        return
    # In use (a running platform) or the parent of another image: it stays.
    with suppress(APIError):
        client.images.remove(before)


@contextmanager
def _context(image: Image, ca_bundle: Path | None) -> Iterator[Path]:
    """The build context: the repository root (.dockerignore trims it), or for the base a
    directory holding the health check and the extra CA bundle (empty when none is given)."""
    if image.name != "base":
        yield PROJECT_ROOT
        return
    with tempfile.TemporaryDirectory(prefix="onecommit-base-") as scratch:
        (Path(scratch) / "extra-ca.crt").write_bytes(ca_bundle.read_bytes() if ca_bundle
                                                      else b"")
        shutil.copy2(PROJECT_ROOT / "docker" / "healthcheck.py", scratch)
        yield Path(scratch)


def _build(client: docker.DockerClient, image: Image, name: str, context: Path,
           arguments: dict[str, str], report: Callable[[str], None], cached: bool) -> None:
    # Builds use the host's network: a build container then resolves and connects exactly as
    # the host does (its DNS server may not be reachable from Docker's bridge).
    try:
        for line in _stream(client.api.build(
                path=str(context), dockerfile=str(image.dockerfile), tag=name,
                buildargs=arguments, rm=True, network_mode="host", nocache=not cached,
                decode=True)):
            report(f"{image.name}: {line}")
    except (APIError, BuildError) as error:
        raise ImageError(f"building {name} from {image.dockerfile.name} failed: {error} (where "
                         "no image registry is reachable: --base debian or "
                         "ONECOMMIT_IMAGE_BASE=debian; where a proxy re-signs TLS: --ca-bundle "
                         "or ONECOMMIT_IMAGE_CA_BUNDLE)") from None


def _stream(chunks: Iterator[dict[str, Any]]) -> Iterator[str]:
    """The build's step lines; an error chunk ends the build with its message."""
    for chunk in chunks:
        if "error" in chunk:
            raise BuildError(chunk["error"].strip(), iter(()))
        text = str(chunk.get("stream", "")).strip()
        if text.startswith("Step "):
            yield text
