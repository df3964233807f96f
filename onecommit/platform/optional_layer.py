"""Attach (`on`) and detach (`off`) the Feast layer to the running platform.

On: Redis (when chosen) → apply + materialise unless the same data is already materialised →
feature server → gateway enrichment switched on, live.
Off: gateway enrichment off first → feature server and Redis stopped; the registry, the offline
file and the online data stay, so the next `on` serves at once.

The steps are the same on either profile; where the programs run is a `Runtime`: the local
profile's supervisor (`Supervised`, with the feast environment) or compose's containers
(`onecommit.platform.optional_containers`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from onecommit.clients.gateway import on_every_worker
from onecommit.features import dataset
from onecommit.features.offline import run_job
from onecommit.features.settings import FEATURE_SERVER, REDIS, FeatureSettings
from onecommit.features.state import feature_settings, read_state, state_file, write_state
from onecommit.gateway.enrichment import (
    EnrichmentConfig,
    EnrichmentError,
    config_file,
    feature_rows,
    write_config,
)
from onecommit.platform import health, supervisor
from onecommit.platform.components import (
    Component,
    Program,
    components,
    feature_server,
    gateway_admin_token,
)
from onecommit.platform.envs import ensure_env
from onecommit.platform.health import ComponentStatus
from onecommit.platform.local import PlatformError, Report, start_component, tail
from onecommit.platform.optional_runtime import Runtime, redis_ready, refuse_taken_ports, wait_ready
from onecommit.settings import Settings


@dataclass(frozen=True)
class Attached:
    """What `on` did: `materialized` is False when the online store already held the data."""

    online_store: str
    feature_server: str
    materialized: bool
    timings: dict[str, float] = field(default_factory=dict)


def serve_arguments(settings: FeatureSettings) -> list[str]:
    """`feast serve`'s arguments after the repo's and the YAML's, on either profile."""
    return ["serve", "--host", settings.host, "--port", str(settings.feast_port),
            "--workers", "1", "--no-access-log",
            # A worker recycled after N requests leaves the only worker's queue waiting.
            "--max-requests", "0"]


def layer_components(settings: FeatureSettings) -> list[Component]:
    """The supervised programs: Redis (for the Redis online store), then the feature server."""
    feast = str(settings.env_dir("feast") / "bin" / "feast")
    serve = [feast, "--chdir", str(settings.feast_repo), "--feature-store-yaml",
             str(settings.store_yaml()), *serve_arguments(settings)]
    server = feature_server(settings, [Program(FEATURE_SERVER, serve,
                                               settings.feast_environment())])
    binary = settings.redis_server()
    if settings.online_store() != "redis" or binary is None:
        return [server]
    # Append-only file plus snapshots in the state dir: a stopped Redis comes back with its data.
    command = [str(binary), "--bind", settings.host, "--port", str(settings.feast_redis_port),
               "--dir", str(settings.redis_dir), "--appendonly", "yes", "--daemonize", "no"]
    redis = Component(name="redis", env="feast", url=f"redis://{settings.host}:"
                      f"{settings.feast_redis_port}", health_path="", version_path="",
                      programs=[Program(REDIS, command)],
                      prepare=lambda: settings.redis_dir.mkdir(parents=True, exist_ok=True))
    return [redis, server]


@dataclass(frozen=True)
class Supervised:
    """The local profile: the programs under the platform's supervisord, from the feast
    environment (built on the first `on`)."""

    settings: FeatureSettings

    def check(self) -> None:
        settings = self.settings
        if supervisor.supervisord_pid(settings) is None:
            raise PlatformError("the platform is not running: start it with `invoke up` first")
        binary = settings.redis_server()
        if settings.online_store() == "redis" and (binary is None or not binary.is_file()):
            raise PlatformError(f"no redis-server binary at {binary or 'PATH'}: install Redis, "
                                "set ONECOMMIT_FEAST_REDIS_SERVER, or "
                                "ONECOMMIT_FEAST_ONLINE_STORE=sqlite")
        refuse_taken_ports(settings, [p.name for c in layer_components(settings)
                                      for p in c.programs], self.running())

    def running(self) -> set[str]:
        return {name for name, info in supervisor.processes(self.settings).items()
                if info.state == "RUNNING" and name in (FEATURE_SERVER, REDIS)}

    def start_store(self, report: Report) -> None:
        report(f"environment feast: ready at {ensure_env(self.settings, 'feast')}")
        layer = layer_components(self.settings)
        self._register(layer)
        if any(c.name == "redis" for c in layer):
            self._wait_redis(report)

    def prepare(self) -> dict[str, float]:
        return run_job(self.settings, "prepare")

    def start_server(self, report: Report) -> None:
        start_component(self.settings, layer_components(self.settings)[-1], report)

    def stop(self, program: str) -> None:
        info = supervisor.processes(self.settings).get(program)
        if info is not None and info.state in {"RUNNING", "STARTING", "BACKOFF"}:
            supervisor.rpc(self.settings).supervisor.stopProcess(program, True)

    def server_status(self) -> ComponentStatus:
        running = supervisor.processes(self.settings)
        server = health.status(self.settings, layer_components(self.settings)[-1], running)
        redis = running.get(REDIS)
        if redis is None or not redis.pid:
            return server
        return replace(server, memory_mb=server.memory_mb + health.tree_memory_mb(redis.pid))

    def server_log(self) -> tuple[str, str]:
        log = supervisor.log_file(self.settings, FEATURE_SERVER)
        return str(log), tail(log)

    def _register(self, layer: list[Component]) -> None:
        """Add the layer's programs to the platform's supervisord, replacing changed
        definitions."""
        settings = self.settings
        for component in layer:
            component.prepare()
        supervisor.write_config(settings, [*components(settings), *layer])
        supervisor.ensure_running(settings)
        rpc = supervisor.rpc(settings).supervisor
        _added, changed, _removed = rpc.reloadConfig()[0]
        ours = {p.name for c in layer for p in c.programs}
        for name in set(changed) & ours:
            self.stop(name)
            rpc.removeProcessGroup(name)
            rpc.addProcessGroup(name)

    def _wait_redis(self, report: Report) -> None:
        settings = self.settings
        supervisor.start(settings, REDIS)

        def exited() -> tuple[str, str] | None:
            state = supervisor.processes(settings).get(REDIS)
            if state is None or state.state in {"FATAL", "EXITED", "BACKOFF", "STOPPED"}:
                log = supervisor.log_file(settings, REDIS)
                return str(log), tail(log)
            return None

        wait_ready(settings, REDIS, redis_ready(settings), exited, report)


def _stamp(settings: FeatureSettings) -> str:
    """What the online store must have been materialised from to be reused as it is."""
    hasher = hashlib.sha256(dataset.digest(dataset.patients()).encode())
    for path in (settings.feast_repo / "features.py", settings.store_yaml()):
        hasher.update(path.read_bytes())
    hasher.update(settings.online_store().encode())
    return hasher.hexdigest()


def enrichment_config(settings: FeatureSettings) -> EnrichmentConfig:
    return EnrichmentConfig(enabled=True, feature_server_url=settings.url(settings.feast_port),
                            entity=dataset.ENTITY, features=dataset.feature_refs(),
                            timeout_s=settings.feast_timeout_s)


def _online_rows_present(settings: FeatureSettings, runtime: Runtime) -> bool:
    """The first and last patient read back through the feature server."""
    config = enrichment_config(settings)
    ids = [0, len(dataset.patients().ids) - 1]
    try:
        response = httpx.post(f"{config.feature_server_url}/get-online-features", timeout=30,
                              json={"entities": {config.entity: ids},
                                    "features": config.features})
        response.raise_for_status()
    except httpx.HTTPError as error:
        log, last = runtime.server_log()
        raise PlatformError(f"the feature server failed a read of the online store ({error}): "
                            f"see {log}", detail=last) from None
    try:
        feature_rows(response.json(), config, ids)
    except EnrichmentError:
        return False
    return True


def _switch_gateway(settings: FeatureSettings, config: EnrichmentConfig) -> bool:
    """Apply the configuration in the running gateway; False when no gateway is running."""
    try:
        response = httpx.put(f"{settings.gateway_url}/enrichment", timeout=30,
                             json=config.model_dump(), verify=settings.gateway_verify(),
                             headers={"Authorization": f"Bearer {gateway_admin_token(settings)}"})
    except httpx.ConnectError:
        return False
    if response.status_code != 200:
        raise PlatformError(f"the gateway refused the enrichment switch ({response.status_code}:"
                            f" {response.text[:200]}): check `invoke logs gateway`")
    return True


def _settled(settings: FeatureSettings, config: EnrichmentConfig) -> None:
    """Until every gateway worker has taken the configuration: the one the switch reached at
    once, the others from the file they follow."""
    wanted = config.model_dump()
    on_every_worker(settings, "/enrichment",
                    lambda answer: {k: answer.get(k) for k in wanted} == wanted)


def on(settings: Settings, where: Runtime, report: Report = print) -> Attached:
    """Attach the layer, its programs run by `where` (the profile's runtime); idempotent.
    Anything it started is stopped again if a step fails."""
    feature = feature_settings(settings)
    where.check()
    before = where.running()
    try:
        return _attach(feature, where, report)
    except Exception:
        for program in (FEATURE_SERVER, REDIS):
            if program not in before:
                where.stop(program)
        raise


def _attach(settings: FeatureSettings, where: Runtime, report: Report) -> Attached:
    where.start_store(report)
    stamp, timings = _stamp(settings), {}
    materialized = read_state(settings).get("stamp") != stamp
    if materialized:
        timings = where.prepare()
        report(f"feast: applied in {timings['apply_s']} s, materialised in "
               f"{timings['materialize_s']} s ({settings.online_store()} online store)")
    else:
        report("feast: online store already materialised from the same data; skipped")
    where.start_server(report)
    if not _online_rows_present(settings, where):
        raise PlatformError("the online store lacks materialised rows though its record says "
                            f"otherwise: delete {state_file(settings)} and run "
                            "`invoke optional --on` again to re-materialise")
    write_state(settings, stamp=stamp, online_store=settings.online_store())
    config = enrichment_config(settings)
    if not _switch_gateway(settings, config):
        raise PlatformError("the gateway is not running: start the platform with `invoke up`")
    write_config(config_file(settings.state_dir), config)
    _settled(settings, config)
    write_state(settings, attached=True)
    report(f"gateway: enrichment on ({dataset.ENTITY} → {len(config.features)} features)")
    return Attached(settings.online_store(), config.feature_server_url, materialized, timings)


def off(settings: Settings, where: Runtime, report: Report = print) -> None:
    """Detach: enrichment off in the gateway first, then stop the feature server and Redis."""
    feature = feature_settings(settings)
    disabled = EnrichmentConfig()
    switched = _switch_gateway(feature, disabled)
    write_config(config_file(feature.state_dir), disabled)
    if switched:
        _settled(feature, disabled)
    write_state(feature, attached=False)
    report("gateway: enrichment off" if switched else
           "gateway: not running (it starts with enrichment off)")
    for program in (FEATURE_SERVER, REDIS):
        where.stop(program)
    report(f"feast: feature server and redis stopped; data kept in {feature.features_dir}")


def status(settings: Settings, where: Runtime) -> dict[str, Any]:
    """Attached or detached, the online store, and the feature server's health and memory."""
    feature = feature_settings(settings)
    state = read_state(feature)
    server = where.server_status()
    return {"attached": bool(state.get("attached")), "online_store": state.get("online_store"),
            "feature_server": server.url, "healthy": server.healthy, "detail": server.detail,
            "memory_mb": round(server.memory_mb, 1)}


def describe(status: dict[str, Any]) -> str:
    """One line for `invoke status`."""
    if not status["attached"]:
        return "optional layer (feast): detached (`invoke optional --on` attaches it)"
    health_text = "healthy" if status["healthy"] else f"NOT healthy ({status['detail']})"
    return (f"optional layer (feast): attached, {status['online_store']} online store, feature "
            f"server {health_text} at {status['feature_server']}, {status['memory_mb']:.1f} MB")
