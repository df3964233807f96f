"""`invoke demo-commit / watch / proof`: the one-commit loop, on any local or compose platform."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.exceptions import Exit

from onecommit.clients.gateway import GatewayClient
from onecommit.settings import Settings
from onecommit.tasks import task
from onecommit.tasks.platform import load_settings

if TYPE_CHECKING:
    from onecommit.loop import CommitKind, CommitReport


@task(help={"bad": "a commit that passes offline evaluation, then fails under live traffic",
            "worse": "a commit that serves without errors but answers a wrong class for 10 % "
                     "of requests (expected: rolled back by the comparison with the champion)",
            "invalid": "a commit whose model spec the sync must reject",
            "model": "a model whose spec the commit changes (repeat for several in one "
                     "commit; default: the env's first model)",
            "json": "print the outcomes as a JSON list, one report per model",
            "profile": "the platform's profile: local (default) or compose"},
      iterable=["model"])
def demo_commit(c: Context, bad: bool = False, worse: bool = False, invalid: bool = False,
                model: list[str] | None = None, json_: bool = False,
                profile: str | None = None) -> None:
    """Change model specs in the gitops clone, commit, push, and follow the loop to its end
    under live traffic. Exits 0 when every outcome is the one asked for."""
    if bad + worse + invalid > 1:
        raise Exit("choose one of --bad, --worse and --invalid", code=2)
    kind: CommitKind = ("bad" if bad else "worse" if worse else "invalid" if invalid
                        else "good")
    settings = load_settings(profile=profile)
    run_commit(settings, kind, chosen_models(settings, model or []), as_json=json_)


def chosen_models(settings: Settings, asked: list[str]) -> list[str]:
    """The models asked for, each checked against the env's specs; default the first."""
    from onecommit import loop

    known = loop.models(settings)
    if not known:
        raise Exit(f"error: no model specs in envs/{settings.gitops_env}/models/ of the gitops "
                   "clone: add one (see the README's Bring your own model)", code=2)
    unknown = [name for name in asked if name not in known]
    if unknown:
        raise Exit(f"error: no model {unknown[0]!r} in envs/{settings.gitops_env}/models/; "
                   f"the env's models: {', '.join(known)}", code=2)
    return asked or known[:1]


def run_commit(settings: Settings, kind: CommitKind, models: list[str],
               as_json: bool = False) -> None:
    """One demo commit followed to its end; exits non-zero unless every outcome is `kind`'s."""
    from onecommit import loop
    from onecommit import watch as watching

    if as_json:
        reports = loop.demo_commit(settings, kind, models, say=lambda _: None)
        print(json.dumps([report.as_dict() for report in reports], indent=2))
    else:
        # The live view follows one model: the commit's first.
        with watching.watching(settings, models[0]):
            reports = loop.demo_commit(settings, kind, models, say=print)
        for report in reports:
            print_report(report)
    unexpected = [r for r in reports if not r.as_expected]
    if unexpected:
        raise Exit("; ".join(f"{r.model}: expected {loop.EXPECTED[kind]}, got {r.outcome}"
                             + (f": {r.reason}" if r.reason else "") for r in unexpected)
                   + " (see the Airflow UI or `invoke logs airflow`)", code=1)


def print_report(report: CommitReport) -> None:
    print(f"{report.model} at {report.git_sha[:12]}: {report.outcome}"
          + (f" ({report.reason})" if report.reason else ""))
    print(f"champion version {report.champion_version}, challenger version "
          f"{report.challenger_version}; live traffic {report.traffic}")
    for stage, seconds in report.stage_seconds.items():
        print(f"  {stage:<32} {seconds:>8.2f} s")
    print(f"  {'total':<32} {report.total_seconds:>8.2f} s")
    if report.overhead_seconds is not None:
        print(f"  {'overhead (beyond the spec)':<32} {report.overhead_seconds:>8.2f} s  "
              f"(push → promoted minus {report.mandated_seconds:g} s of mandated pauses)")


# `--model`, not a positional: invoke has no optional positional arguments.
@task(help={"model": "the model whose rollout to watch (default: the gateway's only model)",
            "once": "show the rollout as it is now, then exit"})
def watch(c: Context, model: str = "", once: bool = False) -> None:
    """Show a model's rollout live: the deploy run and task, the step and weights, each
    variant's figures, each metric's outcome and interval as the rollout's looks recorded
    them, the decisions. Changes nothing; Ctrl-C detaches."""
    from onecommit import watch as watching

    settings = load_settings()
    with GatewayClient(settings, retry_s=5) as gateway:
        served = sorted(gateway.models()["models"])
    if not model and len(served) != 1:
        raise Exit("error: " + (f"the gateway serves {', '.join(served)}: run `invoke watch "
                                f"--model <one of them>`" if served else
                                "the gateway serves no model yet: deploy one first"), code=2)
    if model and model not in served:
        raise Exit(f"error: the gateway serves {', '.join(served) or 'no model yet'}, not "
                   f"{model!r}", code=2)
    try:
        watching.watch(settings, model or served[0], once=once)
    except KeyboardInterrupt:
        print("detached; the rollout goes on")


@task(help={"out": "where to write the PNG (default docs/rollout-page.png)",
            "until": "wait until the page's verdict line shows this text (e.g. 'step 2')",
            "timeout": "seconds to wait for it"})
def screenshot(c: Context, out: str = "docs/rollout-page.png", until: str = "",
               timeout: float = 300) -> None:
    """A headless-Chromium picture of the gateway's rollout page (the README's), taken once
    its verdict line shows `until`: run it beside `invoke demo-commit`."""
    from onecommit.browser import screenshot as take  # Selenium only when asked for

    settings = load_settings()
    take(f"{settings.gateway_url}/ui/", Path(out), until, timeout)
    print(out)


@task(name="proof", help={"profile": "the platform's profile: local (default) or compose"})
def proof_(c: Context, profile: str | None = None) -> None:
    """Write proofs/<timestamp>/proof.json and proof.md and check the platform's invariants."""
    from onecommit import loop, proof

    settings = load_settings(profile=profile)
    directory, invariants = proof.prove(settings, loop.models(settings))
    for invariant in invariants:
        print(f"{'ok  ' if invariant.holds else 'FAIL'} {invariant.name}: {invariant.detail}")
    failed = [i.name for i in invariants if not i.holds]
    if failed:
        print(f"invariants failed: {'; '.join(failed)}")
    print(directory / "proof.md")
    if failed:
        raise Exit(code=1)
