"""The five deployment criteria, judged from what each step observed, never assumed.

A deploy is successful only when all five hold: the version is registered, READY passed in the
registry and in Triton, the Triton smoke test matched the registry model, the gateway pinned
the version, and the notification was delivered. Each step returns what it saw (its evidence);
the promote step records the evidence and the criteria judged from it on the model version
(tags `evidence.<criterion>` and `criterion.<criterion>`), and `invoke proof` judges the
recorded evidence again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

CRITERIA = ("registered", "ready", "smoke", "gateway_reload", "notification_sent")
Evidence = Mapping[str, Any]


def _registered(version: int, seen: Evidence) -> bool:
    return seen.get("version") == version


def _ready(version: int, seen: Evidence) -> bool:
    return (seen.get("version") == version and seen.get("registry_status") == "READY"
            and seen.get("triton_ready") is True)


def _smoke(version: int, seen: Evidence) -> bool:
    difference, tolerance = seen.get("max_difference"), seen.get("tolerance")
    return (seen.get("version") == version and int(seen.get("rows", 0)) > 0
            and seen.get("mismatched_labels") == 0 and difference is not None
            and tolerance is not None and float(difference) <= float(tolerance))


def _gateway_reload(version: int, seen: Evidence) -> bool:
    return seen.get("version") == version and seen.get("ready") is True


def _notification(_version: int, seen: Evidence) -> bool:
    return seen.get("delivered") is True


_JUDGES: dict[str, Callable[[int, Evidence], bool]] = {
    "registered": _registered, "ready": _ready, "smoke": _smoke,
    "gateway_reload": _gateway_reload, "notification_sent": _notification,
}


def judge(version: int, evidence: Mapping[str, Evidence | None]) -> dict[str, bool]:
    """Each criterion true only when its evidence shows it held for this version."""
    return {name: (seen := evidence.get(name)) is not None and _JUDGES[name](version, seen)
            for name in CRITERIA}
