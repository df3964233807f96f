"""Typed settings for every component, read from `ONECOMMIT_*` environment variables."""

from __future__ import annotations

import functools
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Profile = Literal["local", "kind", "compose"]


@dataclass(frozen=True)
class ProfileDefaults:
    """What a profile changes in the settings' defaults (its behaviour is the Profile of
    onecommit/platform/profiles.py)."""

    # A state dir of its own under the default one (its own registry, model repository and
    # gitops remote: a state dir shared with another profile would mix their versions); the
    # environments, built from the same requirements files, stay shared.
    state_subdir: str | None = None
    # Its containers' services include Redis: Feast's online store when set to `auto`.
    redis_included: bool = False


PROFILE_DEFAULTS: dict[Profile, ProfileDefaults] = {
    "local": ProfileDefaults(), "kind": ProfileDefaults(),
    "compose": ProfileDefaults(state_subdir="compose", redis_included=True)}
# What the compose profile's images are built on (onecommit/platform/images.py).
ImageBase = Literal["python", "debian"]
# The CA bundle every image trusts beside the public CAs: the host's trust store where it
# exists, none, or a PEM file.
ImageCaBundle = Literal["host", "none"] | Path
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# `invoke proof` writes here; the gateway's rollout page links the latest.
PROOFS_DIR = PROJECT_ROOT / "proofs"
# Holds sitecustomize.py, which makes every process of a platform program die with its parent.
ORPHANS_RULE = PROJECT_ROOT / "onecommit" / "platform" / "orphans"
# The PYTHONPATH of every Python program the platform runs: the project, and that rule.
PROGRAM_PYTHONPATH = f"{PROJECT_ROOT}:{ORPHANS_RULE}"
# Holds airflow_local_settings.py, which every Airflow process imports at start.
AIRFLOW_SETTINGS = PROJECT_ROOT / "onecommit" / "platform" / "airflow_settings"


def _as_variable(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    # Mappings and lists as JSON: how pydantic-settings reads them back.
    return json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)


class Settings(BaseSettings):
    """One place for the platform's configuration; every field is `ONECOMMIT_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="ONECOMMIT_", extra="ignore")

    profile: Profile = "local"
    state_dir: Path = Field(default=PROJECT_ROOT / ".onecommit")
    host: str = "127.0.0.1"
    mlflow_port: int = 5000
    airflow_port: int = 8080
    triton_http_port: int = 8000
    triton_grpc_port: int = 8001
    triton_metrics_port: int = 8002
    gateway_port: int = 9000
    # The compose profile's other services (its containers share this host's loopback).
    postgres_port: int = 5432
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    # The compose profile's images (`invoke images`): built on the public Python image, or on
    # one made from Debian's packages where no image registry answers (unset: a quick probe of
    # the public registry decides); trusting the host's CA bundle by default, which holds the
    # CA of a TLS-inspecting proxy the host trusts ("none", or another PEM file).
    image_base: ImageBase | None = None
    image_ca_bundle: ImageCaBundle = "host"
    # Where the local profile's MLflow server keeps artifacts: a folder in the state dir, or an
    # s3://bucket/prefix URI in an object store (endpoint MLFLOW_S3_ENDPOINT_URL and keys
    # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from `invoke up`'s environment), as on clusters.
    mlflow_artifacts_destination: str | None = Field(
        default=None, pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$")
    # Gateway processes serving on the one port (uvicorn workers); they share desired state
    # and the prediction log through the serving database, as replicas on a cluster do.
    gateway_workers: int = Field(default=1, ge=1, le=64)
    # The serving database (desired serving state, prediction log): SQLAlchemy URL. Default: a
    # SQLite file in the state dir; on clusters PostgreSQL (postgresql+psycopg://...).
    serving_db_url: SecretStr | None = None
    # The key Triton's model-control API (load, unload, repository index) asks for, in the
    # `TRITON_CONTROL_HEADER` header (HTTP) or `TRITON_CONTROL_METADATA` (gRPC). Unset: the one
    # generated at the first `up` (state dir, triton/control_key, 0600). Only the publish step
    # and the reconciler hold it: never part of `as_environment`, so the gateway and training
    # never get it.
    triton_control_key: SecretStr | None = None
    # How long the lifecycle retries a gateway that does not answer (restarting, say) before
    # the step fails.
    gateway_retry_s: float = Field(default=60.0, gt=0)
    # How often the Triton reconciler compares what desired state needs with what Triton has.
    reconcile_interval_s: float = Field(default=0.5, gt=0, le=30)
    # Each LocalExecutor slot is a resident worker process (~130 MB).
    airflow_parallelism: int = Field(default=2, ge=1)
    health_timeout_s: float = Field(default=180.0, gt=0)
    shared_dir: Path = Field(default=PROJECT_ROOT.parent / "shared")
    # Component environments; by default inside the state dir. Tests point several state dirs
    # at one set of environments.
    envs_path: Path | None = None
    # Airflow's REST API on clusters (the sync Job); locally the platform's own Airflow.
    airflow_api_url: str | None = None
    airflow_username: str = "onecommit"
    airflow_password: SecretStr | None = None
    # The gitops environment this platform deploys (`gitops/envs/<env>/`).
    gitops_env: str = Field(default="dev", pattern=r"^[a-z][a-z0-9-]*$")
    # Where a promotion (`source: {env: dev, ...}` in a model spec) fetches a version another
    # environment validated: env → that environment's MLflow URL, as JSON.
    promotion_registries: dict[str, str] = Field(default_factory=dict)
    # The tree a new gitops remote's first commit holds (the test suite seeds shorter rollouts).
    gitops_seed: Path = Field(default=PROJECT_ROOT / "gitops")
    # How long a deploy step that failed on a platform fault (its process killed, say) waits
    # before it runs again.
    deploy_retry_delay_s: float = Field(default=15.0, gt=0, le=3600)
    # The sync (`python -m onecommit.sync`, the gitops remote's hook and the periodic resync):
    # how often the local platform resyncs the tip (0: only on push, `up` and `invoke sync`),
    # the largest YAML or data file it reads,
    # how deep a YAML document may nest and how many aliases it may use, and how long one
    # commit's validation may take before it is recorded as an error.
    resync_s: float = Field(default=60.0, ge=0, le=86400)
    sync_max_file_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    sync_max_yaml_depth: int = Field(default=64, gt=0, le=500)
    sync_max_yaml_aliases: int = Field(default=100, ge=0)
    sync_step_timeout_s: float = Field(default=300.0, gt=0)
    # Every task of the deploy DAG ends after this long (a rollout's task included); the
    # spec's bounds on pauses and sample sizes keep a rollout well inside it.
    deploy_task_timeout_s: float = Field(default=4 * 3600.0, gt=0)
    # How many deploy runs (each of another model) may run at once.
    deploy_max_active_runs: int = Field(default=8, ge=1, le=64)
    # The deploy DAG's READY sensor: how often it asks and how long it waits.
    ready_poke_s: float = Field(default=2.0, gt=0)
    ready_timeout_s: float = Field(default=300.0, gt=0)
    # Folders on this machine a spec's absolute `data.source` may name (JSON list); none by
    # default: a commit's data then comes from its tree, a built-in set or an object store.
    data_roots: list[Path] = Field(default_factory=list)
    # The training sandbox's limits: CPU seconds, address space, wall-clock time, and the size
    # of the ONNX model it may hand back.
    training_cpu_s: int = Field(default=900, ge=1)
    training_memory_mb: int = Field(default=4096, ge=256)
    training_timeout_s: float = Field(default=1200.0, gt=0)
    training_max_model_mb: int = Field(default=256, ge=1)
    # The folder the trainer container shares with the scheduler (compose); unset, training runs
    # in bubblewrap on this machine.
    training_spool: Path | None = None
    # Slack incoming webhook; unset, notifications go to <state dir>/notifications.jsonl.
    notify_webhook_url: SecretStr | None = None
    # Serve the gateway over HTTPS with a certificate of the internal CA (`invoke up --tls`); the
    # platform's clients of the gateway then verify it against that CA.
    tls: bool = False
    # The sealed-secrets controller's certificate (`kubeseal --fetch-cert`) that `invoke seal`
    # and `invoke rotate` encrypt for.
    sealing_cert: Path | None = None
    # Plaintext input of `invoke seal`, written by `invoke rotate`; must stay git-ignored.
    secrets_file: Path = Field(default=PROJECT_ROOT / "secrets.local.yaml")

    @field_validator("state_dir", "shared_dir", "envs_path", "sealing_cert", "secrets_file",
                     "image_ca_bundle", "gitops_seed")
    @classmethod
    def _absolute(cls, value: Path | str | None) -> Path | str | None:
        # Supervisor and the services run with other working directories.
        return value.expanduser().resolve() if isinstance(value, Path) else value

    @field_validator("data_roots")
    @classmethod
    def _absolute_roots(cls, roots: list[Path]) -> list[Path]:
        return [root.expanduser().resolve() for root in roots]

    @model_validator(mode="after")
    def _profile_state_dir(self) -> Settings:
        subdir = PROFILE_DEFAULTS[self.profile].state_subdir
        if subdir is not None and "state_dir" not in self.model_fields_set:
            self.envs_path = self.envs_dir
            self.state_dir = self.state_dir / subdir
        return self

    @property
    def ports(self) -> dict[str, int]:
        """Every port the local profile binds, by a name that says what listens there."""
        return {
            "mlflow": self.mlflow_port,
            "airflow": self.airflow_port,
            "triton_http": self.triton_http_port,
            "triton_grpc": self.triton_grpc_port,
            "triton_metrics": self.triton_metrics_port,
            "gateway": self.gateway_port,
        }

    @property
    def envs_dir(self) -> Path:
        return self.envs_path or self.state_dir / "envs"

    def env_dir(self, component: str) -> Path:
        """A component's virtual environment (`onecommit.platform.envs` builds it)."""
        return self.envs_dir / component

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def serving_db(self) -> str:
        if self.serving_db_url is not None:
            return self.serving_db_url.get_secret_value()
        return f"sqlite:///{self.state_dir / 'serving' / 'serving.db'}"

    @property
    def model_repository(self) -> Path:
        return self.state_dir / "triton" / "models"

    def as_environment(self) -> dict[str, str]:
        """These settings as `ONECOMMIT_*` variables, for the processes the platform starts."""
        values = {name: getattr(self, name) for name in Settings.model_fields
                  if name != "triton_control_key"}
        return {f"ONECOMMIT_{name.upper()}": _as_variable(value)
                for name, value in values.items() if value is not None}

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    @property
    def tls_dir(self) -> Path:
        """The internal CA and its leaf certificates (`invoke certs`); keys are 0600."""
        return self.state_dir / "tls"

    def tls_pair(self, name: str) -> tuple[Path, Path]:
        """(certificate, key) PEM files of the CA (`ca`) or of a leaf (`gateway`, ...)."""
        return self.tls_dir / f"{name}.crt", self.tls_dir / f"{name}.key"

    @property
    def gateway_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.gateway_port}"

    def gateway_verify(self) -> ssl.SSLContext:
        """How clients check the gateway's certificate: against the internal CA under TLS."""
        return tls_context(self.tls_pair("ca")[0] if self.tls else None)


def tls_context(cafile: Path | None = None) -> ssl.SSLContext:
    """The process's one client context for a trust store: the default CAs, or `cafile` as it
    is now (a rotated CA file gets a new one). Pass it as httpx's `verify`: a client built
    without one loads the CA bundle again, 75 ms of CPU here, which polling loops and short
    clients paid on every call, even for plain HTTP."""
    return _tls_context(str(cafile) if cafile else None,
                        cafile.stat().st_mtime_ns if cafile else 0)


@functools.cache
def _tls_context(cafile: str | None, _modified_ns: int) -> ssl.SSLContext:
    if cafile:
        return ssl.create_default_context(cafile=cafile)
    import httpx  # only the processes that make HTTP calls need it

    return httpx.create_ssl_context()
