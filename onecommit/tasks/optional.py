"""`invoke optional --on/--off`: attach or detach the Optional layer (Feast + Redis)."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit

from onecommit.features import gitops
from onecommit.features.state import feature_settings
from onecommit.platform import optional_layer, profiles
from onecommit.tasks import task
from onecommit.tasks.platform import load_settings


def _flip_toggle(env: str, attach: bool) -> None:
    changed = gitops.flip(env, attach)
    state = "attached" if attach else "detached"
    print(f"{env}: {', '.join(changed)} {state} (committed; Argo CD follows once the commit "
          "reaches its repository)" if changed else f"{env}: the optional layer is already {state}")


@task(help={"on": "attach: feature server, Redis if chosen, gateway enrichment on",
            "off": "detach: gateway enrichment off, then stop the feature server and Redis "
                   "(registry, offline and online data are kept)",
            "profile": "local (default), compose (its `optional` services) or kind",
            "env": "kind profile: the gitops env whose toggle is flipped (default dev)"})
def optional(c: Context, on: bool = False, off: bool = False, profile: str | None = None,
             env: str = "dev") -> None:
    """Attach or detach the Optional layer: Feast online features for the gateway and training."""
    if on == off:
        raise Exit("choose one: `invoke optional --on` or `invoke optional --off`", code=2)
    settings = feature_settings(load_settings(profile=profile))
    where = profiles.of(settings).optional_runtime(settings)
    if where is None:
        _flip_toggle(env, on)
        return
    if off:
        optional_layer.off(settings, where)
        return
    attached = optional_layer.on(settings, where)
    print(f"optional layer attached: feature server {attached.feature_server}, "
          f"{attached.online_store} online store"
          + ("" if attached.materialized else " (already materialised)"))
