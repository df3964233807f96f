"""What every command asks of whichever profile runs the platform."""

from __future__ import annotations

from onecommit.platform import local
from onecommit.platform.health import ComponentStatus
from onecommit.settings import Settings


def statuses(settings: Settings) -> dict[str, ComponentStatus]:
    """Each component's health, pid, version and memory, observed now."""
    if settings.profile == "compose":
        from onecommit.platform import compose  # the Docker SDK only for that profile

        return compose.statuses(settings)
    return local.statuses(settings)
