"""`invoke demo-commit / proof`: the one-commit loop on the local profile."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.exceptions import Exit

from onecommit.lifecycle.spec import parse_spec
from onecommit.settings import Settings
from onecommit.tasks import task
from onecommit.tasks.platform import load_settings

if TYPE_CHECKING:
    from onecommit.loop import CommitKind, CommitReport


@task(help={"bad": "a commit that passes offline evaluation, then fails under live traffic",
            "invalid": "a commit whose model spec the sync must reject",
            "json": "print the outcome as JSON"})
def demo_commit(c: Context, bad: bool = False, invalid: bool = False,
                json_: bool = False) -> None:
    """Change the model spec in the gitops clone, commit, push, and follow the loop to its end
    under live traffic. Exits 0 when the outcome is the one asked for."""
    if bad and invalid:
        raise Exit("choose one of --bad and --invalid", code=2)
    kind: CommitKind = "bad" if bad else "invalid" if invalid else "good"
    run_commit(load_settings(), kind, as_json=json_)


def run_commit(settings: Settings, kind: CommitKind, as_json: bool = False) -> None:
    """One demo commit followed to its end; exits non-zero unless the outcome is `kind`'s."""
    from onecommit import loop

    report = loop.demo_commit(settings, kind, say=(lambda _: None) if as_json else print)
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_report(report)
    if not report.as_expected:
        raise Exit(f"expected {loop.EXPECTED[kind]}, got {report.outcome}"
                   + (f": {report.reason}" if report.reason else "")
                   + " (see the Airflow UI or `invoke logs airflow`)", code=1)


def print_report(report: CommitReport) -> None:
    print(f"commit {report.git_sha[:12]}: {report.outcome}"
          + (f" ({report.reason})" if report.reason else ""))
    print(f"champion version {report.champion_version}, challenger version "
          f"{report.challenger_version}; live traffic {report.traffic}")
    for stage, seconds in report.stage_seconds.items():
        print(f"  {stage:<32} {seconds:>8.2f} s")
    print(f"  {'total':<32} {report.total_seconds:>8.2f} s")
    if report.overhead_seconds is not None:
        print(f"  {'overhead (beyond the spec)':<32} {report.overhead_seconds:>8.2f} s  "
              f"(push → promoted minus {report.mandated_seconds:g} s of mandated pauses)")


@task(name="proof")
def proof_(c: Context) -> None:
    """Write proofs/<timestamp>/proof.json and proof.md and check the platform's invariants."""
    from onecommit import loop, proof

    settings = load_settings()
    model = parse_spec(loop.valid_spec(settings)).model
    directory, invariants = proof.prove(settings, model)
    for invariant in invariants:
        print(f"{'ok  ' if invariant.holds else 'FAIL'} {invariant.name}: {invariant.detail}")
    failed = [i.name for i in invariants if not i.holds]
    if failed:
        print(f"invariants failed: {'; '.join(failed)}")
    print(directory / "proof.md")
    if failed:
        raise Exit(code=1)
