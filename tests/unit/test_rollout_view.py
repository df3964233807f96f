"""The rollout's record in desired state's history, and its views: the page's model, the
terminal's plain lines and rich view. A real SQLite store records what a canary does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from onecommit.gateway.ui import page, timeline
from onecommit.rollout_chart import draw
from onecommit.serving.database import open_engine
from onecommit.serving.state import StateStore
from onecommit.settings import Settings
from onecommit.sync import heal
from onecommit.vocabulary import TrafficPolicy
from onecommit.watch import PlainPrinter, Snapshot, lines, since, view

THRESHOLDS = {"max_error_rate": 0.01, "max_p95_latency_ms": 250.0,
              "min_online_accuracy": 0.85, "min_requests": 50, "max_infra_pause_s": 120.0}
STEPS = ["canary 20%", "canary 50%", "canary 100%"]


def _canary(store: StateStore, decisions: list[str]) -> None:
    """What `rollout.run` writes through the gateway: the start, each step's policy and the
    analysis reset, each decision."""
    store.seed("m", {"champion": 1}, "gateway")
    store.change("m", "gateway", pins={"challenger": 2})
    store.note("m", "gateway", {"kind": "start", "version": 2, "detail": {
        "strategy": "canary", "steps": STEPS, "thresholds": THRESHOLDS,
        "links": {"mlflow_version": "http://mlflow/#/models/m/versions/2"}}})
    for step, decision in zip(STEPS, decisions, strict=False):
        weight = int(step.split()[1].rstrip("%")) / 100
        store.change("m", "gateway", policy=TrafficPolicy("canary", weight))
        store.change("m", "gateway", reset_analysis=True)
        store.note("m", "gateway", {"kind": "decision", "version": 2, "detail": {
            "step": step, "decision": decision,
            "reason": "within thresholds" if decision == "continue" else "error rate 0.2"}})


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
    assert entries[2]["text"] == "canary 20%: continue (within thresholds)"


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
    assert "canary 50%: abort (error rate 0.2)" in shown["verdict"]["text"]
    promoted = _store(tmp_path / "promoted")
    _canary(promoted, ["continue"] * 3)
    promoted.change("m", "gateway", pins={"champion": 2, "previous": 1, "challenger": None})
    shown = _page(promoted)
    assert shown["verdict"]["text"] == "version 2 promoted"
    assert shown["versions"] == {"champion": 2, "challenger": None, "previous": 1}
    assert shown["links"]["mlflow_version"] == "http://mlflow/#/models/m/versions/2"


def _figures(error_rate: float) -> dict[str, Any]:
    return {"requests": 60, "errors": int(60 * error_rate), "infra_errors": 0,
            "error_rate": error_rate, "latency_ms": {"p50": 3.0, "p95": 9.0},
            "online_accuracy": 0.9}


def _snapshot(tmp_path: Path, error_rate: float) -> Snapshot:
    store = _store(tmp_path)
    _canary(store, ["continue"])
    analysis = {"variants": {"champion": _figures(0.0), "challenger": _figures(error_rate)}}
    run = {"dag_id": "ml_train_register_and_reload", "run_id": "commit-abc-dev",
           "state": "running", "tasks": ["rollout"], "queued_at": 1000.0}
    return Snapshot(_page(store, analysis), [run])


def test_plain_lines_flag_a_breached_threshold(tmp_path: Path) -> None:
    shown = dict(lines(_snapshot(tmp_path, error_rate=0.05)))
    assert shown["verdict"] == "m: step 2 of 3: canary 50%"
    assert shown["traffic"] == "traffic: canary: champion 80.0%, challenger 20.0%"
    assert shown["figures challenger"].endswith("beyond threshold: error rate")
    assert "beyond" not in shown["figures champion"]
    assert shown["decision"] == "decision: canary 20%: continue (within thresholds)"
    assert shown["run ml_train_register_and_reload"].endswith("running tasks: rollout")


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
    printer.show(worse, now=102.0)
    assert len(printed) == first  # only figures changed, and they were printed 2 s ago
    printer.show(worse, now=111.0)
    assert printed[first:] == [dict(lines(worse))["figures challenger"]]


def test_the_terminal_view_shows_the_step_the_weights_and_the_thresholds(
        tmp_path: Path) -> None:
    console = Console(record=True, width=140, force_terminal=False)
    console.print(view(_snapshot(tmp_path, error_rate=0.05)))
    text = console.export_text()
    assert "m: step 2 of 3: canary 50%" in text
    assert "champion 80.0%, challenger 20.0%" in text
    assert "error rate ≤ 1.0%" in text
    assert "canary 20%: continue (within thresholds)" in text


def test_the_timeline_is_drawn_as_a_png(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _canary(store, ["continue", "abort"])
    _, entries = timeline(store.events("m"))
    chart = tmp_path / "rollout.png"
    draw(chart, entries, "m: rolled back")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
        heal.note_status(settings, "m", status)
    heal.note_status(settings, "never-deployed", synced)
    assert [e["change"]["note"] for e in store.events("m") if "note" in e["change"]] == [
        synced, drifted]
    assert store.events("never-deployed") == []
    heal.put_back(settings, "m", 1, "b" * 40, drifted["drift"])
    shown = _page(store)
    assert shown["sync"] == drifted
    assert [e["text"] for e in shown["timeline"] if e["kind"] == "heal"] == [
        f"self-heal at commit {'b' * 12}: put back challenger v2 pinned outside a rollout"]
    assert all("None" not in e["text"] for e in shown["timeline"])
