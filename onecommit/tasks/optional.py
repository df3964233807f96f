"""`invoke optional --on/--off`: attach or detach the Optional layer (Feast + Redis)."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task
from pydantic import ValidationError

from onecommit.features import gitops, layer
from onecommit.features.offline import FeastJobError
from onecommit.features.settings import FeatureSettings
from onecommit.features.state import feature_settings
from onecommit.gitops_toggle import ToggleError
from onecommit.tasks.platform import clear_errors, load_settings


def _feature_settings() -> FeatureSettings:
    try:
        return feature_settings(load_settings())
    except ValidationError as error:
        first = error.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        raise Exit(f"invalid setting {name}={first.get('input')!r}: {first['msg']} "
                   f"(fix ONECOMMIT_{name.upper()})", code=2) from None


def _flip_toggle(env: str, attach: bool) -> None:
    try:
        changed = gitops.flip(env, attach)
    except (ToggleError, RuntimeError) as error:
        raise Exit(f"error: {error}", code=1) from None
    state = "attached" if attach else "detached"
    print(f"{env}: {', '.join(changed)} {state} (committed; Argo CD follows once the commit "
          "reaches its repository)" if changed else f"{env}: the optional layer is already {state}")


@task(help={"on": "attach: feature server, Redis if chosen, gateway enrichment on",
            "off": "detach: gateway enrichment off, then stop the feature server and Redis "
                   "(registry, offline and online data are kept)",
            "env": "kind profile: the gitops env whose toggle is flipped (default dev)"})
def optional(c: Context, on: bool = False, off: bool = False, env: str = "dev") -> None:
    """Attach or detach the Optional layer: Feast online features for the gateway and training."""
    if on == off:
        raise Exit("choose one: `invoke optional --on` or `invoke optional --off`", code=2)
    settings = _feature_settings()
    if settings.profile != "local":
        _flip_toggle(env, on)
        return
    with clear_errors():
        if off:
            layer.off(settings)
            return
        try:
            attached = layer.on(settings)
        except FeastJobError as error:
            raise Exit(f"error: {error}", code=1) from None
    print(f"optional layer attached: feature server {attached.feature_server}, "
          f"{attached.online_store} online store"
          + ("" if attached.materialized else " (already materialised)"))
