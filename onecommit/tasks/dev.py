"""`invoke envs / test / demo`: building, checking and showing the project."""

from __future__ import annotations

import sys
from typing import cast

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.runners import Promise

from onecommit.platform import profiles
from onecommit.platform.envs import COMPONENTS, OPTIONAL_COMPONENTS, ensure_env
from onecommit.progress import Progress
from onecommit.settings import PROJECT_ROOT
from onecommit.tasks import task
from onecommit.tasks.loop import run_commit
from onecommit.tasks.platform import load_settings, print_urls, status


@task(help={"name": "one component (default: every core one; optional layers are built only "
                    f"when named or by `invoke optional --on`: {', '.join(OPTIONAL_COMPONENTS)})"})
def envs(c: Context, name: str | None = None) -> None:
    """Build the component environments that are missing or out of date."""
    settings = load_settings()
    for component in [name] if name else COMPONENTS:
        print(f"{component}: {ensure_env(settings, component)}")


@task
def lint(c: Context) -> None:
    """Offline validation of charts and the GitOps tree (helm, Kubernetes schemas, CRDs, policy)."""
    settings = load_settings()
    python = ensure_env(settings, "lint") / "bin" / "python"
    c.run(f"{python} -m onecommit.lint --shared-dir {settings.shared_dir} "
          f"--state-dir {settings.state_dir}", echo=True, env={"PYTHONPATH": str(PROJECT_ROOT)})


# The two tiers of the suite (README: The test suite). `fast` is `make test`: the static checks,
# unit and lint tests, and one proof of each capability on one local platform; `e2e` is
# `make test-e2e`: compose, faults, the examples, the prod promotion and Feast.
TIERS = {"fast": "not e2e", "e2e": "e2e", "all": "e2e or not e2e"}


@task(help={"tier": f"which tests: {', '.join(TIERS)} (default fast: what `make test` runs)",
            "pytest_args": "extra arguments for pytest, e.g. '-k gateway -x'"})
def test(c: Context, tier: str = "fast", pytest_args: str = "") -> None:
    """The test suite against the real platform; the fast tier also runs ruff, mypy and
    lint-imports beside pytest (the suite itself runs the offline lint on this tree and on
    seeded copies)."""
    if tier not in TIERS:
        raise Exit(f"unknown tier {tier!r}: choose one of {', '.join(TIERS)}", code=2)
    envs(c)
    bin_dir = f"{sys.prefix}/bin"
    # The static checks take a core for a minute while pytest's first tests and the session's
    # platform start use the other: they run side by side, and report after pytest. The import
    # contracts of pyproject.toml: layers downwards, no circles, the gateway apart.
    static = [] if tier == "e2e" else [
        cast(Promise, c.run(command, asynchronous=True, warn=True, hide=True)) for command in (
            f"{bin_dir}/ruff check onecommit tests dags tasks.py", f"{bin_dir}/mypy onecommit",
            f"{bin_dir}/lint-imports")]
    tests = c.run(f"{bin_dir}/pytest -p no:cacheprovider -m '{TIERS[tier]}' {pytest_args}",
                  echo=True, pty=False, warn=True)
    failed = [] if tests.ok else [f"pytest (exit {tests.exited})"]
    for check in static:
        result = check.join()
        print(f"$ {result.command}\n{result.stdout}{result.stderr}", end="")
        if not result.ok:
            failed.append(result.command.split()[0].rsplit("/", 1)[-1])
    if failed:
        raise Exit(f"failed: {', '.join(failed)}", code=1)


@task(help={"profile": "local (default) or compose"})
def demo(c: Context, profile: str | None = None) -> None:
    """The whole promise on this machine: start the platform, push a good commit (promoted
    under a canary once it is shown no worse than the champion), a worse one (it answers a
    wrong class for a tenth of its requests, without an error: rolled back by the accuracy
    comparison), then a bad one (serving errors: rolled back), and write the proof."""
    from onecommit import loop, proof

    settings = load_settings(profile=profile)
    if not profiles.of(settings).runs_loop:
        raise Exit("`invoke demo` runs on the local or compose profile: give --profile local "
                   "or --profile compose", code=2)
    with Progress() as report:
        profiles.of(settings).up(settings, report)
    models = loop.models(settings)
    first = [model for model in models if loop.champion_version(settings, model) is None]
    if first:
        print(f"\n== first deploy of {', '.join(first)} (one commit; no champion yet) ==")
        run_commit(settings, "good", first)
    for kind in ("good", "worse", "bad"):
        print(f"\n== demo commit ({kind}) of {models[0]} ==")
        run_commit(settings, kind, models[:1])
    directory, invariants = proof.prove(settings, models)
    for invariant in invariants:
        print(f"{'ok  ' if invariant.holds else 'FAIL'} {invariant.name}")
    for model in models:
        print(f"champion: version {loop.champion_version(settings, model)} of {model}, served "
              f"by the gateway as version {loop.served_version(settings, model)}")
    status(c, profile=settings.profile)
    print_urls(settings)
    print(f"Proof:       {directory / 'proof.md'}")
    if not all(i.holds for i in invariants):
        raise Exit("a proof invariant failed: see the proof report", code=1)
