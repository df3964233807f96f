"""What the sync saw and did: one JSON line per record in `<state dir>/gitops/syncs.jsonl`,
each appended in one write, and the `last_synced` marker, replaced atomically. A reader skips
a torn line (a crash mid-write) instead of failing on it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from onecommit.files import append_line, read_lines, write_file
from onecommit.gitops_remote import last_synced_file
from onecommit.settings import Settings


def now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class SyncRecord:
    """What one sync of a commit saw and did."""

    sha: str
    env: str
    changed: list[str]
    problems: list[str] = field(default_factory=list)
    # "triggered" (deploys started), "pruned" (models retired, none deployed), "healed"
    # (serving put back in line with git, nothing deployed), "recorded"
    # (the tip's models were Synced already, or the commit was superseded by a newer tip),
    # "rejected" (validation), "error" (the sync of this commit failed; the reason is in
    # problems), or "failed" (a deploy's training refused the commit).
    action: str = "recorded"
    # Model → its deploy run, and the inputs fingerprint that run deploys.
    deploys: dict[str, str] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    # Models OutOfSync but not deployed by this sync, and why (a deploy of the model still
    # running, or the same inputs failed before).
    waiting: dict[str, str] = field(default_factory=dict)
    # Those of them that wait for their own running deploy: a later pass deploys them (the
    # others wait for a commit: failed inputs, a drift with self_heal off, prune off).
    queued: list[str] = field(default_factory=list)
    # Models whose spec is gone from the tip, retired by this sync.
    pruned: list[str] = field(default_factory=list)
    # Models whose serving drifted from git (pins or traffic changed outside a rollout),
    # put back by this sync (self-heal), and how they had drifted.
    healed: dict[str, list[str]] = field(default_factory=dict)
    # The tip does not descend from the last synced commit: history was rewritten.
    rewritten: bool = False
    # The model a "failed" record is about (its deploy's training refused the commit).
    model: str | None = None
    # When the sync took up the commit, and when Airflow accepted its deploy runs.
    at: str = field(default_factory=now)
    triggered_at: str | None = None


def syncs_file(settings: Settings) -> Path:
    return settings.state_dir / "gitops" / "syncs.jsonl"


def read_syncs(settings: Settings) -> list[dict[str, Any]]:
    """Every record, oldest first; a line that is not a whole JSON object is skipped."""
    records = []
    for line in read_lines(syncs_file(settings)):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # Torn by a crash mid-append: the records after it still count.
        if isinstance(record, dict):
            records.append(record)
    return records


def append(settings: Settings, record: SyncRecord) -> None:
    append_line(syncs_file(settings), json.dumps(asdict(record)))


def record_failure(settings: Settings, sha: str, env: str, model: str, reason: str) -> None:
    """A deploy's training refused the commit (its data or code): the reason goes on the
    commit's sync record, as a validation problem would."""
    append(settings, SyncRecord(sha=sha, env=env, changed=[], action="failed", model=model,
                                problems=[reason]))


def last_synced(settings: Settings) -> str | None:
    marker = last_synced_file(settings)
    return marker.read_text().strip() or None if marker.exists() else None


def mark_synced(settings: Settings, sha: str) -> None:
    write_file(last_synced_file(settings), sha + "\n")


def dag_run_id(sha: str, env: str, model: str, attempt: int = 0) -> str:
    """One deploy run per commit, env and model (re-syncing a commit never deploys it twice);
    a later attempt at the same commit (a drift put back) gets its number."""
    base = f"commit-{sha[:12]}-{env}-{model}"
    return base if attempt == 0 else f"{base}-{attempt}"
