"""`invoke envs / test / demo`: building, checking and showing the project."""

from __future__ import annotations

import sys

from invoke.context import Context
from invoke.exceptions import Exit

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


@task(help={"pytest_args": "extra arguments for pytest, e.g. '-k gateway -x'"})
def test(c: Context, pytest_args: str = "") -> None:
    """Static checks, then the whole test suite against the real platform; the suite runs the
    offline lint on this tree (and on copies with a mistake seeded for each check)."""
    envs(c)
    bin_dir = f"{sys.prefix}/bin"
    c.run(f"{bin_dir}/ruff check onecommit tests dags tasks.py", echo=True)
    c.run(f"{bin_dir}/mypy onecommit", echo=True)
    # The import contracts of pyproject.toml: layers downwards, no circles, the gateway apart.
    c.run(f"{bin_dir}/lint-imports", echo=True)
    c.run(f"{bin_dir}/pytest -p no:cacheprovider {pytest_args}", echo=True, pty=False)


@task(help={"profile": "local (default) or compose"})
def demo(c: Context, profile: str | None = None) -> None:
    """The whole promise on this machine: start the platform, push a good commit (promoted
    under a canary), then a bad one (rolled back automatically), and write the proof."""
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
    for kind in ("good", "bad"):
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
