"""`invoke bench loop`: the one-commit loop timed on the local platform.

N good commits and one bad one go through `invoke demo-commit`'s path (push, sync, DAG,
rollout under live traffic, promote or roll back). Every figure comes from the runs' own
records: the sync record (when the sync took the commit up and when Airflow accepted its
run), Airflow's task instances (each task's start and end), the rollout's decisions on the
model version. Writes `docs/bench/<name>.json` and a Gantt chart of each commit's stages as
`<name>.png`.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from onecommit import loop
from onecommit.bench import report
from onecommit.bench.config import LoopConfig
from onecommit.bench.gateway import platform_as_found
from onecommit.lifecycle.spec import parse_spec
from onecommit.platform import local
from onecommit.settings import Settings

Say = Callable[[str], None]
# The targets for a 2-core machine (seconds).
CHALLENGER_SERVING_S, OVERHEAD_S, ABORT_TO_CHAMPION_S = 15.0, 15.0, 0.1
_MEMORY_LIMIT_MB = 2560.0


def run(settings: Settings, config: LoopConfig, say: Say = print) -> dict[str, Any]:
    """Bring the platform up if needed, run the commits, write the JSON and PNG."""
    load_before = os.getloadavg()
    commits: list[loop.CommitReport] = []
    with platform_as_found(settings, say):
        model = loop.models(settings)[0]
        spec = parse_spec(loop.valid_spec(settings, model))
        if loop.champion_version(settings, model) is None:
            say("no champion yet: a first commit deploys one (not counted)")
            loop.demo_commit(settings, "good", [model], say=say)
        good: list[loop.CommitKind] = ["good"]
        kinds = good * config.good + ["bad"]
        for index, kind in enumerate(kinds):
            say(f"== commit {index + 1} of {config.good + 1} ({kind}) ==")
            commits += loop.demo_commit(settings, kind, [model], say=say)
            say(_line(commits[-1]))
        memory_mb = round(sum(s.memory_mb for s in local.statuses(settings).values()), 1)
    summary = summarize(commits)
    found = targets(summary, memory_mb)
    result = {
        "machine": report.machine(load_before, os.getloadavg()),
        "model": spec.model,
        "rollout": spec.rollout.model_dump(),
        "commits": [c.as_dict() for c in commits],
        "summary": summary,
        "memory_mb_after": memory_mb,
        "targets": [t.as_dict() for t in found],
    }
    report.write_json(config.out_dir / f"{config.name}.json", result)
    gantt(config.out_dir / f"{config.name}.png", commits,
          f"{spec.model}: {config.good} good commits and 1 bad, {os.cpu_count()} CPUs")
    for target in found:
        say(target.line())
    return result


def _line(commit: loop.CommitReport) -> str:
    stages = commit.stage_seconds
    ended = stages.get("push_to_promoted", stages.get("push_to_rolled_back", float("nan")))
    line = (f"{commit.outcome}: push → challenger serving "
            f"{stages.get('push_to_challenger_serving', float('nan')):.1f} s, push → "
            f"{'promoted' if commit.outcome == 'promoted' else 'rolled back'} {ended:.1f} s")
    if commit.overhead_seconds is not None:
        line += f", overhead {commit.overhead_seconds} s"
    return line


def _figures(values: Sequence[float | None]) -> dict[str, float] | None:
    measured = [v for v in values if v is not None]
    if not measured:
        return None
    return {"median": round(statistics.median(measured), 2), "min": round(min(measured), 2),
            "max": round(max(measured), 2), "n": len(measured)}


def summarize(commits: Sequence[loop.CommitReport]) -> dict[str, Any]:
    """Median, min and max per stage over the promoted commits, and the rolled-back one's."""
    promoted = [c for c in commits if c.outcome == "promoted"]
    stages = ("push_to_sync", "sync_to_dag_start", "push_to_challenger_serving",
              "push_to_promoted")
    tasks = dict.fromkeys(name for c in promoted for name in c.task_seconds)
    rolled_back = [c for c in commits if c.outcome == "rolled_back"]
    return {
        "outcomes": [f"{c.kind} → {c.outcome}" for c in commits],
        "promoted": {
            **{stage: _figures([c.stage_seconds.get(stage) for c in promoted])
               for stage in stages},
            "mandated": _figures([c.mandated_seconds for c in promoted]),
            "overhead": _figures([c.overhead_seconds for c in promoted]),
            "tasks": {name: {part: _figures([c.task_seconds.get(name, {}).get(part)
                                             for c in promoted]) for part in ("queued", "run")}
                      for name in tasks},
        },
        "rolled_back": {
            stage: _figures([c.stage_seconds.get(stage) for c in rolled_back])
            for stage in ("push_to_challenger_serving", "abort_to_champion", "rollback",
                          "push_to_rolled_back")},
    }


def targets(summary: dict[str, Any], memory_mb: float) -> list[report.Target]:
    """The issue's targets, judged on the medians (the abort on its worst)."""
    found = []
    promoted, rolled_back = summary["promoted"], summary["rolled_back"]
    if promoted["push_to_challenger_serving"]:
        found.append(report.Target("push → challenger serving (median)",
                                   promoted["push_to_challenger_serving"]["median"],
                                   CHALLENGER_SERVING_S, "at_most", " s"))
    if promoted["overhead"]:
        found.append(report.Target("overhead: push → promoted minus mandated pauses (median)",
                                   promoted["overhead"]["median"], OVERHEAD_S, "at_most", " s"))
    if rolled_back["abort_to_champion"]:
        found.append(report.Target("abort → 100% champion (worst)",
                                   rolled_back["abort_to_champion"]["max"], ABORT_TO_CHAMPION_S,
                                   "at_most", " s"))
    found.append(report.Target("platform memory after the commits (two versions loaded)",
                               memory_mb, _MEMORY_LIMIT_MB, "at_most", " MB"))
    return found


_COLOURS = {"queued": "#c8c8c8", "sync": "#8fb3d9", "run": "#2f6db5"}


def gantt(path: Path, commits: Sequence[loop.CommitReport], title: str) -> None:
    """One panel per commit: a bar per stage (sync, then each task), grey while waiting for
    the scheduler, blue while running; the outcome in the panel's title."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    figure, axes = plt.subplots(len(commits), 1, figsize=(11, 2.2 + 1.9 * len(commits)),
                                squeeze=False, sharex=True)
    for axis, commit in zip(axes[:, 0], commits, strict=True):
        lanes = list(dict.fromkeys(span.lane for span in commit.timeline))
        for span in commit.timeline:
            axis.barh(lanes.index(span.lane), span.end_s - span.start_s, left=span.start_s,
                      color=_COLOURS[span.kind], height=0.7)
        axis.set_yticks(range(len(lanes)), lanes, fontsize="small")
        axis.invert_yaxis()
        axis.grid(axis="x", alpha=0.3)
        axis.set_title(f"{commit.git_sha[:8]} ({commit.kind}) → {commit.outcome}: "
                       f"{_line(commit).split(': ', 1)[1]}", fontsize="small", loc="left")
    axes[-1, 0].set_xlabel("seconds after the push")
    labels = {"queued": "waiting (scheduler)", "sync": "sync", "run": "task running"}
    figure.legend(handles=[Patch(color=_COLOURS[k], label=v) for k, v in labels.items()],
                  loc="upper right", fontsize="small", ncol=3)
    figure.suptitle(title, x=0.01, ha="left")
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
