"""What the local profile runs: each component's processes, environment and health probe."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import sqlite3
import ssl
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from onecommit.commands import run
from onecommit.features.settings import FeatureSettings
from onecommit.files import read_or_create, replacing
from onecommit.platform.envs import environment_digest
from onecommit.secrets import local_store
from onecommit.secrets.ca import ensure_certs
from onecommit.secrets.catalog import AIRFLOW_USER
from onecommit.settings import (
    AIRFLOW_SETTINGS,
    ORPHANS_RULE,
    PROGRAM_PYTHONPATH,
    PROJECT_ROOT,
    Settings,
    tls_context,
)
from onecommit.vocabulary import TRITON_CONTROL_HEADER

# Environments are built with this interpreter; the Triton stub must match its version.
_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True)
class Program:
    """One supervised process."""

    name: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    # Seconds supervisor waits for a graceful stop before SIGKILL.
    stop_wait_s: int = 20


@dataclass(frozen=True)
class Component:
    """A platform component: its processes, where it answers and how to ask it if it is healthy."""

    name: str
    env: str
    url: str
    health_path: str
    version_path: str
    programs: list[Program]
    # Runs before the processes start (directories, credentials, schema migrations).
    prepare: Callable[[], object] = lambda: None
    # What the health probe checks the component's certificate with (HTTPS only).
    verify: Callable[[], ssl.SSLContext] = tls_context


def _bin(settings: Settings, env: str, tool: str) -> str:
    return str(settings.env_dir(env) / "bin" / tool)


def _mlflow(settings: Settings) -> Component:
    home = settings.state_dir / "mlflow"
    command = [
        _bin(settings, "mlflow", "mlflow"), "server",
        "--host", settings.host, "--port", str(settings.mlflow_port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination", settings.mlflow_artifacts_destination or str(
            home / "artifacts"), "--serve-artifacts",
    ]
    return Component(
        name="mlflow", env="mlflow", url=settings.url(settings.mlflow_port),
        health_path="/health", version_path="/version",
        # The GenAI job runner forks seven workers (~1.6 GB) the registry never uses.
        programs=[Program("mlflow", command, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                                              "PYTHONPATH": str(ORPHANS_RULE)})],
        prepare=lambda: home.mkdir(parents=True, exist_ok=True),
    )


def airflow_environment(settings: Settings) -> dict[str, str]:
    """Airflow's configuration for the local profile, shared by every Airflow process."""
    home = settings.state_dir / "airflow"
    api = settings.url(settings.airflow_port)
    jwt_secret = read_or_create(home / "jwt_secret", lambda: secrets.token_urlsafe(32))
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # The lifecycle DAGs are triggered by commits; they must not wait to be unpaused.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__PARALLELISM": str(settings.airflow_parallelism),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AIRFLOW_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "airflow_local_settings.CONNECT_ARGS",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC":
            "airflow_local_settings.CONNECT_ARGS",
        "AIRFLOW__API__HOST": settings.host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        # A task starts within this of its upstream's end (default 1 s, paid at each of the
        # deploy's eight steps); an idle loop is one query of the local database.
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(settings.logs_dir / "airflow-tasks"),
        # A task whose scheduler died (its process dies with it: orphans/sitecustomize.py)
        # is run again by the restarted scheduler within about this, instead of 5 minutes.
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
        # A task process that stopped heartbeating is failed (and retried) after this.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
        "PYTHONPATH": f"{PROGRAM_PYTHONPATH}:{AIRFLOW_SETTINGS}",
        "MLFLOW_TRACKING_URI": settings.url(settings.mlflow_port),
        # MLflow's usage telemetry (nowhere to send it offline) sets and unsets an environment
        # variable from its own thread, and a registry call reading it at that moment failed a
        # task with KeyError('_MLFLOW_TELEMETRY_SESSION_ID').
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # Tasks run the lifecycle library, which needs every port and path of this platform.
        **settings.as_environment(),
    }


def _airflow(settings: Settings) -> Component:
    airflow = _bin(settings, "platform", "airflow")

    def program(name: str, *args: str) -> Program:
        # Airflow's graceful stop takes 20-30 s per process; a task it cuts short is run
        # again by the next scheduler (orphaned_tasks_check_interval), so waiting buys nothing.
        return Program(f"airflow-{name}", [airflow, name, *args], airflow_environment(settings),
                       stop_wait_s=5)

    return Component(
        name="airflow", env="platform", url=settings.url(settings.airflow_port),
        health_path="/api/v2/monitor/health", version_path="/api/v2/version",
        programs=[
            program("api-server", "--host", settings.host, "--port", str(settings.airflow_port),
                    "--workers", "1"),
            # Their log servers would listen on every interface (port 8793/8794); the API
            # server reads task logs from the shared local folder instead.
            program("scheduler", "--skip-serve-logs"),
            program("dag-processor"),
            program("triggerer", "--skip-serve-logs"),
            *([_resync(settings)] if settings.resync_s > 0 else []),
        ],
        prepare=lambda: _prepare_airflow(settings, airflow),
    )


def _resync(settings: Settings) -> Program:
    """The periodic sync (Argo CD's polling): a pass on the gitops remote's tip every
    `resync_s`, the first at start (the catch-up of pushes made while the platform was down).
    It runs with the project's interpreter, as the remote's hook does."""
    return Program("gitops-resync",
                   [sys.executable, "-m", "onecommit.sync", "--repo",
                    str(settings.state_dir / "gitops" / "remote.git"),
                    "--every", str(settings.resync_s)],
                   {"PYTHONPATH": PROGRAM_PYTHONPATH, **settings.as_environment()},
                   stop_wait_s=5)


def _prepare_airflow(settings: Settings, airflow: str) -> None:
    """Create the REST client's credential and bring the metadata database to the schema."""
    local_store.airflow_password(settings.state_dir)
    # `airflow db migrate` costs 10-15 s of imports here even with nothing to migrate: it is
    # skipped when this installation of Airflow last migrated this database to its revision.
    done = settings.state_dir / "airflow" / "migrated"
    if done.is_file() and done.read_text() == _migration_key(settings):
        return
    database, template = settings.state_dir / "airflow" / "airflow.db", _migrated_template(settings)
    fresh = not database.exists()
    if fresh and template.is_file():
        # A new platform on these environments (a second state dir, the test suite's second
        # platform): a copy of the schema they migrated once, not another 30 s migration.
        _copy_database(template, database)
    else:
        run([airflow, "db", "migrate"], env=airflow_environment(settings))
        if fresh:
            _copy_database(database, template)
    done.write_text(_migration_key(settings))


def _migrated_template(settings: Settings) -> Path:
    """A freshly migrated, empty metadata database, kept beside the platform environment it was
    migrated by: rebuilding that environment (`uv venv --clear`) removes it with it."""
    return settings.env_dir("platform") / "airflow-migrated.db"


def _copy_database(source: Path, target: Path) -> None:
    """The database as SQLite reads it (its journal included), replacing the target whole."""
    with contextlib.closing(sqlite3.connect(source)) as origin:
        content = origin.serialize()
    with replacing(target) as copy:
        copy.write(content)


def _migration_key(settings: Settings) -> str:
    """The platform environment's requirements digest and the database's schema revision;
    empty when there is no database yet."""
    database = settings.state_dir / "airflow" / "airflow.db"
    if not database.is_file():
        return ""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        try:
            revision = db.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            return ""
    return f"{environment_digest(settings, 'platform')} {revision[0] if revision else ''}"


def triton_paths(settings: Settings) -> tuple[Path, Path]:
    """(tritonserver binary, its package dir) inside the triton environment."""
    site = settings.env_dir("triton") / "lib" / f"python{_PYTHON}" / "site-packages"
    return site / "pytriton" / "tritonserver" / "bin" / "tritonserver", site


def _install_python_backend(settings: Settings) -> Path:
    """Copy the python backend with the stub for the running Python into the state dir."""
    _, site = triton_paths(settings)
    shipped = site / "pytriton" / "tritonserver"
    backends = settings.state_dir / "triton" / "backends"
    target = backends / "python"
    if not (target / "triton_python_backend_stub").exists():
        shutil.copytree(shipped / "backends" / "python", target, dirs_exist_ok=True)
        stub = shipped / "python_backend_stubs" / _PYTHON
        shutil.copy2(stub / "triton_python_backend_stub", target / "triton_python_backend_stub")
    return backends


def _triton(settings: Settings) -> Component:
    binary, site = triton_paths(settings)
    backends = settings.state_dir / "triton" / "backends"
    # The stub embeds libpython: it must load this interpreter's own library (another patch
    # level breaks multiprocessing), and it finds the environment's site-packages through the
    # first `python3` on PATH (its pyvenv.cfg), not through PYTHONPATH.
    libdir = str(sysconfig.get_config_var("LIBDIR"))
    key = local_store.triton_control_key(settings)
    control = f"{TRITON_CONTROL_HEADER}={key}"
    environment = {
        "LD_LIBRARY_PATH": f"{libdir}:{site / 'nvidia_pytriton.libs'}",
        "PATH": f"{settings.env_dir('triton') / 'bin'}:/usr/bin:/bin",
    }
    command = [
        str(binary), f"--model-repository={settings.model_repository}",
        f"--backend-directory={backends}", "--model-control-mode=explicit",
        f"--http-address={settings.host}", f"--http-port={settings.triton_http_port}",
        f"--grpc-address={settings.host}", f"--grpc-port={settings.triton_grpc_port}",
        f"--metrics-address={settings.host}", f"--metrics-port={settings.triton_metrics_port}",
        "--allow-gpu-metrics=false", "--exit-timeout-secs=5",
        # Load, unload and the repository index only with the key: Triton takes it on its
        # command line alone (readable by the host's users; README, Security).
        f"--http-restricted-api=model-repository:{control}",
        f"--grpc-restricted-protocol=model-repository:{control}",
    ]

    def prepare() -> None:
        settings.model_repository.mkdir(parents=True, exist_ok=True)
        _install_python_backend(settings)

    # Keeps every version desired state pins loaded, also after Triton restarts (it needs
    # tritonclient and the serving database's driver: the gateway's environment has both).
    reconciler = Program("triton-reconciler",
                         [_bin(settings, "gateway", "python"), "-m",
                          "onecommit.serving.reconciler"],
                         {"PYTHONPATH": PROGRAM_PYTHONPATH, **settings.as_environment(),
                          "ONECOMMIT_TRITON_CONTROL_KEY": key},
                         stop_wait_s=5)
    return Component(
        name="triton", env="triton", url=settings.url(settings.triton_http_port),
        health_path="/v2/health/ready", version_path="/v2",
        programs=[Program("triton", command, environment, stop_wait_s=10), reconciler],
        prepare=prepare,
    )


def _gateway(settings: Settings) -> Component:
    command = [_bin(settings, "gateway", "python"), "-m", "onecommit.gateway"]
    environment = {"PYTHONPATH": PROGRAM_PYTHONPATH, **settings.as_environment()}
    if settings.tls:
        # uvicorn's ssl_certfile / ssl_keyfile, through the gateway's settings.
        cert_file, key_file = settings.tls_pair("gateway")
        environment |= {"ONECOMMIT_GATEWAY_TLS_CERT_FILE": str(cert_file),
                        "ONECOMMIT_GATEWAY_TLS_KEY_FILE": str(key_file)}

    def prepare() -> None:
        gateway_admin_token(settings)
        if settings.tls:
            ensure_certs(settings)

    return Component(
        name="gateway", env="gateway", url=settings.gateway_url,
        health_path="/v2/health/ready", version_path="/version",
        programs=[Program("gateway", command, environment)], prepare=prepare,
        verify=settings.gateway_verify,
    )


def gateway_admin_token(settings: Settings) -> str:
    """The gateway's admin bearer token, generated once at the first `up` (mode 0600)."""
    return local_store.gateway_admin_token(settings.state_dir)


def components(settings: Settings) -> list[Component]:
    """The local profile's components, in start order: Airflow last, since its preparation
    (the database migration) is the longest and the others need not wait for it."""
    return [_mlflow(settings), _triton(settings), _gateway(settings), _airflow(settings)]


def feature_server(settings: FeatureSettings, programs: list[Program] | None = None,
                   ) -> Component:
    """The feature server as `invoke status` probes it."""
    return Component(name="feast", env="feast", url=settings.url(settings.feast_port),
                     health_path="/health", version_path="/health", programs=programs or [])
