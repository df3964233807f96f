"""The layer's record in the state dir: attached or not, its online store, what is materialised.

Read by the lifecycle inside Airflow tasks too, so it imports nothing beyond the settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from onecommit.features.settings import FeatureSettings
from onecommit.files import write_file
from onecommit.settings import Settings


def feature_settings(settings: Settings) -> FeatureSettings:
    if isinstance(settings, FeatureSettings):
        return settings
    return FeatureSettings(**settings.model_dump(exclude_none=True))


def state_file(settings: Settings) -> Path:
    return settings.state_dir / "features" / "layer.json"


def read_state(settings: Settings) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(state_file(settings).read_text())
    except (OSError, ValueError):
        return {"attached": False}
    return state


def write_state(settings: Settings, **values: Any) -> None:
    """Merge `values` into the record, atomically."""
    write_file(state_file(settings), json.dumps({**read_state(settings), **values}, indent=2))


def attached_settings(settings: Settings) -> FeatureSettings | None:
    """The layer's settings, pinned to the online store it was attached with; None when
    detached (processes such as Airflow tasks do not see every ONECOMMIT_FEAST_* variable)."""
    state = read_state(settings)
    if not state.get("attached"):
        return None
    return feature_settings(settings).model_copy(
        update={"feast_online_store": state["online_store"]})
