"""The Docker engine the compose profile runs on: the one that answers, or, as root on Debian,
Debian's `docker.io` installed and `dockerd` started. Started by `invoke up` or `invoke engine`,
it stays: it is the machine's, like its package. Started for one run (a test's), it is stopped
afterwards; its image cache stays on disk for the next run either way.

Where overlay mounts are refused (e.g. inside another container) dockerd needs another storage
driver: fuse-overlayfs where FUSE is available, which shares layers as overlay2 does, else vfs,
which copies the whole image at every layer and twice per container (about 70 GB of disk for
this platform's images and containers, against about 10)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import docker

from onecommit.commands import run
from onecommit.errors import OnecommitError

DOCKERD_LOG = Path("/var/log/onecommit-dockerd.log")
# Debian's package of each tool: the engine, the Debian base image's builder, the storage driver.
_PACKAGES = {"dockerd": "docker.io", "debootstrap": "debootstrap",
             "fuse-overlayfs": "fuse-overlayfs"}
FUSE_DEVICE = Path("/dev/fuse")
_START_TIMEOUT_S = 60.0


class EngineError(OnecommitError):
    """No engine can be had; the message says why and what to do."""


def client() -> docker.DockerClient:
    """A client of the engine that answers now (DOCKER_HOST or the local socket)."""
    try:
        found = docker.from_env(timeout=600)
        found.ping()
    except docker.errors.DockerException as error:
        raise EngineError(f"no Docker engine answers ({type(error).__name__}): start one, or "
                          "run `invoke engine` as root on Debian to install and start it"
                          ) from None
    return found


def unavailable() -> str | None:
    """Why no engine can be had here (None: one answers, or `ensure` can start one)."""
    try:
        client()
        return None
    except EngineError as error:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            return f"{error} (starting one needs root on Debian)"
        return None


def ensure(report: Callable[[str], None] = print) -> docker.DockerClient:
    """The engine that answers, else Debian's installed and started (and left running)."""
    try:
        return client()
    except EngineError:
        _start(report)
        return _answering()


@contextmanager
def session(report: Callable[[str], None] = print) -> Iterator[docker.DockerClient]:
    """The engine for one run: the one that answers, else one started here and stopped at the
    end (with its containerd: the whole process group)."""
    try:
        running = client()
    except EngineError:
        running = None
    if running is not None:
        yield running
        return
    started = _start(report)
    try:
        yield _answering()
    finally:
        os.killpg(started.pid, signal.SIGTERM)
        try:
            started.wait(timeout=_START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(started.pid, signal.SIGKILL)
            started.wait()


def _start(report: Callable[[str], None]) -> subprocess.Popen[bytes]:
    if why := unavailable():
        raise EngineError(why)
    missing = [package for tool, package in _PACKAGES.items() if shutil.which(tool) is None]
    if missing:
        report(f"installing {', '.join(missing)} (apt-get)")
        for argv in (["apt-get", "update", "-qq"],
                     ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
            run(argv, env={"DEBIAN_FRONTEND": "noninteractive"})
    driver = storage_driver()
    report(f"starting dockerd --storage-driver={driver} (log: {DOCKERD_LOG})")
    with DOCKERD_LOG.open("ab") as log:
        # Not the command runner: a long-lived server, owned here (session() stops it). Its own
        # session: it outlives the command that started it, unless stopped.
        return subprocess.Popen(["dockerd", f"--storage-driver={driver}"], stdout=log,
                                stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)


def storage_driver() -> str:
    """fuse-overlayfs where FUSE is available, else vfs (see the module's docstring)."""
    if FUSE_DEVICE.exists() and shutil.which("fuse-overlayfs"):
        return "fuse-overlayfs"
    return "vfs"


def _answering() -> docker.DockerClient:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        try:
            return client()
        except EngineError:
            if time.monotonic() > deadline:
                raise EngineError(f"dockerd did not answer within {_START_TIMEOUT_S:.0f} s: "
                                  f"see {DOCKERD_LOG}") from None
            time.sleep(1)



