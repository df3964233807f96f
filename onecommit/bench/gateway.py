"""`invoke bench gateway`: the same model, host and client against direct Triton, the gateway
(routed, canary 50/50 between two versions) and `mlflow models serve`, at 1 and 4
connections; then challenger reloads under load, and the canary split at 20%.

The bench brings the local platform up if it is down and takes it down again afterwards,
registers a champion and a challenger if the registry lacks them, and puts the gateway's
traffic policy back as it found it. Every server it starts itself listens on 127.0.0.1 and is
stopped by its pid.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from onecommit import commands
from onecommit.bench import load, report
from onecommit.bench.config import BenchConfig
from onecommit.bench.models import register_version
from onecommit.lifecycle import data, registry
from onecommit.lifecycle.spec import ModelSpec, load_spec
from onecommit.platform import local, supervisor
from onecommit.platform.components import gateway_admin_token
from onecommit.settings import PROJECT_ROOT, Settings
from onecommit.vocabulary import CHALLENGER, CHAMPION

Say = Callable[[str], None]
VARIANT_HEADER = "x-onecommit-variant"


@dataclass
class Endpoint:
    """A server under test: where to send, and what."""

    name: str
    port: int
    request: load.Request
    admin: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((load.HOST, 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def platform_as_found(settings: Settings, say: Say) -> Iterator[None]:
    """The platform up for the bench; afterwards exactly what the bench started is stopped."""
    fresh = supervisor.supervisord_pid(settings) is None
    running = {n for n, i in supervisor.processes(settings).items() if i.state == "RUNNING"}
    local.up(settings, report=say)
    try:
        yield
    finally:
        if fresh:
            say("stopping the platform the bench started")
            local.down(settings)
        else:
            for name, info in supervisor.processes(settings).items():
                if name not in running and info.state == "RUNNING":
                    say(f"stopping {name}, which the bench started")
                    supervisor.rpc(settings).supervisor.stopProcess(name)


@dataclass(frozen=True)
class Versions:
    champion: int
    challenger: int
    registered: list[int]


def ensure_versions(settings: Settings, spec: ModelSpec, say: Say) -> Versions:
    """A champion and a distinct challenger, registering what is missing, both pinned by the
    gateway."""
    client = registry.client(settings.url(settings.mlflow_port))
    champion = registry.alias_version(client, spec.model, CHAMPION)
    challenger = registry.alias_version(client, spec.model, CHALLENGER)
    registered = []
    split = data.of_spec(spec)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    if champion is None:
        champion = _register(settings, spec, split, {}, f"bench-{stamp}-champion", say)
        registered.append(champion)
        client.set_registered_model_alias(spec.model, CHAMPION, str(champion))
    if challenger is None or challenger == champion:
        # A weaker regularisation: a genuinely different second version of the same model.
        challenger = _register(settings, spec, split, {"C": 0.1}, f"bench-{stamp}-challenger",
                               say)
        registered.append(challenger)
    admin = _admin(settings)
    for alias, version in ((CHAMPION, champion), (CHALLENGER, challenger)):
        pinned = httpx.post(f"{settings.url(settings.gateway_port)}/models/{spec.model}/variant/"
                            f"{alias}/reload", headers=admin, timeout=60)
        if pinned.status_code != 200 or pinned.json()["version"] != version:
            raise RuntimeError(f"gateway reload of {alias} failed: {pinned.text}")
    return Versions(champion, challenger, registered)


def _register(settings: Settings, spec: ModelSpec, split: data.Split,
              params: dict[str, Any], run_id: str, say: Say) -> int:
    context = registry.RunContext(git_sha="bench", env="bench", dag_run_id=run_id)
    version = register_version(settings, spec, split, params, context)
    say(f"registered and loaded version {version} of {spec.model} ({run_id})")
    return version


def _admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {gateway_admin_token(settings)}"}


@contextmanager
def traffic_restored(url: str, model: str, admin: dict[str, str]) -> Iterator[None]:
    """Whatever the bench sets, the model's traffic policy ends as it was."""
    answer = httpx.get(f"{url}/models/{model}/traffic", timeout=10).json()
    # The policy's own fields; the answer also says its weights, revision and replica.
    before = {k: answer[k] for k in ("strategy", "challenger_weight", "active", "sticky_key",
                                     "experiment")}
    try:
        yield
    finally:
        httpx.put(f"{url}/models/{model}/traffic", json=before, headers=admin,
                  timeout=10).raise_for_status()


def set_canary(endpoint: Endpoint, model: str, weight: float, experiment: str = "bench") -> None:
    response = httpx.put(f"http://{load.HOST}:{endpoint.port}/models/{model}/traffic",
                         headers=endpoint.admin,
                         json={"strategy": "canary", "challenger_weight": weight,
                               "experiment": experiment}, timeout=10)
    response.raise_for_status()


@contextmanager
def server(command: list[str], environment: dict[str, str], port: int, health: str,
           log: Path, timeout_s: float = 180) -> Iterator[None]:
    """A server process the bench owns: started in its own session, waited for until healthy,
    and stopped (its process group, by the pid we started) when done."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        # Not the command runner: a server this context owns and stops. Started in the log's
        # folder: `python -m` puts its working directory first on sys.path, and the project
        # root there would shadow the code a process should run.
        process = subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, cwd=log.parent)
    try:
        _wait_healthy(process, f"http://{load.HOST}:{port}{health}", log, timeout_s)
        yield
    finally:
        _stop(process)


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path,
                  timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}; see {log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not healthy after {timeout_s:.0f} s; see {log}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # Its own session: the group id is the pid we started, and holds only its children.
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def mlflow_serve(settings: Settings, model: str, version: int, port: int,
                 logs: Path) -> AbstractContextManager[None]:
    """`mlflow models serve` of the same version, one worker like the gateway, from the
    platform environment: the one that logged the model, whose onnx, onnxruntime and numpy
    are the requirements the model records. (The mlflow environment is the tracking server's
    and has no ONNX Runtime, which serving an ONNX model needs.)"""
    bin_dir = settings.env_dir("platform") / "bin"
    command = [str(bin_dir / "mlflow"), "models", "serve",
               "-m", f"models:/{model}/{version}", "--env-manager", "local",
               "-h", load.HOST, "-p", str(port), "--workers", "1"]
    # It starts `uvicorn` by name: the platform environment's bin comes first on PATH.
    environment = {**os.environ, "MLFLOW_TRACKING_URI": settings.url(settings.mlflow_port),
                   "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return server(command, environment, port, "/ping", logs / "mlflow-serve.log")


def other_gateway(settings: Settings, backend: dict[str, str], port: int, token: str,
                  state_dir: Path, code: Path = PROJECT_ROOT) -> AbstractContextManager[None]:
    """A second gateway process on another backend, or from other code, with its own state
    dir (its own logs) and the platform's Triton, MLflow and model repository."""
    environment = {**os.environ, **settings.as_environment(),
                   "PYTHONPATH": str(code), "ONECOMMIT_STATE_DIR": str(state_dir),
                   "ONECOMMIT_GATEWAY_PORT": str(port), "ONECOMMIT_GATEWAY_ADMIN_TOKEN": token,
                   "ONECOMMIT_GATEWAY_ONNX_MODEL_DIR": str(settings.model_repository),
                   **backend}
    command = [str(settings.env_dir("gateway") / "bin" / "python"), "-m", "onecommit.gateway"]
    state_dir.mkdir(parents=True, exist_ok=True)
    return server(command, environment, port, "/v2/health/ready",
                  state_dir / f"gateway-{port}.log")


def export_code(ref: str, target: Path) -> Path:
    """The `onecommit` package as committed at `ref`, unpacked under `target` (a before/after
    comparison runs that gateway beside today's)."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    archive = commands.run(["git", "archive", ref, "onecommit"], cwd=PROJECT_ROOT, text=False)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as bundle:
        bundle.extractall(target, filter="data")
    return target


def v2_body(row: np.ndarray[Any, Any]) -> bytes:
    return orjson.dumps({"inputs": [{"name": "X", "shape": [1, row.size], "datatype": "FP32",
                                     "data": row.astype(np.float32).ravel().tolist()}]})


def measure(endpoints: list[Endpoint], config: BenchConfig, say: Say) -> list[report.Summary]:
    """Every endpoint at every connection count with the same client. Each cell's time is
    split into `config.rounds` slices taken in turn with the other endpoints' slices, so a
    burst of load from elsewhere on the host falls on every endpoint alike, not on one."""
    cells = []
    plan_slice = config.duration_s / config.rounds
    for connections in config.connections:
        merged = {e.name: load.Result() for e in endpoints}
        for _ in range(config.rounds):
            for endpoint in endpoints:
                plan = load.Plan(connections, requests=10_000_000, duration_s=plan_slice)
                result = load.run(endpoint.port, endpoint.request, plan)
                merged[endpoint.name].merge(result)
                merged[endpoint.name].elapsed_s += result.elapsed_s
        for endpoint in endpoints:
            result = merged[endpoint.name]
            summary = report.summarize(endpoint.name, connections, result.latencies_ms,
                                       result.failures, result.elapsed_s)
            say(f"  {endpoint.name:<16} {connections} conn: {summary.rps:8.0f} rps  "
                f"p50 {summary.p50_ms:6.2f} ms  p99 {summary.p99_ms:6.2f} ms  "
                f"failed {summary.failed}")
            cells.append(summary)
    return cells


def reload_under_load(gateway: Endpoint, model: str, config: BenchConfig,
                      say: Say) -> report.ReloadRun:
    """Scenario 2: reload the challenger `config.reloads` times while steady load runs. The
    same load without reloads, just before, says how much of the worst case is the host's."""
    plan = load.Plan(config.reload_connections, requests=10_000_000,
                     duration_s=config.duration_s * 2)
    quiet = load.run(gateway.port, gateway.request, plan)
    outcome: list[load.Result] = []
    runner = threading.Thread(target=lambda: outcome.append(
        load.run(gateway.port, gateway.request, plan)))
    runner.start()
    url = (f"http://{load.HOST}:{gateway.port}/models/{model}/variant/{CHALLENGER}"
           "/reload")
    gap = config.duration_s * 2 / (config.reloads + 2)
    reloaded = 0
    try:
        for _ in range(config.reloads):
            time.sleep(gap)
            response = httpx.post(url, headers=gateway.admin, timeout=60)
            if response.status_code != 200:
                raise RuntimeError(f"challenger reload failed: {response.text}")
            reloaded += 1
    finally:
        runner.join()
    if not outcome:
        raise RuntimeError("the load run under reloads did not finish")
    result = outcome[0]
    run = report.ReloadRun(reloads=reloaded, requests=result.requests, failed=result.failures,
                           worst_ms=round(max(result.latencies_ms), 3),
                           p99_ms=_p99(result), quiet_worst_ms=round(max(quiet.latencies_ms), 3),
                           quiet_p99_ms=_p99(quiet))
    say(f"  {run.reloads} reloads under {config.reload_connections}-connection load: "
        f"{run.requests} requests, {run.failed} failed, worst {run.worst_ms:.1f} ms, p99 "
        f"{run.p99_ms:.1f} ms (same load without reloads: worst {run.quiet_worst_ms:.1f} ms, "
        f"p99 {run.quiet_p99_ms:.1f} ms)")
    return run


def _p99(result: load.Result) -> float:
    return report.summarize("", 1, result.latencies_ms, 0, result.elapsed_s).p99_ms


def canary_split(gateway: Endpoint, model: str, config: BenchConfig,
                 say: Say) -> report.SplitRun:
    """Scenario 3: `config.split_requests` routed requests at the canary weight, counted by the
    variant header each response carries."""
    set_canary(gateway, model, config.split_weight, experiment="bench-split")
    plan = load.Plan(4, requests=config.split_requests, duration_s=600, warmup=0)
    result = load.run(gateway.port, gateway.request, plan, watch_header=VARIANT_HEADER)
    run = report.SplitRun(requests=result.requests, weight=config.split_weight,
                          challenger=result.watched[CHALLENGER],
                          failed=result.failures)
    say(f"  {run.requests} requests at canary {run.weight:.0%}: challenger share "
        f"{run.share:.2%}")
    return run


def run(settings: Settings, config: BenchConfig, say: Say = print) -> dict[str, Any]:
    """The three scenarios; writes `<out_dir>/<name>.json` and `.png` and returns the report."""
    load_before = os.getloadavg()
    spec = load_spec(config.spec_path)
    with platform_as_found(settings, say):
        versions = ensure_versions(settings, spec, say)
        with traffic_restored(settings.url(settings.gateway_port), spec.model,
                              _admin(settings)):
            cells, reload, split = _scenarios(settings, spec, versions, config, say)
    found = report.targets(cells, reload, split)
    result = {
        "machine": report.machine(load_before, os.getloadavg()),
        "model": {"name": spec.model, "champion": versions.champion,
                  "challenger": versions.challenger, "registered_by_bench": versions.registered},
        "config": {"duration_s": config.duration_s, "rounds": config.rounds,
                   "connections": list(config.connections), "baseline_ref": config.baseline_ref,
                   "gateway": "routed, canary 50/50 champion/challenger",
                   "triton_direct": f"version {versions.champion}, pinned path",
                   "mlflow_serve": f"version {versions.champion}, --env-manager local (the "
                                   "platform environment), 1 worker",
                   "client": "onecommit.bench.load: 1 thread per keep-alive connection"},
        "cells": cells, "reload": reload,
        "canary_split": {**split.__dict__, "share": round(split.share, 4)},
        "targets": [t.as_dict() for t in found],
    }
    report.write_json(config.out_dir / f"{config.name}.json", result)
    report.chart(config.out_dir / f"{config.name}.png", cells,
                 f"{spec.model}: 1 row per request, {os.cpu_count()} CPUs, "
                 f"load avg {load_before[0]:.2f} at start")
    say(report.table(cells))
    for target in found:
        say(target.line())
    return result


def _scenarios(settings: Settings, spec: ModelSpec, versions: Versions, config: BenchConfig,
               say: Say) -> tuple[list[report.Summary], report.ReloadRun, report.SplitRun]:
    row = data.of_spec(spec).x_holdout[0]
    endpoints = _endpoints(settings, spec.model, versions, row)
    # Server logs and the other gateways' state stay in the state dir, for diagnosis.
    work = settings.state_dir / "bench"
    with _servers(settings, spec.model, versions, endpoints, config, work) as measured:
        for endpoint in measured:
            if endpoint.admin:
                set_canary(endpoint, spec.model, 0.5)
        say(f"load average {os.getloadavg()}; {config.duration_s:.0f} s per cell")
        cells = measure(measured, config, say)
    gateway = endpoints[1]
    set_canary(gateway, spec.model, 0.5)
    return (cells, reload_under_load(gateway, spec.model, config, say),
            canary_split(gateway, spec.model, config, say))


def _endpoints(settings: Settings, model: str, versions: Versions,
               row: np.ndarray[Any, Any]) -> list[Endpoint]:
    body = v2_body(row)
    routed = load.Request(f"/v2/models/{model}/infer", body)
    return [
        Endpoint(report.DIRECT, settings.triton_http_port,
                 load.Request(f"/v2/models/{model}/versions/{versions.champion}/infer", body)),
        Endpoint(report.GATEWAY, settings.gateway_port, routed, _admin(settings)),
        Endpoint(report.MLFLOW, free_port(), load.Request(
            "/invocations", orjson.dumps({"inputs": [row.astype(np.float32).tolist()]}))),
    ]


# Gateways on the other backends: informational rows beside the platform's gateway.
_OTHER_BACKENDS = {
    "gateway-grpc": {"ONECOMMIT_GATEWAY_BACKEND": "triton",
                     "ONECOMMIT_GATEWAY_TRITON_PROTOCOL": "grpc"},
    "gateway-onnx": {"ONECOMMIT_GATEWAY_BACKEND": "onnx"},
}


@contextmanager
def _servers(settings: Settings, model: str, versions: Versions, endpoints: list[Endpoint],
             config: BenchConfig, work: Path) -> Iterator[list[Endpoint]]:
    """mlflow serve, and the other-backend gateways when asked; yields every endpoint to
    measure, and stops what it started on exit."""
    direct, gateway, mlflow = endpoints
    with ExitStack() as stack:
        stack.enter_context(mlflow_serve(settings, model, versions.champion, mlflow.port, work))
        others = []
        token = secrets.token_urlsafe(24)
        if config.other_backends:
            for name, backend in _OTHER_BACKENDS.items():
                port = free_port()
                stack.enter_context(other_gateway(settings, backend, port, token, work / name))
                # The same routed request as the platform's gateway gets.
                others.append(Endpoint(name, port, gateway.request,
                                       {"Authorization": f"Bearer {token}"}))
        if config.baseline_ref:
            name = f"gateway@{config.baseline_ref}"
            port = free_port()
            code = export_code(config.baseline_ref, work / "baseline-code")
            stack.enter_context(other_gateway(settings, {}, port, token, work / "baseline", code))
            others.append(Endpoint(name, port, gateway.request,
                                   {"Authorization": f"Bearer {token}"}))
        yield [direct, gateway, *others, mlflow]
