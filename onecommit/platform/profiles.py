"""What every command asks of whichever profile runs the platform (kind has its own plan)."""

from __future__ import annotations

from onecommit.platform import local
from onecommit.platform.health import ComponentStatus
from onecommit.platform.local import Report
from onecommit.settings import Settings


def up(settings: Settings, report: Report) -> None:
    """Start the platform and return when every component is healthy."""
    if settings.profile == "compose":
        from onecommit.platform import compose  # the Docker SDK only for that profile

        compose.up(settings, report)
    else:
        local.up(settings, report)


def down(settings: Settings, volumes: bool = False) -> None:
    """Stop what `up` started; `volumes`: compose's named volumes too."""
    if settings.profile == "compose":
        from onecommit.platform import compose

        compose.down(settings, volumes=volumes)
    else:
        local.down(settings)


def statuses(settings: Settings) -> dict[str, ComponentStatus]:
    """Each component's health, pid, version and memory, observed now."""
    if settings.profile == "compose":
        from onecommit.platform import compose

        return compose.statuses(settings)
    return local.statuses(settings)
