"""Variants: which version each alias serves, as desired state says (onecommit/serving/state.py).

A reload resolves an MLflow alias to a version, checks that the inference server has it READY,
warms it, and writes the pin to desired state; every replica follows desired state (by its
revision, within `gateway_state_poll_s`) and swaps its copy in one assignment, so requests in
flight keep the state they started with, and a restarted replica serves what is in force.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from loguru import logger

from onecommit.gateway.backends import Backend, warm
from onecommit.gateway.errors import StoreUnavailable, VariantError, VersionNotServable
from onecommit.gateway.router import CHAMPION, TrafficPolicy
from onecommit.serving.database import Database
from onecommit.serving.state import ALIASES, DesiredState, StateError, StateStore


@dataclass(frozen=True)
class Variant:
    alias: str
    version: int
    # Observed when asked: the inference server has this version READY.
    ready: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AliasResolver:
    """Resolves `models:/<name>@<alias>` through MLflow's REST API."""

    def __init__(self, mlflow_url: str, timeout_s: float) -> None:
        self._client = httpx.AsyncClient(base_url=mlflow_url, timeout=timeout_s)

    async def close(self) -> None:
        await self._client.aclose()

    async def resolve(self, model: str, alias: str) -> int | None:
        """The version the alias points at; None when the alias is not set."""
        try:
            response = await self._client.get(
                "/api/2.0/mlflow/registered-models/alias", params={"name": model, "alias": alias}
            )
        except httpx.HTTPError as error:
            raise VariantError(f"MLflow unreachable: {type(error).__name__}") from error
        if response.status_code != 200:
            return None
        return int(response.json()["model_version"]["version"])


class ServingState:
    """This replica's copy of desired state for every model, and the changes it makes."""

    def __init__(self, store: StateStore, database: Database, backend: Backend,
                 resolver: AliasResolver, actor: str, poll_s: float,
                 on_change: Callable[[DesiredState], object] = lambda _: None) -> None:
        self._store = store
        self._db = database
        self._backend = backend
        self._resolver = resolver
        self._actor = actor
        self._poll_s = poll_s
        self._states: dict[str, DesiredState] = {}
        self._warmed: set[tuple[str, int]] = set()
        self._changing = asyncio.Lock()
        self._follower: asyncio.Task[None] | None = None
        self._on_change = on_change
        # Models whose desired state is not known: none in the store, and the registry not
        # yet answered whether they have a champion. Never ready while any is here.
        self._unseeded: set[str] = set()
        self._unseeded_logged: set[str] = set()

    def get(self, model: str) -> DesiredState | None:
        return self._states.get(model)

    def all(self) -> dict[str, DesiredState]:
        return self._states

    async def start(self, seed_models: tuple[str, ...]) -> None:
        """Read what is in force; a model without desired state gets it from the registry's
        aliases (how a platform from before desired state starts); then follow the store."""
        for state in (await self._db.run(self._store.read_all)).values():
            await self._apply(state)
        self._unseeded = {model for model in seed_models if model not in self._states}
        for model in tuple(self._unseeded):
            await self._seed(model)
        self._follower = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower

    async def _seed(self, model: str) -> None:
        """Desired state from the registry's aliases, once the registry answers: a platform
        started at once may ask before MLflow listens, and is asked again by the follower."""
        try:
            pins = {alias: v for alias in ALIASES
                    if (v := await self._resolver.resolve(model, alias)) is not None}
        except VariantError as error:
            if model not in self._unseeded_logged:
                logger.warning(f"no desired state for {model!r} yet and {error}: asking again "
                               f"every {self._poll_s:g} s")
                self._unseeded_logged.add(model)
            return
        if CHAMPION in pins:
            await self._apply(await self._db.run(self._store.seed, model, pins, self._actor))
        self._unseeded.discard(model)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                for model in tuple(self._unseeded):
                    await self._seed(model)
                revisions = await self._db.run(self._store.revisions)
                for model, revision in revisions.items():
                    known = self._states.get(model)
                    if known is None or known.revision != revision:
                        state = await self._db.run(self._store.read, model)
                        if state is not None:
                            await self._apply(state)
            except Exception as error:  # The store down must not stop serving what is known.
                logger.warning(f"desired state not refreshed: {error}")

    async def _apply(self, state: DesiredState) -> None:
        """Take a newer state, warming versions this replica has not served yet. The pin is
        taken whether or not the warm-up answers: desired state decides what every replica
        routes to, and readiness reports what the inference server actually has."""
        known = self._states.get(state.model)
        if known is not None and known.revision >= state.revision:
            return
        for version in state.needed_versions():
            if (state.model, version) not in self._warmed:
                with contextlib.suppress(Exception):
                    if await warm(self._backend, state.model, version):
                        self._warmed.add((state.model, version))
        self._states = {**self._states, state.model: state}
        self._unseeded.discard(state.model)  # another replica's change, or this one's
        self._on_change(state)

    async def _write(self, model: str, **change: Any) -> DesiredState:
        try:
            state = await self._db.run(lambda: self._store.change(model, self._actor, **change))
        except StateError:
            raise
        except Exception as error:
            raise StoreUnavailable(f"desired state could not be written ({error}): the "
                                   "serving database is unreachable; retry") from error
        await self._apply(state)
        return state

    async def reload(self, model: str, alias: str) -> Variant:
        """Resolve the alias, make sure the inference server serves that version and warm it,
        then pin it in desired state. Any failure leaves desired state as it was."""
        async with self._changing:
            if model in self._unseeded:
                # Pinning a challenger into no state would leave the champion unpinned.
                await self._seed(model)
                if model in self._unseeded:
                    raise VariantError(f"desired state of {model!r} is not known yet: MLflow "
                                       "has not answered; retry")
            version = await self._resolver.resolve(model, alias)
            if version is None:
                raise VariantError(f"alias {alias!r} of model {model!r} is not set in the "
                                   "registry")
            if not await self._backend.version_ready(model, version):
                raise VersionNotServable(f"version {version} of {model!r} ({alias}) is not READY "
                                   "in the inference server: publish and load it first")
            if not await warm(self._backend, model, version):
                raise VersionNotServable(f"warm-up inference on version {version} failed")
            self._warmed.add((model, version))
            await self._write(model, pins={alias: version})
            return Variant(alias=alias, version=version, ready=True)

    async def unpin(self, model: str, alias: str) -> DesiredState:
        async with self._changing:
            return await self._write(model, pins={alias: None})

    async def set_policy(self, model: str, policy: TrafficPolicy) -> DesiredState:
        async with self._changing:
            return await self._write(model, policy=policy)

    async def note(self, model: str, note: dict[str, Any]) -> None:
        await self._db.run(self._store.note, model, self._actor, note)

    async def history(self, model: str, limit: int) -> list[dict[str, Any]]:
        return await self._db.read(self._store.events, model, limit)

    async def reset_analysis(self, model: str) -> DesiredState:
        async with self._changing:
            return await self._write(model, reset_analysis=True)

    async def variants(self, model: str) -> dict[str, Variant]:
        """The model's pins with their readiness observed now."""
        state = self._states.get(model)
        if state is None:
            return {}
        return {alias: Variant(alias, version,
                               await self._backend.version_ready(model, version))
                for alias, version in state.pins.items()}

    async def readiness(self) -> tuple[bool, str]:
        """Ready only when every model's champion answers from the inference server."""
        if not await self._backend.ready():
            return False, "the inference server is not ready or not reachable"
        missing = [f"champion version {version} of {model!r} is not loaded in the inference "
                   "server (the reconciler loads it)"
                   for model, state in self._states.items()
                   if (version := state.pins.get(CHAMPION)) is not None
                   and not await self._backend.version_ready(model, version)]
        if missing:
            return False, "; ".join(missing)
        if self._unseeded:
            return False, (f"desired state of {', '.join(sorted(self._unseeded))} not known "
                           "yet: the registry (MLflow) has not answered which version is "
                           "champion")
        if not any(CHAMPION in state.pins for state in self._states.values()):
            return True, "no model deployed yet: the first commit's model is served once promoted"
        return True, "every champion is served"
