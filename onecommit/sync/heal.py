"""Self-heal of serving: while no deploy of a model runs, its desired state must pin the
registry's champion and send it all traffic. Pins or traffic changed outside a rollout (through
the admin API, say) are drift: shown, and put back in one desired-state transaction when the
env's policy says `self_heal: true`. (A version missing from Triton is the reconciler's: it
loads every version desired state pins.)"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from onecommit.settings import Settings
from onecommit.strategies import strategy_of
from onecommit.vocabulary import CHALLENGER, CHAMPION, TrafficPolicy

if TYPE_CHECKING:
    from onecommit.serving.state import StateStore

ACTOR = "sync"
# How far back desired state's history is searched for the model's last sync note.
NOTE_LOOKBACK = 300


@contextmanager
def serving_store(settings: Settings) -> Iterator[StateStore]:
    """Desired state for one sync pass: one engine, migrations checked once, closed after."""
    # The serving database's driver loads only when a pass looks at serving.
    from onecommit.serving.database import opened
    from onecommit.serving.state import StateStore

    with opened(settings.serving_db) as engine:
        yield StateStore(engine)


def serving_drift(store: StateStore, model: str, champion: int) -> list[str]:
    """How the model's desired state differs from serving the champion alone; empty when it
    does not (or when the model has no desired state yet)."""
    state = store.read(model)
    if state is None:
        return []
    drift = []
    if state.pins.get(CHAMPION) != champion:
        drift.append(f"champion pinned to v{state.pins.get(CHAMPION)}, the registry's champion "
                     f"is v{champion}")
    if state.pins.get(CHALLENGER) is not None:
        drift.append(f"challenger v{state.pins[CHALLENGER]} pinned outside a rollout")
    if strategy_of(state.policy).reaches_challenger(state.policy):
        drift.append(f"traffic policy {state.policy.strategy} sends the challenger requests "
                     "outside a rollout")
    return drift


def put_back(store: StateStore, model: str, champion: int, sha: str,
             drift: list[str]) -> None:
    """The champion pinned with all traffic, the challenger unpinned, and why, noted."""
    store.change(model, ACTOR, pins={CHAMPION: champion, CHALLENGER: None},
                 policy=TrafficPolicy())
    store.note(model, ACTOR, {"kind": "self-heal", "commit": sha, "drift": drift})


def note_status(store: StateStore, model: str, status: dict[str, Any]) -> None:
    """Note the model's sync status in desired state's history, where the rollout page reads
    it, when it differs from the last one noted (a pass that finds nothing new writes
    nothing); a model without desired state gets none."""
    from onecommit.serving.state import latest_note

    if store.read(model) is None:
        return
    if latest_note(store.events(model, NOTE_LOOKBACK), "sync") != status:
        store.note(model, ACTOR, status)
