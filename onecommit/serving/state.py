"""Desired serving state: per model, which version each alias pins, the traffic policy, and a
revision that grows with every change. It lives in the serving database, outside every process
that acts on it: the gateway's admin API writes it, every gateway replica follows it, the Triton
reconciler loads what it needs, and a restarted process reads what is in force.

Every change is one transaction that bumps the revision and appends an event, so replicas and
the reconciler notice a change by its revision and the events are the state's history.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Engine,
    Integer,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from onecommit.errors import OnecommitError
from onecommit.serving.database import METADATA
from onecommit.vocabulary import CHAMPION, ROLES, TrafficPolicy

serving_state = Table(
    "serving_state", METADATA,
    Column("model", String(128), primary_key=True),
    Column("revision", BigInteger, nullable=False),
    Column("pins", Text, nullable=False),
    Column("policy", Text, nullable=False),
    # Start of the rollout analysis window (epoch seconds), shared by every replica, and the
    # revision it started at: requests a lagging replica routed under an older revision
    # are left out of it.
    Column("analysis_since", Double, nullable=False),
    Column("analysis_revision", BigInteger, nullable=False, default=0),
    Column("updated_at", Double, nullable=False),
    Column("updated_by", String(256), nullable=False),
    # Why and at which commit the model was retired (JSON); null while it serves.
    Column("retired", Text),
)
serving_events = Table(
    "serving_events", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False, index=True),
    Column("revision", BigInteger, nullable=False),
    Column("at", Double, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("change", Text, nullable=False),
)


class StateError(OnecommitError):
    """A change desired state refuses (it names the field); nothing was written."""


@dataclass(frozen=True)
class DesiredState:
    model: str
    revision: int
    pins: Mapping[str, int]
    policy: TrafficPolicy = field(default_factory=TrafficPolicy)
    analysis_since: float = 0.0
    analysis_revision: int = 0
    updated_at: float = 0.0
    updated_by: str = ""
    retired: Mapping[str, Any] | None = None

    def needed_versions(self) -> set[int]:
        """Every version some alias pins: what the inference server must keep loaded."""
        return set(self.pins.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pins": dict(self.pins), "policy": asdict(self.policy)}


def _state(row: Any) -> DesiredState:
    return DesiredState(model=row.model, revision=int(row.revision), pins=json.loads(row.pins),
                        policy=TrafficPolicy(**json.loads(row.policy)),
                        analysis_since=row.analysis_since,
                        analysis_revision=int(row.analysis_revision),
                        updated_at=row.updated_at,
                        updated_by=row.updated_by,
                        retired=json.loads(row.retired) if row.retired else None)


def _checked_pins(pins: Mapping[str, int | None]) -> None:
    for alias, version in pins.items():
        if alias not in ROLES:
            raise StateError(f"unknown alias {alias!r}: desired state pins {', '.join(ROLES)}")
        if version is None and alias == CHAMPION:
            raise StateError("the champion cannot be unpinned: pin another version instead")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                    or version < 1):
            raise StateError(f"pin {alias}: version must be a positive integer, got {version!r}")


class StateStore:
    """Reads and changes desired state; safe to share between threads and processes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def read(self, model: str) -> DesiredState | None:
        with self._engine.connect() as connection:
            row = connection.execute(
                select(serving_state).where(serving_state.c.model == model)).one_or_none()
        return None if row is None else _state(row)

    def read_all(self) -> dict[str, DesiredState]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(serving_state)).all()
        return {row.model: _state(row) for row in rows}

    def revisions(self) -> dict[str, int]:
        """model → revision: the cheap question a follower asks to notice a change."""
        with self._engine.connect() as connection:
            rows = connection.execute(select(serving_state.c.model, serving_state.c.revision))
            return {model: int(revision) for model, revision in rows}

    def seed(self, model: str, pins: Mapping[str, int], actor: str) -> DesiredState:
        """Desired state for a model that has none yet (from the registry's aliases, say);
        a model that has some keeps it."""
        _checked_pins(pins)
        now = time.time()
        try:
            with self._engine.begin() as connection:
                connection.execute(insert(serving_state).values(
                    model=model, revision=1, pins=json.dumps(dict(pins)),
                    policy=json.dumps(asdict(TrafficPolicy())), analysis_since=now,
                    updated_at=now, updated_by=actor))
                _record(connection, model, 1, now, actor, {"seed": dict(pins)})
        except IntegrityError:
            pass  # Seeded already, by this process earlier or by another replica.
        state = self.read(model)
        assert state is not None
        return state

    def change(self, model: str, actor: str, pins: Mapping[str, int | None] | None = None,
               policy: TrafficPolicy | None = None,
               reset_analysis: bool = False) -> DesiredState:
        """Apply a change in one transaction and return the new state. `pins` maps aliases to
        a version, or to None to unpin. A model without desired state gets some."""
        _checked_pins(pins or {})
        try:
            return self._change(model, actor, pins or {}, policy, reset_analysis)
        except IntegrityError:
            # Another process created the model's row at the same moment: change that one.
            return self._change(model, actor, pins or {}, policy, reset_analysis)

    def _change(self, model: str, actor: str, pins: Mapping[str, int | None],
                policy: TrafficPolicy | None, reset_analysis: bool) -> DesiredState:
        now = time.time()
        with self._engine.begin() as connection:
            # Write first: the row lock (PostgreSQL) or the write lock (SQLite) is held before
            # anything is read, so two changes at once apply one after the other, none lost.
            bumped = connection.execute(update(serving_state).where(
                serving_state.c.model == model).values(revision=serving_state.c.revision + 1))
            if bumped.rowcount == 0:
                connection.execute(insert(serving_state).values(
                    model=model, revision=1, pins="{}",
                    policy=json.dumps(asdict(TrafficPolicy())), analysis_since=now,
                    updated_at=now, updated_by=actor))
            current = _state(connection.execute(
                select(serving_state).where(serving_state.c.model == model)).one())
            merged = {**current.pins, **pins}
            new_pins = {alias: v for alias, v in merged.items() if v is not None}
            # Pinning a version deploys the model again: it is no longer retired.
            redeployed = any(v is not None for v in pins.values())
            state = DesiredState(
                model=model, revision=current.revision, pins=new_pins,
                policy=policy or current.policy,
                analysis_since=now if reset_analysis else current.analysis_since,
                analysis_revision=(current.revision if reset_analysis
                                   else current.analysis_revision),
                updated_at=now, updated_by=actor,
                retired=None if redeployed else current.retired)
            connection.execute(update(serving_state).where(serving_state.c.model == model).values(
                pins=json.dumps(new_pins), policy=json.dumps(asdict(state.policy)),
                analysis_since=state.analysis_since,
                analysis_revision=state.analysis_revision, updated_at=now, updated_by=actor,
                retired=json.dumps(state.retired) if state.retired else None))
            change: dict[str, Any] = {}
            if pins:
                change["pins"] = dict(pins)
            if policy is not None:
                change["policy"] = asdict(policy)
            if reset_analysis:
                change["reset_analysis"] = True
            _record(connection, model, state.revision, now, actor, change)
        return state

    def retire(self, model: str, actor: str, note: dict[str, Any]) -> DesiredState | None:
        """Retire a model (its spec is gone from git): every pin removed, champion included,
        and the default policy, in one transaction with its event; None when the model had
        no desired state."""
        now = time.time()
        with self._engine.begin() as connection:
            bumped = connection.execute(update(serving_state).where(
                serving_state.c.model == model).values(
                revision=serving_state.c.revision + 1, pins="{}",
                policy=json.dumps(asdict(TrafficPolicy())), updated_at=now, updated_by=actor,
                retired=json.dumps(note)))
            if bumped.rowcount == 0:
                return None
            revision = connection.execute(select(serving_state.c.revision).where(
                serving_state.c.model == model)).scalar_one()
            _record(connection, model, int(revision), now, actor, {"retired": note})
        return self.read(model)

    def note(self, model: str, actor: str, note: dict[str, Any]) -> None:
        """Append an event that changes nothing, at the current revision: a rollout's start
        and its decisions, so the state's history says why the policy changed, while the
        rollout runs and for any process that reads the store."""
        with self._engine.begin() as connection:
            revision = connection.execute(select(serving_state.c.revision).where(
                serving_state.c.model == model)).scalar_one_or_none()
            _record(connection, model, int(revision or 0), time.time(), actor, {"note": note})

    def events(self, model: str, limit: int = 100) -> list[dict[str, Any]]:
        """The model's latest changes, oldest first."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(serving_events).where(serving_events.c.model == model)
                .order_by(serving_events.c.id.desc()).limit(limit)).all()
        return [{"revision": int(r.revision), "at": r.at, "actor": r.actor,
                 "change": json.loads(r.change)} for r in reversed(rows)]

    def policies(self, model: str, since_revision: int) -> list[tuple[int, TrafficPolicy]]:
        """The traffic policy in force at each revision from `since_revision` to the current
        one, oldest first: what a request routed under that revision was split by."""
        e = serving_events.c
        with self._engine.connect() as connection:
            # The policy in force at the window's start may have been set long before it:
            # read back only as far as the latest change that set one.
            earlier = connection.execute(
                select(e.change).where(e.model == model, e.revision <= since_revision)
                .order_by(e.id.desc()).execution_options(yield_per=64))
            in_force = next((policy for (change,) in earlier
                             if (policy := policy_set(json.loads(change))) is not None),
                            TrafficPolicy())
            earlier.close()
            later = connection.execute(
                select(e.revision, e.change).where(e.model == model,
                                                   e.revision > since_revision)
                .order_by(e.id)).all()
        changes = {int(revision): policy for revision, change in later
                   if (policy := policy_set(json.loads(change))) is not None}
        current = max((int(revision) for revision, _ in later), default=since_revision)
        timeline = []
        for revision in range(since_revision, current + 1):
            in_force = changes.get(revision, in_force)
            timeline.append((revision, in_force))
        return timeline


def latest_note(events: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """The latest note of `kind` in `events` (desired state's history as `StateStore.events`
    gives it, oldest first), or None when there is none."""
    for event in reversed(events):
        note = event["change"].get("note")
        if isinstance(note, dict) and note.get("kind") == kind:
            return note
    return None


def policy_set(change: Mapping[str, Any]) -> TrafficPolicy | None:
    """The policy an event's change put in force; None when it left the policy as it was. A
    seed and a retirement put the default policy in force."""
    if "policy" in change:
        return TrafficPolicy(**change["policy"])
    if "seed" in change or "retired" in change:
        return TrafficPolicy()
    return None


def _record(connection: Any, model: str, revision: int, at: float, actor: str,
            change: dict[str, Any]) -> None:
    connection.execute(insert(serving_events).values(model=model, revision=revision, at=at,
                                                     actor=actor, change=json.dumps(change)))
