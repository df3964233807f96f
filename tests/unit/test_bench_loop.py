"""The loop bench's figures and chart, from commit reports as `demo-commit` writes them."""

from __future__ import annotations

from pathlib import Path

from onecommit import loop
from onecommit.bench.loop import gantt, summarize, targets


def _commit(kind: loop.CommitKind, outcome: loop.Outcome, serving_s: float,
            end_s: float, overhead_s: float | None) -> loop.CommitReport:
    ended = "push_to_promoted" if outcome == "promoted" else "push_to_rolled_back"
    stages = {"push_to_sync": 1.0, "push_to_challenger_serving": serving_s, ended: end_s}
    if outcome == "rolled_back":
        stages["abort_to_champion"] = 0.02
    return loop.CommitReport(
        git_sha="0123456789ab", kind=kind, model="breast-cancer", outcome=outcome,
        stage_seconds=stages,
        mandated_seconds=45.0, overhead_seconds=overhead_s,
        task_seconds={"train": {"queued": 0.5, "run": serving_s - 5}},
        timeline=[loop.Span("sync", "sync", 0.5, 1.0), loop.Span("train", "queued", 1.0, 1.5),
                  loop.Span("train", "run", 1.5, serving_s)])


def test_medians_over_promoted_commits_and_targets_judged_on_them(tmp_path: Path) -> None:
    commits = [_commit("good", "promoted", 10, 60, 15), _commit("good", "promoted", 30, 80, 35),
               _commit("good", "promoted", 12, 62, 17), _commit("bad", "rolled_back", 11, 40,
                                                                None)]
    summary = summarize(commits)
    assert summary["promoted"]["push_to_challenger_serving"] == {
        "median": 12, "min": 10, "max": 30, "n": 3}
    assert summary["promoted"]["overhead"]["median"] == 17
    assert summary["promoted"]["tasks"]["train"]["run"]["median"] == 7
    assert summary["rolled_back"]["push_to_rolled_back"]["median"] == 40
    judged = {t.name: t for t in targets(summary, memory_mb=1900)}
    assert judged["push → challenger serving (median)"].met
    overhead = judged["overhead: push → promoted minus mandated pauses (median)"]
    assert not overhead.met
    assert overhead.miss == 2
    assert judged["abort → 100% champion (worst)"].met
    gantt(tmp_path / "loop.png", commits, "test")
    assert (tmp_path / "loop.png").read_bytes().startswith(b"\x89PNG")


def test_no_promoted_commit_leaves_its_targets_out() -> None:
    summary = summarize([_commit("bad", "rolled_back", 11, 40, None)])
    assert summary["promoted"]["overhead"] is None
    names = [t.name for t in targets(summary, memory_mb=3000)]
    assert not any("overhead" in name for name in names)
    assert [t.met for t in targets(summary, memory_mb=3000) if "memory" in t.name] == [False]
