"""`up`, `down` and `status` for the local profile."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from onecommit import gitops_remote
from onecommit.commands import CommandError
from onecommit.errors import OnecommitError
from onecommit.files import PRIVATE_DIR
from onecommit.platform import supervisor
from onecommit.platform.components import Component, components, triton_paths
from onecommit.platform.envs import ensure_env, is_current
from onecommit.platform.health import ComponentStatus, probe, status
from onecommit.settings import Settings


class PlatformError(OnecommitError):
    """A fault with one clear cause and fix; `detail` carries a log tail when there is one."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


Report = Callable[[str], None]
# A report ending so is work in progress (a terminal shows it as a spinner until the next);
# any other is a step done.
WORKING = "…"


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe_socket:
        probe_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe_socket.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(settings: Settings, ours: set[str]) -> None:
    """Refuse to start when a port we need is held by someone else."""
    owners = {"mlflow": "mlflow", "airflow": "airflow-api-server", "triton_http": "triton",
              "triton_grpc": "triton", "triton_metrics": "triton", "gateway": "gateway"}
    for name, port in settings.ports.items():
        if owners[name] in ours:
            continue
        if not port_free(settings.host, port):
            raise PlatformError(
                f"port {port} ({name}) on {settings.host} is already in use by another process: "
                f"free it or set ONECOMMIT_{name.upper()}_PORT to a free port"
            )


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _check_binaries(settings: Settings) -> None:
    binary, _ = triton_paths(settings)
    if not binary.exists():
        raise PlatformError(
            f"tritonserver binary missing at {binary}: the nvidia-pytriton wheel is broken or "
            "incomplete; delete the triton environment and run `invoke up` to rebuild it"
        )


def up(settings: Settings, report: Report = print,
       platform: list[Component] | None = None) -> None:
    """Start every component (the local profile's unless given) and return when all are
    healthy; idempotent."""
    running = {n for n, i in supervisor.processes(settings).items() if i.state == "RUNNING"}
    check_ports(settings, running)
    # Credentials, keys and configs holding secrets live below: owner-only, whatever the umask.
    settings.state_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    settings.state_dir.chmod(PRIVATE_DIR)
    if platform is None:
        platform = components(settings)
        for env in dict.fromkeys(c.env for c in platform):
            if not is_current(settings, env):
                report(f"environment {env}: building from requirements/{env}.txt (minutes "
                       f"the first time){WORKING}")
            report(f"environment {env}: ready at {ensure_env(settings, env)}")
        _check_binaries(settings)
    fresh = supervisor.supervisord_pid(settings) is None
    try:
        supervisor.write_config(settings, platform)
        supervisor.ensure_running(settings)
        # Start each as soon as it is prepared, then wait for each: no component needs another
        # to start (the gateway and the reconciler wait for Triton themselves), and waiting
        # for them one after the other only added their start times up.
        for component in platform:
            component.prepare()
            start_programs(settings, component)
        report(f"starting {', '.join(c.name for c in platform)}{WORKING}")
        deadline = time.monotonic() + settings.health_timeout_s
        for component in platform:
            wait_healthy(settings, component, report, deadline)
        gitops_remote.ensure(settings)
    except (gitops_remote.RemoteError, CommandError) as error:
        if fresh:
            supervisor.shutdown(settings)
        raise PlatformError(f"gitops remote: {error}") from None
    except Exception:
        # Nothing is left half-started: a platform we began is taken down again.
        if fresh:
            supervisor.shutdown(settings)
        raise


def start_component(settings: Settings, component: Component, report: Report) -> None:
    """Start a component's programs under the running supervisord and wait until it is healthy."""
    start_programs(settings, component)
    wait_healthy(settings, component, report, time.monotonic() + settings.health_timeout_s)


def start_programs(settings: Settings, component: Component) -> None:
    """Start the component's programs that are not running, without waiting."""
    for program in component.programs:
        supervisor.start(settings, program.name)


def wait_healthy(settings: Settings, component: Component, report: Report,
                 deadline: float) -> None:
    """Until the component's programs run and its probe passes; a program that exits, or the
    deadline, fails with the cause and the log's tail. Each new reason it is not healthy yet
    is reported as work in progress."""
    waiting = ""
    while True:
        running = supervisor.processes(settings)
        dead = [p.name for p in component.programs
                if running.get(p.name) is None
                or running[p.name].state in {"FATAL", "EXITED", "BACKOFF", "STOPPED"}]
        if dead:
            raise _failure(settings, component, f"{dead[0]} exited at start", dead[0])
        starting = [p.name for p in component.programs if running[p.name].state != "RUNNING"]
        healthy, why = (False, f"starting: {starting[0]}") if starting else probe(component)
        if healthy:
            report(f"{component.name}: healthy at {component.url}")
            return
        if why != waiting:
            waiting = why
            report(f"{component.name}: {why}{WORKING}")
        if time.monotonic() > deadline:
            raise _failure(settings, component,
                           f"not healthy after {settings.health_timeout_s:.0f} s ({why})",
                           component.programs[0].name)
        time.sleep(0.5)


def _failure(settings: Settings, component: Component, what: str, program: str) -> PlatformError:
    log = supervisor.log_file(settings, program)
    return PlatformError(
        f"{component.name} {what}: see `invoke logs {component.name}` ({log}) for the cause",
        detail=tail(log),
    )


def down(settings: Settings) -> None:
    """Stop everything `up` started; no process of ours survives."""
    supervisor.shutdown(settings)


def statuses(settings: Settings) -> dict[str, ComponentStatus]:
    running = supervisor.processes(settings)
    return {c.name: status(settings, c, running) for c in components(settings)}


def component_log(settings: Settings, name: str) -> list[Path]:
    for component in components(settings):
        if component.name == name:
            return [supervisor.log_file(settings, p.name) for p in component.programs]
    known = ", ".join(c.name for c in components(settings))
    raise PlatformError(f"unknown component {name!r}: choose one of {known}")
