"""`invoke up / down / status / logs`: the platform, on whichever profile the settings name."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit

from onecommit.platform import health, optional_layer, profiles
from onecommit.progress import Progress
from onecommit.settings import Settings
from onecommit.tasks import task


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and task flags (a bad value is refused in one line)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _profile(settings: Settings, dry_run: bool = False) -> profiles.Profile:
    """The settings' profile; --dry-run only where up and down are plans (kind)."""
    profile = profiles.of(settings)
    if dry_run and not profile.plans:
        raise Exit("--dry-run prints the kind profile's plan: add --profile kind", code=2)
    return profile


PROFILE = "local (default), compose or kind"


@task(help={"profile": PROFILE,
            "tls": "serve the gateway over HTTPS with the internal CA (= ONECOMMIT_TLS=true)",
            "dry_run": "kind profile: print every command instead of running it"})
def up(c: Context, profile: str | None = None, tls: bool = False, dry_run: bool = False) -> None:
    """Start the platform and wait until every component is healthy (idempotent)."""
    settings = load_settings(profile=profile, tls=tls or None)
    chosen = _profile(settings, dry_run)
    if chosen.plans:
        chosen.up(settings, print, dry_run)
        return
    with Progress() as report:
        chosen.up(settings, report)
    print_urls(settings)


@task(help={"profile": PROFILE,
            "volumes": "compose profile: remove its volumes too (databases, metrics)",
            "dry_run": "kind profile: print every command instead of running it"})
def down(c: Context, profile: str | None = None, volumes: bool = False,
         dry_run: bool = False) -> None:
    """Stop every process `invoke up` started (compose: its containers; kind: the cluster)."""
    settings = load_settings(profile=profile)
    chosen = _profile(settings, dry_run)
    chosen.down(settings, volumes=volumes, dry_run=dry_run)
    if not dry_run:
        print("platform stopped")


@task(help={"json": "print machine-readable JSON", "profile": PROFILE})
def status(c: Context, json_: bool = False, profile: str | None = None) -> None:
    """Each component's URL, pid, health, version and resident memory."""
    settings = load_settings(profile=profile)
    chosen = profiles.of(settings)
    report = chosen.status(settings)
    where = chosen.optional_runtime(settings)
    optional = optional_layer.status(settings, where) if where is not None else None
    gateway = report.get("gateway")
    served = health.serving(settings) if gateway is not None and gateway.pid else None
    total = round(sum(s.memory_mb for s in report.values())
                  + (optional["memory_mb"] if optional else 0.0), 1)
    synced = _sync_status(settings) if served is not None and not chosen.plans else None
    if json_:
        # "models" per model (champion, challenger, strategy, serving, and as Argo CD shows
        # an application: `sync`, `health`, `last_operation`); "error" when the gateway did
        # not say, "sync_error" when the sync's view could not be had.
        models = {**(served or {"models": {}})}
        models["models"] = _with_sync(models.get("models", {}), synced)
        if synced is not None and "error" in synced:
            models["sync_error"] = synced["error"]
        print(json.dumps({"components": {n: s.as_dict() for n, s in report.items()},
                          **models, "optional": optional,
                          "total_memory_mb": total}, indent=2))
    else:
        print(f"{'component':<10} {'healthy':<8} {'pid':>8} {'mem_mb':>8}  {'version':<10} url")
        for name, s in report.items():
            print(f"{name:<10} {'yes' if s.healthy else 'NO':<8} {s.pid or '-':>8} "
                  f"{s.memory_mb:>8.1f}  {s.version or '-':<10} {s.url}"
                  + ("" if s.healthy else f"  ({s.detail})"))
        if served is not None:
            print("\n".join(health.describe_serving(served)))
        if synced is not None:
            from onecommit.sync.status import describe

            print("\n".join(describe(synced)))
        if optional is not None:
            print(optional_layer.describe(optional))
        for line in chosen.notes(settings):
            print(line)
        print(f"total memory (proportional set size, shared pages split): {total:.1f} MB")
    if not all(s.healthy for s in report.values()) or (
            optional is not None and optional["attached"] and not optional["healthy"]):
        raise Exit(code=1)


def _sync_status(settings: Settings) -> dict[str, Any] | None:
    """The sync's per-model view, when the platform runs (it reads the registry)."""
    from onecommit.sync.status import models_status

    return models_status(settings)


def _with_sync(models: dict[str, Any], synced: dict[str, Any] | None) -> dict[str, Any]:
    """The gateway's per-model entries with the sync's `sync`, `health` and `last_operation`
    (a model the gateway does not serve gets an entry too: its health is Missing)."""
    if synced is None or "error" in synced:
        return models
    merged = {name: dict(entry) for name, entry in models.items()}
    for name, entry in synced["models"].items():
        merged.setdefault(name, {}).update(entry)
    return merged


@task(help={"model": "converge only this model",
            "dry_run": "print the diff (as `argocd app diff`); deploy and record nothing"})
def sync(c: Context, model: str | None = None, dry_run: bool = False) -> None:
    """One sync pass now: every OutOfSync model of the gitops tip is deployed, every model
    whose spec is gone retired (local profile; it runs on every push and every
    ONECOMMIT_RESYNC_S seconds too)."""
    from dataclasses import asdict

    from onecommit import gitops_remote
    from onecommit.sync import git
    from onecommit.sync import sync as sync_pass

    settings = load_settings()
    repo = gitops_remote.remote_dir(settings)
    if not (repo / "HEAD").exists():
        raise Exit("no gitops remote yet: run `invoke up` first", code=1)
    result = sync_pass(settings, repo, git.resolve(repo, "refs/heads/main"),
                       settings.gitops_env, only=model, dry_run=dry_run)
    lines = [line for diff in result.diffs for line in diff.lines()]
    print("\n".join(lines) if lines else "every model is Synced with the tip")
    for record in result.records:
        print(json.dumps(asdict(record)))


@task(help={"name": "mlflow, airflow, triton or gateway (compose: also postgres, prometheus, "
                    "alertmanager, feast; kind: an app.kubernetes.io/name)",
            "lines": "lines to show", "follow": "keep following", "profile": PROFILE})
def logs(c: Context, name: str, lines: int = 50, follow: bool = False,
         profile: str | None = None) -> None:
    """Tail a component's log."""
    settings = load_settings(profile=profile)
    profiles.of(settings).logs(settings, name, lines, follow)


def print_urls(settings: Settings, out: Callable[[str], None] = print) -> None:
    out(f"MLflow UI:   {settings.url(settings.mlflow_port)}")
    out(f"Airflow UI:  {settings.url(settings.airflow_port)}  (user onecommit, password in "
        f"{settings.state_dir}/airflow/passwords.json)")
    out(f"Triton:      {settings.url(settings.triton_http_port)}")
    out(f"Gateway:     {settings.gateway_url}")
    out(f"Rollouts:    {settings.gateway_url}/ui/  (or `invoke watch`)")
    for line in profiles.of(settings).urls(settings):
        out(line)
    if settings.tls:
        out(f"             (CA: {settings.tls_pair('ca')[0]}; other commands need "
            "ONECOMMIT_TLS=true too)")
