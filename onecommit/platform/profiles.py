"""The registry of profiles: what every command asks of whichever profile runs the platform.

Each profile (local, compose, kind) implements the same protocol, and the invoke tasks dispatch
to it by name; what differs between them is decided here, by the profile object, never by
comparing the profile's name elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from onecommit.commands import run
from onecommit.features.state import feature_settings
from onecommit.platform import kind, local
from onecommit.platform.health import ComponentStatus
from onecommit.platform.local import PlatformError, Report
from onecommit.platform.optional_layer import Supervised
from onecommit.platform.optional_runtime import Runtime
from onecommit.settings import Settings


class Profile(Protocol):
    @property
    def plans(self) -> bool:
        """`up` and `down` are plans that `--dry-run` prints instead of running."""

    @property
    def runs_loop(self) -> bool:
        """The one-commit loop (demo, demo-commit) runs against it from this machine."""

    def up(self, settings: Settings, report: Report, dry_run: bool = False) -> None:
        """Start the platform and return when every component is healthy."""

    def down(self, settings: Settings, volumes: bool = False, dry_run: bool = False) -> None:
        """Stop what `up` started; `volumes`: compose's named volumes too."""

    def status(self, settings: Settings) -> dict[str, ComponentStatus]:
        """Each component's health, pid, version and memory, observed now."""

    def logs(self, settings: Settings, name: str, lines: int = 50, follow: bool = False) -> None:
        """Print a component's log tail (and what follows, when `follow`)."""

    def notes(self, settings: Settings) -> list[str]:
        """Lines `invoke status` adds under the components."""

    def urls(self, settings: Settings) -> list[str]:
        """Lines `invoke up` adds under the platform's URLs."""

    def optional_runtime(self, settings: Settings) -> Runtime | None:
        """Where the optional layer's programs run; None where the layer is attached by its
        gitops toggle instead (Argo CD runs it)."""


@dataclass(frozen=True)
class Local:
    plans: bool = False
    runs_loop: bool = True

    def up(self, settings: Settings, report: Report, dry_run: bool = False) -> None:
        local.up(settings, report)

    def down(self, settings: Settings, volumes: bool = False, dry_run: bool = False) -> None:
        local.down(settings)

    def status(self, settings: Settings) -> dict[str, ComponentStatus]:
        return local.statuses(settings)

    def logs(self, settings: Settings, name: str, lines: int = 50, follow: bool = False) -> None:
        files = [p for p in local.component_log(settings, name) if p.exists()]
        if not files:
            raise PlatformError(f"no log yet for {name}: start the platform with `invoke up`")
        run(["tail", "-n", str(lines), *(["-F"] if follow else []), *files], capture=False,
            check=False)

    def notes(self, settings: Settings) -> list[str]:
        return []

    def urls(self, settings: Settings) -> list[str]:
        return []

    def optional_runtime(self, settings: Settings) -> Runtime | None:
        return Supervised(feature_settings(settings))


@dataclass(frozen=True)
class Compose:
    """The compose CLI and the Docker SDK are imported only when this profile is used."""

    plans: bool = False
    runs_loop: bool = True

    def up(self, settings: Settings, report: Report, dry_run: bool = False) -> None:
        from onecommit.platform import compose

        compose.up(settings, report)

    def down(self, settings: Settings, volumes: bool = False, dry_run: bool = False) -> None:
        from onecommit.platform import compose

        compose.down(settings, volumes=volumes)

    def status(self, settings: Settings) -> dict[str, ComponentStatus]:
        from onecommit.platform import compose

        return compose.statuses(settings)

    def logs(self, settings: Settings, name: str, lines: int = 50, follow: bool = False) -> None:
        from onecommit.platform import compose

        print(compose.logs(settings, name, lines, follow), end="")

    def notes(self, settings: Settings) -> list[str]:
        from onecommit.platform import compose

        return ["memory per service (MB): " + ", ".join(
            f"{name} {mb:.0f}" for name, mb in compose.service_memory(settings).items())]

    def urls(self, settings: Settings) -> list[str]:
        return [f"Prometheus:  {settings.url(settings.prometheus_port)}  Alertmanager: "
                f"{settings.url(settings.alertmanager_port)}"]

    def optional_runtime(self, settings: Settings) -> Runtime | None:
        from onecommit.platform.optional_containers import Containers

        return Containers(feature_settings(settings))


@dataclass(frozen=True)
class Kind:
    """A local kind cluster with Argo CD: `up` and `down` are plans of kind, docker, helm and
    kubectl commands; status and logs ask the cluster."""

    plans: bool = True
    runs_loop: bool = False

    def up(self, settings: Settings, report: Report, dry_run: bool = False) -> None:
        kind.up(dry_run)

    def down(self, settings: Settings, volumes: bool = False, dry_run: bool = False) -> None:
        kind.down(dry_run)

    def status(self, settings: Settings) -> dict[str, ComponentStatus]:
        return kind.statuses()

    def logs(self, settings: Settings, name: str, lines: int = 50, follow: bool = False) -> None:
        kind.logs(name, lines, follow)

    def notes(self, settings: Settings) -> list[str]:
        return []

    def urls(self, settings: Settings) -> list[str]:
        return []

    def optional_runtime(self, settings: Settings) -> Runtime | None:
        return None


PROFILES: dict[str, Profile] = {"local": Local(), "compose": Compose(), "kind": Kind()}


def of(settings: Settings) -> Profile:
    """The profile the settings name (validated by Settings: one of PROFILES)."""
    return PROFILES[settings.profile]
