"""`invoke envs / test / demo`: building, checking and showing the project."""

from __future__ import annotations

import sys

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from onecommit.lifecycle import trigger
from onecommit.lifecycle.spec import load_spec
from onecommit.platform import local
from onecommit.platform.envs import COMPONENTS, OPTIONAL_COMPONENTS, ensure_env
from onecommit.settings import PROJECT_ROOT
from onecommit.tasks.platform import clear_errors, load_settings, print_urls, status


@task(help={"name": "one component (default: every core one; optional layers are built only "
                    f"when named or by `invoke optional --on`: {', '.join(OPTIONAL_COMPONENTS)})"})
def envs(c: Context, name: str | None = None) -> None:
    """Build the component environments that are missing or out of date."""
    settings = load_settings()
    with clear_errors():
        for component in [name] if name else COMPONENTS:
            print(f"{component}: {ensure_env(settings, component)}")


@task
def lint(c: Context) -> None:
    """Offline validation of charts and the GitOps tree (helm, Kubernetes schemas, CRDs, policy)."""
    settings = load_settings()
    with clear_errors():
        python = ensure_env(settings, "lint") / "bin" / "python"
    c.run(f"{python} -m onecommit.lint --shared-dir {settings.shared_dir} "
          f"--state-dir {settings.state_dir}", echo=True, env={"PYTHONPATH": str(PROJECT_ROOT)})


@task(help={"pytest_args": "extra arguments for pytest, e.g. '-k gateway -x'"})
def test(c: Context, pytest_args: str = "") -> None:
    """Static checks, the offline lint, then the whole test suite against the real platform."""
    envs(c)
    bin_dir = f"{sys.prefix}/bin"
    c.run(f"{bin_dir}/ruff check onecommit tests dags tasks.py", echo=True)
    c.run(f"{bin_dir}/mypy onecommit", echo=True)
    lint(c)
    c.run(f"{bin_dir}/pytest -p no:cacheprovider {pytest_args}", echo=True, pty=False)


@task
def demo(c: Context) -> None:
    """Start the local platform, deploy the dev model spec if nothing is champion yet, and show
    the platform's state and URLs."""
    settings = load_settings()
    with clear_errors():
        local.up(settings)
    spec_path = PROJECT_ROOT / "gitops" / "envs" / "dev" / "model.yaml"
    model = load_spec(spec_path).model
    if trigger.champion_version(settings, model) is None:
        print(f"no champion for {model} yet: running {trigger.DEPLOY_DAG} (first model)")
        run_id, state = trigger.deploy(settings, spec_path, git_sha="demo-initial", env="dev")
        if state != "success":
            raise Exit(f"{trigger.DEPLOY_DAG} run {run_id} ended {state}: see the Airflow UI "
                       "or `invoke logs airflow`", code=1)
    print(f"champion: version {trigger.champion_version(settings, model)} of {model}, served by "
          f"the gateway as version {trigger.served_version(settings, model)}")
    status(c)
    print_urls(settings)
