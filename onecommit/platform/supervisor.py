"""The process manager: supervisord with a generated config, driven over its XML-RPC socket."""

from __future__ import annotations

import configparser
import io
import os
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from supervisor.xmlrpc import SupervisorTransport

from onecommit.commands import run
from onecommit.files import write_private
from onecommit.platform.components import Component
from onecommit.settings import Settings


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    state: str
    pid: int
    log_file: str


def config_path(settings: Settings) -> Path:
    return settings.state_dir / "supervisord.conf"


def socket_path(settings: Settings) -> Path:
    return settings.state_dir / "supervisor.sock"


def pid_path(settings: Settings) -> Path:
    return settings.state_dir / "supervisord.pid"


def log_file(settings: Settings, program: str) -> Path:
    return settings.logs_dir / f"{program}.log"


def _environment(values: dict[str, str]) -> str:
    # Supervisor's own syntax: comma-separated, `%` escaped, values quoted with the quote they do
    # not hold (its lexer knows no escapes: a JSON value goes in single quotes).
    return ",".join(f"{k}={_quoted(k, v.replace('%', '%%'))}" for k, v in values.items())


def _quoted(name: str, value: str) -> str:
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    raise ValueError(f"{name} holds both quote characters, which supervisor cannot pass on: "
                     "drop one of them from its value")


def write_config(settings: Settings, components: list[Component]) -> Path:
    """Write supervisord.conf for the given components; programs do not start on their own."""
    parser = configparser.RawConfigParser()
    parser["unix_http_server"] = {"file": str(socket_path(settings)), "chmod": "0700"}
    parser["supervisord"] = {
        "logfile": str(settings.logs_dir / "supervisord.log"),
        "pidfile": str(pid_path(settings)),
        "childlogdir": str(settings.logs_dir),
        "logfile_maxbytes": "10MB",
        "logfile_backups": "3",
    }
    parser["rpcinterface:supervisor"] = {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface",
    }
    parser["supervisorctl"] = {"serverurl": f"unix://{socket_path(settings)}"}
    for component in components:
        for program in component.programs:
            parser[f"program:{program.name}"] = {
                "command": " ".join(_quote(arg) for arg in program.command),
                "environment": _environment(program.environment),
                "directory": str(settings.state_dir),
                "autostart": "false",
                "autorestart": "unexpected",
                "startsecs": "2",
                "startretries": "1",
                "stopsignal": "TERM",
                "stopwaitsecs": str(program.stop_wait_s),
                # Airflow and Triton fork workers and stubs: stop the whole process group.
                "stopasgroup": "true",
                "killasgroup": "true",
                "redirect_stderr": "true",
                "stdout_logfile": str(log_file(settings, program.name)),
                "stdout_logfile_maxbytes": "20MB",
                "stdout_logfile_backups": "3",
            }
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    path = config_path(settings)
    text = io.StringIO()
    parser.write(text)
    # Programs' environments hold credentials (Airflow's JWT secret): owner-only.
    write_private(path, text.getvalue())
    return path


def _quote(arg: str) -> str:
    return f'"{arg}"' if any(c in arg for c in " \t'\"") else arg


def rpc(settings: Settings) -> Any:
    """An XML-RPC proxy to the running supervisord."""
    transport = SupervisorTransport(None, None, f"unix://{socket_path(settings)}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def supervisord_pid(settings: Settings) -> int | None:
    """The pid of our running supervisord, or None; a stale pid file does not count."""
    try:
        pid = int(pid_path(settings).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    try:
        rpc(settings).supervisor.getPID()
    except OSError:
        return None
    return pid


def ensure_running(settings: Settings) -> None:
    """Start supervisord (daemonised by itself) unless ours is already up; reread the config."""
    if supervisord_pid(settings) is not None:
        rpc(settings).supervisor.reloadConfig()
        for group in _new_groups(settings):
            rpc(settings).supervisor.addProcessGroup(group)
        return
    socket_path(settings).unlink(missing_ok=True)
    supervisord = str(Path(sys.executable).with_name("supervisord"))
    # supervisord daemonizes: the command returns once the daemon is forked.
    run([supervisord, "-c", config_path(settings)], capture=False)
    deadline = time.monotonic() + 15
    while supervisord_pid(settings) is None:
        if time.monotonic() > deadline:
            log = settings.logs_dir / "supervisord.log"
            raise RuntimeError(f"supervisord did not start; see {log}")
        time.sleep(0.1)


def _new_groups(settings: Settings) -> list[str]:
    added, _changed, _removed = rpc(settings).supervisor.reloadConfig()[0]
    return cast(list[str], added)


def processes(settings: Settings) -> dict[str, ProcessInfo]:
    if supervisord_pid(settings) is None:
        return {}
    return {
        info["name"]: ProcessInfo(info["name"], info["statename"], info["pid"],
                                  info["stdout_logfile"])
        for info in rpc(settings).supervisor.getAllProcessInfo()
    }


def is_running(settings: Settings, program: str) -> bool:
    info = processes(settings).get(program)
    return info is not None and info.state == "RUNNING"


def start(settings: Settings, program: str) -> None:
    """Start a program without waiting; a program already running is left alone."""
    info = processes(settings).get(program)
    if info is None or info.state not in {"RUNNING", "STARTING"}:
        rpc(settings).supervisor.startProcess(program, False)


def shutdown(settings: Settings, timeout_s: float = 180) -> None:
    """Stop every program and supervisord itself, and wait until its pid is gone."""
    pid = supervisord_pid(settings)
    if pid is None:
        return
    server = rpc(settings).supervisor
    # supervisord's shutdown stops its programs one after another, each in up to its
    # stopwaitsecs (Triton waits out the gateway's open connections, 5 s): signal all of them
    # at once first, so stopping takes as long as the slowest program, not their sum.
    server.stopAllProcesses(False)
    server.shutdown()
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"supervisord (pid {pid}) did not stop within {timeout_s:.0f} s")
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie left for its parent to reap counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
