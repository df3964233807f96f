"""Health, version and memory of each running component."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import httpx
import psutil

from onecommit.clients.airflow import platform_client
from onecommit.clients.gateway import GatewayClient
from onecommit.errors import OnecommitError
from onecommit.platform import supervisor
from onecommit.platform.components import Component
from onecommit.settings import Settings

_AIRFLOW_PARTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


@dataclass(frozen=True)
class ComponentStatus:
    url: str
    healthy: bool
    detail: str
    pid: int | None
    version: str | None
    memory_mb: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe(component: Component, timeout_s: float = 3) -> tuple[bool, str]:
    """Ask the component's health endpoint; (healthy, why not)."""
    try:
        response = httpx.get(component.url + component.health_path, timeout=timeout_s,
                             verify=component.verify())
    except httpx.HTTPError as error:
        return False, f"{component.health_path}: {type(error).__name__}"
    if response.status_code != 200:
        return False, f"{component.health_path} answered {response.status_code}" + (
            f": {reason}" if (reason := _reason(response)) else "")
    if component.name == "airflow":
        # The API server answers before the scheduler and friends have sent a heartbeat.
        body = response.json()
        sick = [p for p in _AIRFLOW_PARTS if body.get(p, {}).get("status") != "healthy"]
        if sick:
            return False, f"not yet healthy: {', '.join(sick)}"
    return True, "ok"


def _reason(response: httpx.Response) -> str | None:
    """The `reason` a health answer gives (the gateway says why it is not ready)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return str(body["reason"]) if isinstance(body, dict) and "reason" in body else None


def version(settings: Settings, component: Component) -> str | None:
    try:
        if component.name == "airflow":
            client = platform_client(settings)
            try:
                return client.version()
            finally:
                client.close()
        response = httpx.get(component.url + component.version_path, timeout=3,
                             verify=component.verify())
        response.raise_for_status()
        if response.headers.get("content-type", "").startswith("application/json"):
            return str(response.json()["version"])
        return response.text.strip()
    except (httpx.HTTPError, KeyError, ValueError):
        return None


def serving(settings: Settings) -> dict[str, Any]:
    """What the gateway serves, as it observes it now: per model the champion, challenger and
    previous versions, the strategy, and whether the champion is served (READY in Triton)."""
    try:
        with GatewayClient(settings, retry_s=2) as gateway:
            models: dict[str, Any] = gateway.models()["models"]
            return {"models": models}
    except OnecommitError as error:
        return {"models": {}, "error": str(error)}


def describe_serving(serving: dict[str, Any]) -> list[str]:
    """One line per model for `invoke status`."""
    if "error" in serving:
        return [f"models: not known ({serving['error']})"]
    if not serving["models"]:
        return ["models: none deployed yet"]
    return [f"model {name}: "
            + (", ".join(f"{alias} v{m[alias]}" for alias in ("champion", "challenger",
                                                             "previous")
                         if m[alias] is not None) or "nothing pinned")
            + f", {m['strategy']} — "
            + ("serving" if m["serving"] else "NOT serving: " + (
                "the champion is not loaded" if m["champion"] is not None
                else "no champion pinned"))
            + f" (revision {m['revision']})"
            for name, m in sorted(serving["models"].items())]


def tree_memory_mb(pid: int) -> float:
    """Memory of a process and all its descendants (workers, stubs, forked tasks), as their
    proportional set sizes: a page shared by n processes counts 1/n for each, so forked
    children that share their parent's pages are not counted twice."""
    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in family:
        try:
            total += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return round(total / 2**20, 1)


def status(settings: Settings, component: Component,
           running: dict[str, supervisor.ProcessInfo]) -> ComponentStatus:
    """A component is healthy only when every one of its processes runs and its probe passes."""
    infos = [running.get(p.name) for p in component.programs]
    down = [p.name for p, i in zip(component.programs, infos, strict=True)
            if i is None or i.state != "RUNNING"]
    pids = [i.pid for i in infos if i is not None and i.pid]
    if down:
        healthy, detail = False, f"not running: {', '.join(down)}"
    else:
        healthy, detail = probe(component)
    return ComponentStatus(
        url=component.url, healthy=healthy, detail=detail, pid=pids[0] if pids else None,
        version=version(settings, component) if healthy else None,
        memory_mb=round(sum(tree_memory_mb(pid) for pid in pids), 1),
    )
