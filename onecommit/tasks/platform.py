"""`invoke up / down / status / logs`: the local platform."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit

from onecommit.commands import run
from onecommit.platform import health, kind, local, optional_layer, profiles
from onecommit.progress import Progress
from onecommit.settings import Settings
from onecommit.tasks import task


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and task flags (a bad value is refused in one line)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _kind_profile(settings: Settings, plan: Callable[[bool], None], dry_run: bool) -> bool:
    """Run (or print) a kind plan when that is the profile; False leaves the local profile."""
    if settings.profile != "kind":
        if dry_run:
            raise Exit("--dry-run prints the kind profile's plan: add --profile kind", code=2)
        return False
    plan(dry_run)
    return True


PROFILE = "local (default), compose or kind"


@task(help={"profile": PROFILE,
            "tls": "serve the gateway over HTTPS with the internal CA (= ONECOMMIT_TLS=true)",
            "dry_run": "kind profile: print every command instead of running it"})
def up(c: Context, profile: str | None = None, tls: bool = False, dry_run: bool = False) -> None:
    """Start the platform and wait until every component is healthy (idempotent)."""
    settings = load_settings(profile=profile, tls=tls or None)
    if _kind_profile(settings, kind.up, dry_run):
        return
    with Progress() as report:
        profiles.up(settings, report)
    print_urls(settings)


@task(help={"profile": PROFILE,
            "volumes": "compose profile: remove its volumes too (databases, metrics)",
            "dry_run": "kind profile: print every command instead of running it"})
def down(c: Context, profile: str | None = None, volumes: bool = False,
         dry_run: bool = False) -> None:
    """Stop every process `invoke up` started (compose: its containers; kind: the cluster)."""
    settings = load_settings(profile=profile)
    if _kind_profile(settings, kind.down, dry_run):
        return
    profiles.down(settings, volumes=volumes)
    print("platform stopped")


@task(help={"json": "print machine-readable JSON", "profile": PROFILE})
def status(c: Context, json_: bool = False, profile: str | None = None) -> None:
    """Each component's URL, pid, health, version and resident memory."""
    settings = load_settings(profile=profile)
    report = profiles.statuses(settings)
    optional = optional_layer.status(settings)
    served = health.serving(settings) if report["gateway"].pid else None
    total = round(sum(s.memory_mb for s in report.values()) + optional["memory_mb"], 1)
    if json_:
        # "models" per model (champion, challenger, strategy, serving); "error" when the
        # gateway did not say.
        print(json.dumps({"components": {n: s.as_dict() for n, s in report.items()},
                          **(served or {"models": {}}), "optional": optional,
                          "total_memory_mb": total}, indent=2))
    else:
        print(f"{'component':<10} {'healthy':<8} {'pid':>8} {'mem_mb':>8}  {'version':<10} url")
        for name, s in report.items():
            print(f"{name:<10} {'yes' if s.healthy else 'NO':<8} {s.pid or '-':>8} "
                  f"{s.memory_mb:>8.1f}  {s.version or '-':<10} {s.url}"
                  + ("" if s.healthy else f"  ({s.detail})"))
        if served is not None:
            print("\n".join(health.describe_serving(served)))
        print(optional_layer.describe(optional))
        if settings.profile == "compose":
            from onecommit.platform import compose

            print("memory per service (MB): " + ", ".join(
                f"{name} {mb:.0f}" for name, mb in compose.service_memory(settings).items()))
        print(f"total memory (proportional set size, shared pages split): {total:.1f} MB")
    if not all(s.healthy for s in report.values()) or (optional["attached"]
                                                       and not optional["healthy"]):
        raise Exit(code=1)


@task(help={"name": "mlflow, airflow, triton or gateway (compose: also postgres, prometheus, "
                    "alertmanager, feast)", "lines": "lines to show", "follow": "keep following",
            "profile": PROFILE})
def logs(c: Context, name: str, lines: int = 50, follow: bool = False,
         profile: str | None = None) -> None:
    """Tail a component's log."""
    settings = load_settings(profile=profile)
    if settings.profile == "compose":
        from onecommit.platform import compose

        print(compose.logs(settings, name, lines, follow), end="")
        return
    files = [str(p) for p in local.component_log(settings, name) if p.exists()]
    if not files:
        raise Exit(f"no log yet for {name}: start the platform with `invoke up`", code=1)
    run(["tail", "-n", str(lines), *(["-F"] if follow else []), *files], capture=False,
        check=False)


def print_urls(settings: Settings, out: Callable[[str], None] = print) -> None:
    out(f"MLflow UI:   {settings.url(settings.mlflow_port)}")
    out(f"Airflow UI:  {settings.url(settings.airflow_port)}  (user onecommit, password in "
        f"{settings.state_dir}/airflow/passwords.json)")
    out(f"Triton:      {settings.url(settings.triton_http_port)}")
    out(f"Gateway:     {settings.gateway_url}")
    out(f"Rollouts:    {settings.gateway_url}/ui/  (or `invoke watch`)")
    if settings.profile == "compose":
        out(f"Prometheus:  {settings.url(settings.prometheus_port)}  Alertmanager: "
            f"{settings.url(settings.alertmanager_port)}")
    if settings.tls:
        out(f"             (CA: {settings.tls_pair('ca')[0]}; other commands need "
            "ONECOMMIT_TLS=true too)")
