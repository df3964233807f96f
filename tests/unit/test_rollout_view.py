"""The rollout's record in desired state's history, and its views: the page's model, the
terminal's plain lines and rich view. A real SQLite store records what a canary does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from onecommit.gateway.ui import RolloutNote, page, timeline
from onecommit.rollout_chart import draw
from onecommit.serving.database import open_engine
from onecommit.serving.state import StateStore, latest_note
from onecommit.settings import Settings
from onecommit.sync import heal
from onecommit.vocabulary import TrafficPolicy
from onecommit.watch import PlainPrinter, Snapshot, lines, since, view

ANALYSIS = {"metrics": [
    {"measure": "online_accuracy", "judged": "vs_champion", "margin": 0.02},
    {"measure": "error_rate", "judged": "bound", "bound": 0.01}],
    "limits": {"min_requests": 50, "max_seconds": 3600}}
STEPS = ["canary 20%", "canary 50%", "canary 100%"]
ACCURACY = "online_accuracy vs champion"
ERRORS = "error_rate"


def _result(metric: str, outcome: str, lower: float | None, upper: float | None,
            samples: int = 60) -> dict[str, Any]:
    """One metric as a note records it (MetricResult without e_value, anytime_valid, extra)."""
    gate = metric == ACCURACY
    estimate = None if lower is None or upper is None else (lower + upper) / 2
    return {"metric": metric, "gate": gate,
            "statistic": "difference in accuracy" if gate else "error rate",
            "estimate": estimate, "lower": lower, "upper": upper,
            "threshold": -0.02 if gate else 0.01, "outcome": outcome, "samples": samples,
            "text": f"{metric}: {outcome} at {samples} samples"}


def _look(store: StateStore, step: int, action: str, lower: float, upper: float,
          outcome: str = "undecided") -> None:
    store.note("m", "gateway", {"kind": "look", "version": 2, "detail": {
        "step": STEPS[step], "step_index": step, "action": action,
        "reason": f"difference in accuracy [{lower}, {upper}] {outcome}", "seconds": 10.0,
        "metrics": [_result(ACCURACY, outcome, lower, upper),
                    _result(ERRORS, "undecided", 0.0, 0.05)]}})


def _canary(store: StateStore, decisions: list[str], looks: bool = False,
            then: str | None = None) -> None:
    """What `rollout.run` writes through the gateway: the start, each step's policy and the
    analysis reset, its looks (with `looks`), each decision."""
    store.seed("m", {"champion": 1}, "gateway")
    store.change("m", "gateway", pins={"challenger": 2})
    store.note("m", "gateway", {"kind": "start", "version": 2, "detail": {
        "strategy": "canary", "steps": STEPS, "analysis": ANALYSIS,
        "links": {"mlflow_version": "http://mlflow/#/models/m/versions/2"}}})
    for index, (step, decision) in enumerate(zip(STEPS, decisions, strict=False)):
        weight = int(step.split()[1].rstrip("%")) / 100
        store.change("m", "gateway", policy=TrafficPolicy("canary", weight))
        store.change("m", "gateway", reset_analysis=True)
        if looks:
            _look(store, index, "wait", -0.2, 0.2)
        outcome = {"continue": "pass", "abort": "fail"}.get(decision, "undecided")
        detail = {"step": step, "decision": decision,
                  "reason": ("difference in accuracy within -0.02" if decision == "continue"
                             else "error rate above 0.01"), "seconds": 30.0,
                  "metrics": [_result(ACCURACY, outcome, -0.01, 0.05),
                              _result(ERRORS, outcome, 0.0, 0.008)]}
        if then is not None:
            detail["then"] = then
        store.note("m", "gateway", {"kind": "decision", "version": 2, "detail": detail})


def _store(directory: Path) -> StateStore:
    directory.mkdir(parents=True, exist_ok=True)
    return StateStore(open_engine(f"sqlite:///{directory / 'serving.db'}"))


def _page(store: StateStore, analysis: dict[str, Any] | None = None) -> dict[str, Any]:
    state = store.read("m")
    assert state is not None
    ready = {alias: True for alias in state.pins}
    return page("m", state.revision, state.policy, dict(state.pins), ready,
                analysis or {"variants": {}}, {"variants": {}}, store.events("m"),
                {"proof": None})


def test_a_note_changes_nothing_but_is_in_the_history(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.seed("m", {"champion": 1}, "gateway")
    before = store.read("m")
    assert before is not None
    store.note("m", "gateway", {"kind": "start", "version": 2, "detail": {}})
    assert store.read("m") == before
    assert store.events("m")[-1]["change"] == {"note": {"kind": "start", "version": 2,
                                                        "detail": {}}}
    assert store.events("m")[-1]["revision"] == before.revision


def test_the_timeline_starts_at_the_rollout_and_carries_the_weight(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _canary(store, ["continue", "continue"])
    rollout, entries = timeline(store.events("m"))
    assert rollout is not None
    assert (rollout["version"], rollout["steps"]) == (2, STEPS)
    assert [e["kind"] for e in entries] == ["start", "policy", "decision", "policy", "decision"]
    assert [e["weight"] for e in entries] == [0.0, 0.2, 0.2, 0.5, 0.5]
    assert entries[2]["text"] == ("canary 20%: continue (difference in accuracy within "
                                  "-0.02)")


def test_looks_are_recorded_but_are_not_steps_of_the_timeline(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _canary(store, ["continue", "continue"], looks=True)
    _look(store, 2, "wait", -0.03, 0.06)
    rollout, entries = timeline(store.events("m"))
    assert rollout is not None
    assert "thresholds" not in rollout
    assert rollout["analysis"] == ANALYSIS
    assert [e["kind"] for e in entries] == ["start", "policy", "decision", "policy", "decision"]
    assert RolloutNote(kind="look", version=2, detail={}).kind == "look"


def test_the_page_shows_the_latest_analysis_and_each_interval_over_time(
        tmp_path: Path) -> None:
    store = _store(tmp_path)
    _canary(store, ["continue"], looks=True)
    _look(store, 1, "wait", -0.03, 0.06)
    shown = _page(store)
    analysis = shown["analysis"]
    assert (analysis["step"], analysis["action"]) == ("canary 50%", "wait")
    assert analysis["reason"] == "difference in accuracy [-0.03, 0.06] undecided"
    assert [m["metric"] for m in analysis["metrics"]] == [ACCURACY, ERRORS]
    assert analysis["at"] == store.events("m")[-1]["at"]
    over_time = shown["intervals"][ACCURACY]
    assert [(p["lower"], p["upper"], p["outcome"]) for p in over_time] == [
        (-0.2, 0.2, "undecided"), (-0.01, 0.05, "pass"), (-0.03, 0.06, "undecided")]
    assert [p["at"] for p in over_time] == sorted(p["at"] for p in over_time)
    assert set(over_time[0]) == {"at", "estimate", "lower", "upper", "threshold", "outcome"}
    assert shown["verdict"]["text"] == ("step 2 of 3: canary 50%; latest look: wait "
                                        "(difference in accuracy [-0.03, 0.06] undecided)")


def test_only_the_latest_rollout_is_analysed(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _canary(store, ["continue"], looks=True)
    store.note("m", "gateway", {"kind": "start", "version": 3, "detail": {
        "strategy": "canary", "steps": STEPS, "thresholds": {"max_error_rate": 0.01}}})
    shown = _page(store)
    assert shown["analysis"] is None
    assert shown["intervals"] == {}
    assert shown["verdict"]["text"] == "step 1 of 3: canary 20%"
    idle = _store(tmp_path / "idle")
    idle.seed("m", {"champion": 1}, "gateway")
    assert (_page(idle)["analysis"], _page(idle)["intervals"]) == (None, {})


def test_without_a_rollout_the_timeline_is_the_latest_changes(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.seed("m", {"champion": 1}, "gateway")
    store.change("m", "gateway", policy=TrafficPolicy("canary", 0.3))
    rollout, entries = timeline(store.events("m"))
    assert rollout is None
    assert [(e["kind"], e["text"]) for e in entries] == [
        ("pins", "champion → v1"), ("policy", "canary: challenger 30%")]


def test_the_verdict_follows_the_rollout_to_its_end(tmp_path: Path) -> None:
    running = _store(tmp_path / "running")
    _canary(running, ["continue"])
    assert _page(running)["verdict"]["text"] == "step 2 of 3: canary 50%"
    aborted = _store(tmp_path / "aborted")
    _canary(aborted, ["continue", "abort"])
    aborted.change("m", "gateway", pins={"challenger": None})
    shown = _page(aborted)
    assert shown["verdict"]["state"] == "rolled back"
    assert "canary 50%: abort (error rate above 0.01)" in shown["verdict"]["text"]
    promoted = _store(tmp_path / "promoted")
    _canary(promoted, ["continue"] * 3)
    promoted.change("m", "gateway", pins={"champion": 2, "previous": 1, "challenger": None})
    shown = _page(promoted)
    assert shown["verdict"]["text"] == "version 2 promoted"
    assert shown["versions"] == {"champion": 2, "challenger": None, "previous": 1}
    assert shown["links"]["mlflow_version"] == "http://mlflow/#/models/m/versions/2"


def test_an_inconclusive_end_is_held_or_rolled_back_as_the_rollout_noted(
        tmp_path: Path) -> None:
    held = _store(tmp_path / "held")
    _canary(held, ["continue", "inconclusive"], then="hold")
    assert _page(held)["verdict"] == {
        "state": "held", "text": "held: canary 50%: inconclusive (error rate above 0.01)"}
    hold = _store(tmp_path / "hold")
    _canary(hold, ["continue", "hold"])
    assert _page(hold)["verdict"]["state"] == "held"
    hold.change("m", "gateway", pins={"champion": 2, "previous": 1, "challenger": None})
    assert _page(hold)["verdict"]["state"] == "promoted"
    rolled = _store(tmp_path / "rolled")
    _canary(rolled, ["continue", "inconclusive"], then="rollback")
    assert _page(rolled)["verdict"]["state"] == "aborted"
    rolled.change("m", "gateway", pins={"challenger": None})
    assert _page(rolled)["verdict"]["state"] == "rolled back"


def _figures(error_rate: float) -> dict[str, Any]:
    return {"requests": 60, "errors": int(60 * error_rate), "infra_errors": 0,
            "error_rate": error_rate, "latency_ms": {"p50": 3.0, "p95": 9.0},
            "online_accuracy": 0.9}


def _snapshot(tmp_path: Path, error_rate: float, look: tuple[float, float] | None = None
              ) -> Snapshot:
    store = _store(tmp_path)
    _canary(store, ["continue"])
    if look is not None:
        _look(store, 1, "wait", *look)
    analysis = {"variants": {"champion": _figures(0.0), "challenger": _figures(error_rate)}}
    run = {"dag_id": "ml_train_register_and_reload", "run_id": "commit-abc-dev",
           "state": "running", "tasks": ["rollout"], "queued_at": 1000.0}
    return Snapshot(_page(store, analysis), [run])


def test_plain_lines_show_the_rollouts_analysis_and_judge_no_figure(tmp_path: Path) -> None:
    shown = dict(lines(_snapshot(tmp_path, error_rate=0.05)))
    assert shown["verdict"] == "m: step 2 of 3: canary 50%"
    assert shown["traffic"] == "traffic: canary: champion 80.0%, challenger 20.0%"
    assert shown["figures challenger"].endswith("online accuracy 90.0%")
    assert "threshold" not in shown["figures challenger"]
    assert "thresholds" not in shown
    assert shown["decision"] == ("decision: canary 20%: continue (difference in accuracy "
                                 "within -0.02)")
    assert shown["look"] == ("analysis: canary 20%: continue (difference in accuracy within "
                             "-0.02)")
    assert shown[f"metric {ACCURACY}"] == (
        f"metric {ACCURACY} (gate): pass; difference in accuracy 0.02 in [-0.01, 0.05], "
        f"threshold -0.02, 60 samples — {ACCURACY}: pass at 60 samples")
    assert shown[f"metric {ERRORS}"].startswith(f"metric {ERRORS} (guard): pass; error rate")
    assert shown["run ml_train_register_and_reload"].endswith("running tasks: rollout")
    looking = dict(lines(_snapshot(tmp_path / "look", error_rate=0.0, look=(-0.03, 0.06))))
    assert looking["look"] == ("analysis: canary 50%: wait (difference in accuracy "
                               "[-0.03, 0.06] undecided)")
    assert f"{ACCURACY} (gate): undecided" in looking[f"metric {ACCURACY}"]


def test_plain_lines_are_printed_once_and_figures_at_most_every_ten_seconds(
        tmp_path: Path) -> None:
    printed: list[str] = []
    printer = PlainPrinter(printed.append)
    snapshot = _snapshot(tmp_path / "a", error_rate=0.0)
    printer.show(snapshot, now=100.0)
    first = len(printed)
    printer.show(snapshot, now=101.0)
    assert len(printed) == first  # nothing changed: nothing printed
    worse = _snapshot(tmp_path / "b", error_rate=0.05)
    assert dict(lines(worse))["figures challenger"] != dict(lines(snapshot))[
        "figures challenger"]
    printer.show(worse, now=102.0)
    assert len(printed) == first  # only figures changed, and they were printed 2 s ago
    printer.show(worse, now=111.0)
    assert printed[first:] == [dict(lines(worse))["figures challenger"]]


def test_the_terminal_view_shows_the_step_the_weights_and_each_metrics_interval(
        tmp_path: Path) -> None:
    console = Console(record=True, width=200, force_terminal=False)
    console.print(view(_snapshot(tmp_path, error_rate=0.05, look=(-0.03, 0.06))))
    text = console.export_text()
    assert "m: step 2 of 3: canary 50%; latest look: wait" in text
    assert "champion 80.0%, challenger 20.0%" in text
    assert "analysis: canary 50%: wait (difference in accuracy [-0.03, 0.06] undecided)" in text
    assert "undecided" in text
    assert ACCURACY in text
    assert "guard" in text
    assert "[-0.01, 0.05] [-0.03, 0.06]" in text  # the interval over time, oldest first
    assert "≤" not in text  # no thresholds of its own
    assert "canary 20%: continue (difference in accuracy within -0.02)" in text


def test_the_timeline_is_drawn_as_a_png(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _canary(store, ["continue", "abort"])
    _, entries = timeline(store.events("m"))
    chart = tmp_path / "rollout.png"
    draw(chart, entries, "m: rolled back")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_metrics_interval_over_time_is_a_panel_of_the_picture(tmp_path: Path) -> None:
    from PIL import Image

    store = _store(tmp_path)
    _canary(store, ["continue", "abort"], looks=True)
    store.note("m", "gateway", {"kind": "look", "version": 2, "detail": {
        "step": STEPS[1], "step_index": 1, "action": "wait", "reason": "no samples yet",
        "seconds": 1.0, "metrics": [_result(ACCURACY, "undecided", None, None, samples=0)]}})
    shown = _page(store)
    plain, panels = tmp_path / "plain.png", tmp_path / "panels.png"
    draw(plain, shown["timeline"], "m: rolled back")
    draw(panels, shown["timeline"], "m: rolled back", shown["intervals"])
    assert panels.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a panel per metric below the timeline: the picture grows by two of them
    with Image.open(plain) as before, Image.open(panels) as after:
        assert after.height == before.height + 2 * 240


def test_the_latest_note_of_a_kind_is_found_from_the_end() -> None:
    events = [{"change": {"note": {"kind": "sync", "n": 1}}}, {"change": {"pins": {}}},
              {"change": {"note": {"kind": "sync", "n": 2}}},
              {"change": {"note": {"kind": "start"}}}]
    assert latest_note(events, "sync") == {"kind": "sync", "n": 2}
    assert latest_note(events, "look") is None


def test_a_commit_is_watched_from_its_push_on(tmp_path: Path) -> None:
    seen = _snapshot(tmp_path, error_rate=0.0)
    assert seen.page is not None
    assert since(seen, started=0.0) == seen
    before_it = since(seen, started=seen.page["rollout"]["started_at"] + 1)
    assert before_it.runs == []
    assert before_it.page is not None
    assert before_it.page["verdict"]["text"] == "no rollout of this commit yet"
    assert before_it.page["timeline"] == []


def test_the_sync_status_is_noted_once_per_change_and_shown_apart_from_the_steps(
        tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    store = StateStore(open_engine(settings.serving_db))
    store.seed("m", {"champion": 1}, "gateway")
    synced = {"kind": "sync", "status": "Synced", "tip": "a" * 40, "deployed": "a" * 40,
              "drift": []}
    drifted = {**synced, "drift": ["challenger v2 pinned outside a rollout"]}
    for status in (synced, synced, drifted, drifted):
        heal.note_status(store, "m", status)
    heal.note_status(store, "never-deployed", synced)
    assert [e["change"]["note"] for e in store.events("m") if "note" in e["change"]] == [
        synced, drifted]
    assert store.events("never-deployed") == []
    heal.put_back(store, "m", 1, "b" * 40, drifted["drift"])
    shown = _page(store)
    assert shown["sync"] == drifted
    assert [e["text"] for e in shown["timeline"] if e["kind"] == "heal"] == [
        f"self-heal at commit {'b' * 12}: put back challenger v2 pinned outside a rollout"]
    assert all("None" not in e["text"] for e in shown["timeline"])
