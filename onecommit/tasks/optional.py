"""`invoke optional --on/--off`: attach or detach the Optional layer (Feast + Redis)."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task
from pydantic import ValidationError

from onecommit.features import layer
from onecommit.features.settings import FeatureSettings
from onecommit.tasks.platform import clear_errors, load_settings


def _feature_settings() -> FeatureSettings:
    try:
        return layer.feature_settings(load_settings())
    except ValidationError as error:
        first = error.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        raise Exit(f"invalid setting {name}={first.get('input')!r}: {first['msg']} "
                   f"(fix ONECOMMIT_{name.upper()})", code=2) from None


@task(help={"on": "attach: feature server, Redis if chosen, gateway enrichment on",
            "off": "detach: gateway enrichment off, then stop the feature server and Redis "
                   "(registry, offline and online data are kept)"})
def optional(c: Context, on: bool = False, off: bool = False) -> None:
    """Attach or detach the Optional layer: Feast online features for the gateway and training."""
    if on == off:
        raise Exit("choose one: `invoke optional --on` or `invoke optional --off`", code=2)
    settings = _feature_settings()
    if settings.profile != "local":
        raise Exit(f"the {settings.profile} profile attaches the layer through the gitops tree",
                   code=2)
    with clear_errors():
        if off:
            layer.off(settings)
            return
        attached = layer.on(settings)
    print(f"optional layer attached: feature server {attached.feature_server}, "
          f"{attached.online_store} online store"
          + ("" if attached.materialized else " (already materialised)"))
