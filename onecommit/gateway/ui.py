"""The rollout page: `GET /ui/` (a vendored HTML page that polls, a section per model) and
`GET /ui/rollout.json` (every model's page, what the page shows and what `invoke watch` draws).
Read-only, on the open router: per model, desired state, the figures the gateway observed, and
the rollout's record from the state's history (its start, its looks and decisions, written
through `POST /models/{model}/rollout/events` by the rollout itself). No token, no admin
action, nothing that is not already open on `/models/{model}/traffic`, `/variants`,
`/analysis`.

The page judges nothing: each metric's outcome, interval and the step's action are the
rollout's one verdict as its notes recorded them; the page shows the latest, and each metric's
interval over the rollout's looks. `page()` and `timeline()` are pure: data in, the page's
model out.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from onecommit.gateway.dataplane import DataPlane
from onecommit.serving.state import DesiredState, latest_note
from onecommit.settings import PROOFS_DIR
from onecommit.strategies import strategy_of, weights
from onecommit.vocabulary import CHALLENGER, CHAMPION, ROLES, TrafficPolicy

PAGE = Path(__file__).with_name("ui") / "index.html"
# The live request rate is taken over this many seconds, apart from the analysis window.
RATE_WINDOW_S = 10.0
# How far back the state's history is read to find the latest rollout's start (a rollout notes
# its looks further apart as it ages, about 450 over the longest limits: see
# `lifecycle.rollout.note_spacing`).
HISTORY_LIMIT = 600
# The notes a rollout writes as it judges: a look during a step, a decision at its end.
JUDGED = ("look", "decision")
# What each metric's interval over time keeps of a look or a decision.
INTERVAL_FIELDS = ("estimate", "lower", "upper", "threshold", "outcome")


class RolloutNote(BaseModel):
    """A rollout's start (strategy, steps, analysis, links), a look during a step (its action,
    reason and each metric's result) or a step's decision."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["start", "look", "decision"]
    version: int = Field(ge=1)
    detail: dict[str, Any] = Field(default_factory=dict)


def _policy_text(policy: dict[str, Any]) -> tuple[str, float]:
    """A policy from desired state's history as the page describes it, and the challenger's
    share of traffic under it."""
    traffic = TrafficPolicy(**policy)
    strategy = strategy_of(traffic)
    return strategy.describe(traffic), strategy.weights(traffic)[CHALLENGER]


def _entry(event: dict[str, Any], weight: float) -> tuple[dict[str, Any] | None, float]:
    """One event of desired state's history as a timeline entry, and the challenger's weight
    after it. Analysis resets and looks are left out: they are bookkeeping, not steps."""
    change, at = event["change"], event["at"]
    entry: dict[str, Any] = {"at": at, "revision": event["revision"], "actor": event["actor"]}
    if "note" in change:
        note = change["note"]
        detail = note.get("detail", {})
        if note["kind"] in ("sync", "look"):
            return None, weight  # the page's sync line and analysis, not steps
        if note["kind"] == "self-heal":
            text = (f"self-heal at commit {str(note.get('commit'))[:12]}: put back "
                    + "; ".join(note.get("drift", [])))
            return {**entry, "kind": "heal", "text": text, "weight": weight}, weight
        if note["kind"] == "start":
            steps = " → ".join(detail.get("steps", []))
            text = f"rollout of version {note['version']} started: {steps}"
            return {**entry, "kind": "start", "text": text, "weight": weight}, weight
        text = f"{detail.get('step')}: {detail.get('decision')} ({detail.get('reason')})"
        return {**entry, "kind": "decision", "decision": detail.get("decision"), "text": text,
                "weight": weight}, weight
    if "policy" in change:
        text, weight = _policy_text(change["policy"])
        return {**entry, "kind": "policy", "text": text, "weight": weight}, weight
    if "pins" in change or "seed" in change:
        pins = change.get("pins") or change.get("seed") or {}
        text = ", ".join(f"{alias} {'unpinned' if v is None else f'→ v{v}'}"
                         for alias, v in pins.items())
        return {**entry, "kind": "pins", "text": text, "weight": weight}, weight
    return None, weight


def timeline(events: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The latest rollout (its start note, or None) and the timeline since it started; with
    no rollout on record, the latest changes. Events are oldest first."""
    starts = [i for i, e in enumerate(events)
              if e["change"].get("note", {}).get("kind") == "start"]
    first = starts[-1] if starts else max(len(events) - 20, 0)
    weight, entries = 0.0, []
    for index, event in enumerate(events):
        entry, weight = _entry(event, weight)
        if entry is not None and index >= first:
            entries.append(entry)
    if not starts:
        return None, entries
    note = events[first]["change"]["note"]
    return {"version": note["version"], "started_at": events[first]["at"],
            **note["detail"]}, entries


def sync_line(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The model's sync status as the sync's latest pass noted it (Synced or OutOfSync, the
    tip and the deployed commit, drift between git and serving), or None before any."""
    return latest_note(events, "sync")


def judged(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest rollout's looks and decisions, oldest first, each as {"at", "kind", "step",
    "action", "reason", "then", "metrics"} (a decision's action is its decision; "then" what
    follows an inconclusive end, rollback or hold); none without a rollout on record."""
    starts = [i for i, e in enumerate(events)
              if e["change"].get("note", {}).get("kind") == "start"]
    if not starts:
        return []
    found = []
    for event in events[starts[-1]:]:
        note = event["change"].get("note", {})
        if note.get("kind") not in JUDGED:
            continue
        detail = note.get("detail", {})
        found.append({"at": event["at"], "kind": note["kind"], "step": detail.get("step"),
                      "action": detail.get("action" if note["kind"] == "look" else "decision"),
                      "reason": detail.get("reason"), "then": detail.get("then"),
                      "metrics": detail.get("metrics", [])})
    return found


def intervals(notes: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each metric's interval over time: per metric, at each look or decision of `notes`
    (`judged`'s, oldest first), its estimate, interval, threshold and outcome."""
    found: dict[str, list[dict[str, Any]]] = {}
    for note in notes:
        for result in note["metrics"]:
            found.setdefault(result["metric"], []).append(
                {"at": note["at"], **{k: result.get(k) for k in INTERVAL_FIELDS}})
    return found


def _ended(rollout: dict[str, Any], pins: dict[str, int], text: str) -> dict[str, Any]:
    ended = ("rolled back" if pins.get(CHAMPION) != rollout["version"]
             and CHALLENGER not in pins else "aborted")
    return {"state": ended, "text": f"{ended}: {text}"}


def _verdict(rollout: dict[str, Any] | None, notes: list[dict[str, Any]],
             pins: dict[str, int]) -> dict[str, Any]:
    """Where the latest rollout is, as its notes (`judged`'s) recorded it: its step and the
    latest look's action, and its outcome once it has one. Nothing is judged here."""
    if rollout is None:
        return {"state": "idle", "text": "no rollout on record"}
    decisions = [n for n in notes if n["kind"] == "decision"]
    steps = rollout.get("steps", [])
    last = decisions[-1] if decisions else None
    if last is not None:
        text = f"{last['step']}: {last['action']} ({last['reason']})"
        then = last["then"]
        if last["action"] == "abort" or (last["action"] == "inconclusive"
                                         and then == "rollback"):
            return _ended(rollout, pins, text)
    if pins.get(CHAMPION) == rollout["version"]:
        return {"state": "promoted", "text": f"version {rollout['version']} promoted"}
    if last is not None and (last["action"] == "hold" or (last["action"] == "inconclusive"
                                                          and then == "hold")):
        return {"state": "held", "text": f"held: {text}"}
    if len(decisions) >= len(steps):
        return {"state": "passed", "text": "every step passed; promoting"}
    text = f"step {len(decisions) + 1} of {len(steps)}: {steps[len(decisions)]}"
    if notes and notes[-1]["kind"] == "look":
        text += f"; latest look: {notes[-1]['action']} ({notes[-1]['reason']})"
    return {"state": "running", "step": len(decisions) + 1, "steps": len(steps), "text": text}


def _variant(alias: str, version: int, ready: bool, share: float, window: dict[str, Any],
             recent: dict[str, Any]) -> dict[str, Any]:
    stats = window.get(alias, {})
    latency = stats.get("latency_ms", {})
    return {"alias": alias, "version": version, "ready": ready, "weight": share,
            "rate_per_s": round(recent.get(alias, {}).get("requests", 0) / RATE_WINDOW_S, 2),
            "requests": stats.get("requests", 0), "errors": stats.get("errors", 0),
            "infra_errors": stats.get("infra_errors", 0), "error_rate": stats.get("error_rate"),
            "p50_ms": latency.get("p50"), "p95_ms": latency.get("p95"),
            "online_accuracy": stats.get("online_accuracy"),
            "estimated_accuracy": stats.get("estimated_accuracy"),
            "online_mae": stats.get("online_mae")}


def page(model: str, revision: int, policy: TrafficPolicy, pins: dict[str, int],
         ready: dict[str, bool], analysis: dict[str, Any], recent: dict[str, Any],
         events: list[dict[str, Any]], links: dict[str, str | None]) -> dict[str, Any]:
    """Everything the page and `invoke watch` show, from what the gateway observed."""
    rollout, entries = timeline(events)
    notes = judged(events)
    latest = notes[-1] if notes else None
    shares = weights(policy)
    return {
        "model": model, "revision": revision,
        "versions": {alias: pins.get(alias) for alias in ROLES},
        "policy": {**asdict(policy), "weights": shares},
        "variants": [_variant(alias, pins[alias], ready.get(alias, False),
                              shares.get(alias, 0.0), analysis.get("variants", {}),
                              recent.get("variants", {}))
                     for alias in ROLES if alias in pins],
        "shadow": {"compared": analysis.get("shadow_comparisons", 0),
                   "agreement": analysis.get("shadow_agreement")},
        "ab_test": analysis.get("ab_test"),
        "rollout": rollout, "verdict": _verdict(rollout, notes, pins), "timeline": entries,
        "analysis": None if latest is None else {k: latest[k] for k in (
            "at", "step", "action", "reason", "metrics")},
        "intervals": intervals(notes),
        "sync": sync_line(events),
        "links": {**(rollout or {}).get("links", {}), **links},
    }


def last_proof(root: Path = PROOFS_DIR) -> str | None:
    """The latest `invoke proof` report on this machine, if any (proof folders are named by
    their UTC timestamp, so the last in order is the newest), relative to the proofs folder:
    the page is open, and shows no host path."""
    reports = sorted(root.glob("*/proof.md"))
    return str(reports[-1].relative_to(root)) if reports else None


async def _page(plane: DataPlane, state: DesiredState, mlflow_url: str) -> dict[str, Any]:
    model = state.model
    variants = await plane.serving.variants(model)
    analysis = await plane.predictions.analysis(model, state.analysis_since,
                                                state.analysis_revision, 0.05, 0)
    recent = await plane.predictions.analysis(model, time.time() - RATE_WINDOW_S, 0, 0.05, 0)
    champion = state.pins.get(CHAMPION)
    links: dict[str, str | None] = {
        "mlflow_model": f"{mlflow_url}/#/models/{model}",
        "mlflow_champion": (f"{mlflow_url}/#/models/{model}/versions/{champion}"
                            if champion else None),
        "proof": last_proof()}
    return page(model, state.revision, state.policy, dict(state.pins),
                {alias: v.ready for alias, v in variants.items()}, analysis, recent,
                await plane.serving.history(model, HISTORY_LIMIT), links)


def add_routes(open_router: APIRouter, admin_router: APIRouter, mlflow_url: str) -> None:
    """`GET /ui/`, `GET /ui/rollout.json` (open); `POST /models/{model}/rollout/events` (admin
    token)."""
    html = PAGE.read_text()  # once per worker, not from disk on every request

    @open_router.get("/ui/", response_class=HTMLResponse)
    async def ui_page() -> HTMLResponse:
        return HTMLResponse(html, headers={"cache-control": "no-cache"})

    @open_router.get("/ui/rollout.json")
    async def ui_models(request: Request) -> dict[str, Any]:
        plane: DataPlane = request.app.state.dataplane
        return {"models": {name: await _page(plane, state, mlflow_url)
                           for name, state in sorted(plane.serving.all().items())}}

    @admin_router.post("/models/{model}/rollout/events")
    async def rollout_event(model: str, note: RolloutNote, request: Request) -> dict[str, Any]:
        plane: DataPlane = request.app.state.dataplane
        await plane.serving.note(model, note.model_dump())
        return {"model": model, "recorded": True}
