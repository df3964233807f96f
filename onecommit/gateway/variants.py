"""Variants: which version each alias serves, as desired state says (onecommit/serving/state.py).

A reload resolves an MLflow alias to a version, checks that the inference server has it READY,
warms it, and writes the pin to desired state; every replica follows desired state (by its
revision, within `gateway_state_poll_s`) and swaps its copy in one assignment, so requests in
flight keep the state they started with, and a restarted replica serves what is in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from loguru import logger

from onecommit.gateway.backends import Backend, warm
from onecommit.gateway.errors import (
    InvalidModelName,
    ModelNotDeployed,
    ModelRetired,
    StoreUnavailable,
    VariantError,
    VersionNotServable,
)
from onecommit.serving.database import Database
from onecommit.serving.state import DesiredState, StateError, StateStore
from onecommit.vocabulary import (
    CHALLENGER,
    CHAMPION,
    MODEL_NAME,
    PREVIOUS,
    ROLES,
    TrafficPolicy,
)

# A model's name as a spec could write it.
_MODEL_NAME = re.compile(MODEL_NAME)

# Registered models per page of MLflow's search (its maximum).
_SEARCH_PAGE = 1000


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

    async def pins(self) -> dict[str, dict[str, int]]:
        """model → alias → version for every registered model, from the search's pages (they
        carry each model's aliases): what desired state is seeded from."""
        found: dict[str, dict[str, int]] = {}
        params = {"max_results": _SEARCH_PAGE}
        while True:
            try:
                response = await self._client.get("/api/2.0/mlflow/registered-models/search",
                                                  params=params)
                response.raise_for_status()
            except httpx.HTTPError as error:
                raise VariantError(f"MLflow unreachable: {type(error).__name__}") from error
            try:
                page = response.json()
                for model in page.get("registered_models", []):
                    found[model["name"]] = {a["alias"]: int(a["version"])
                                            for a in model.get("aliases", [])
                                            if a["alias"] in ROLES}
            except (ValueError, KeyError, TypeError) as error:
                raise VariantError("MLflow's registered-models search answer is malformed: "
                                   f"{error!r}") from error
            if not page.get("next_page_token"):
                return found
            params = {"max_results": _SEARCH_PAGE, "page_token": page["next_page_token"]}


def _named(model: str) -> None:
    """A model name as a spec could write it, or the refusal naming the rule."""
    if _MODEL_NAME.fullmatch(model) is None:
        raise InvalidModelName(f"model name {model!r} is not valid: name a model as its spec's "
                               f"`model` does ({MODEL_NAME}: a lower-case letter, "
                               "then 1 to 62 lower-case letters, digits, _ or -)")


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
        # Until the registry has answered once which models have a champion, desired state
        # is not known for the models the store lacks (all of them after a lost database).
        self._seeded = False
        self._seed_warned = False

    def get(self, model: str) -> DesiredState | None:
        return self._states.get(model)

    def all(self) -> dict[str, DesiredState]:
        return self._states

    async def start(self) -> None:
        """Read what is in force; on a store with none, every model with a champion in the
        registry gets desired state from the registry's aliases (how a gateway recovers a lost
        serving database, or a platform from before desired state starts); then follow the
        store."""
        for state in (await self._db.run(self._store.read_all)).values():
            await self._apply(state)
        # Desired state in force is what serves: the registry is asked only for a store that
        # has none (a new or lost serving database), else a model registered but never
        # deployed here (a champion alias set by hand, another tool's) would join what must
        # be served. A registry not answering yet is asked again by the follower.
        self._seeded = bool(self._states) or await self._seed()
        self._follower = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower

    async def _seed(self) -> bool:
        """Seed from the registry, once it answers: a platform started at once may ask before
        MLflow listens, and is asked again by the follower. False while it has not answered."""
        try:
            registered = await self._resolver.pins()
        except VariantError as error:
            if not self._seed_warned:
                logger.warning(f"which models have a champion in the registry is not known "
                               f"yet ({error}): asking again every {self._poll_s:g} s")
                self._seed_warned = True
            return False
        for model, pins in registered.items():
            if CHAMPION in pins and model not in self._states:
                await self._apply(await self._db.run(self._store.seed, model, pins, self._actor))
        self._seeded = True
        return True

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                if not self._seeded:
                    await self._seed()
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
        self._on_change(state)

    async def require(self, model: str) -> DesiredState:
        """The model's desired state. A model this replica has not seen is looked up in the
        store: another replica may have created it within the last poll."""
        _named(model)
        known = self._states.get(model)
        if known is not None:
            return known
        if not self._seeded:
            raise StoreUnavailable(f"desired state of {model!r} is not known yet: the registry "
                                   "(MLflow) has not answered which models have a champion; "
                                   "retry")
        try:
            stored = await self._db.read(self._store.read, model)
        except Exception as error:
            # The driver's message (SQL, file paths) goes to the log, never to a client.
            logger.warning(f"desired state of {model!r} not read: {error}")
            raise StoreUnavailable(f"desired state of {model!r} could not be read: the "
                                   "serving database is unreachable; retry") from error
        if stored is None:
            raise ModelNotDeployed(
                f"model {model!r} has no desired state on this gateway: a model gets one at "
                "its first deploy (a commit of its spec; the deploy's `POST /models/"
                f"{model}/variant/champion/reload` pins it). `GET /models` lists the models "
                "served")
        await self._apply(stored)
        return self._states[model]

    async def servable(self, model: str) -> DesiredState:
        """The desired state of a model inference may ask for: deployed and not retired."""
        state = await self.require(model)
        if state.retired:
            commit = str(state.retired.get("commit", ""))[:12]
            raise ModelRetired(f"model {model!r} was retired at commit {commit}: its spec is "
                               "gone from the gitops tip. Commit its spec again to redeploy "
                               "it; `GET /models` lists the models served")
        return state

    async def _write(self, model: str, **change: Any) -> DesiredState:
        try:
            state = await self._db.run(lambda: self._store.change(model, self._actor, **change))
        except StateError:
            raise
        except Exception as error:
            logger.warning(f"desired state of {model!r} not written: {error}")
            raise StoreUnavailable("desired state could not be written: the serving database "
                                   "is unreachable; retry") from error
        await self._apply(state)
        return state

    async def reload(self, model: str, alias: str,
                     expected: int | None = None) -> tuple[Variant, DesiredState]:
        """Resolve the alias, make sure the inference server serves that version and warm it,
        then pin it in desired state (a model's first reload creates its desired state). With
        `expected`, compare-and-set: an alias that resolves to another version (moved since the
        caller looked) is refused. Any failure leaves desired state as it was."""
        _named(model)
        async with self._changing:
            if model not in self._states and not await self._seed():
                # Pinning a challenger into no state would leave the registry's champion
                # unpinned: the registry must have said whether there is one.
                raise StoreUnavailable(f"desired state of {model!r} is not known yet: MLflow "
                                       "has not answered; retry")
            version = await self._resolver.resolve(model, alias)
            if version is None:
                raise VariantError(f"alias {alias!r} of model {model!r} is not set in the "
                                   "registry")
            if expected is not None and version != expected:
                raise VariantError(f"alias {alias!r} of model {model!r} points at version "
                                   f"{version}, not the expected {expected}: it moved; nothing "
                                   "was pinned, reload with the version you mean")
            if not await self._backend.version_ready(model, version):
                raise VersionNotServable(f"version {version} of {model!r} ({alias}) is not READY "
                                   "in the inference server: publish and load it first")
            if not await warm(self._backend, model, version):
                raise VersionNotServable(f"warm-up inference on version {version} failed")
            self._warmed.add((model, version))
            state = await self._write(model, pins={alias: version})
            return Variant(alias=alias, version=version, ready=True), state

    async def unpin(self, model: str, alias: str) -> DesiredState:
        await self.require(model)
        async with self._changing:
            return await self._write(model, pins={alias: None})

    async def set_policy(self, model: str, policy: TrafficPolicy) -> DesiredState:
        await self.require(model)
        async with self._changing:
            return await self._write(model, policy=policy)

    async def note(self, model: str, note: dict[str, Any]) -> None:
        await self.require(model)
        await self._db.run(self._store.note, model, self._actor, note)

    async def history(self, model: str, limit: int) -> list[dict[str, Any]]:
        return await self._db.read(self._store.events, model, limit)

    async def policies(self, model: str, since_revision: int) -> list[tuple[int, TrafficPolicy]]:
        return await self._db.read(self._store.policies, model, since_revision)

    async def reset_analysis(self, model: str) -> DesiredState:
        await self.require(model)
        async with self._changing:
            return await self._write(model, reset_analysis=True)

    async def variants(self, model: str) -> dict[str, Variant]:
        """The model's pins with their readiness observed now."""
        state = await self.require(model)
        return {alias: Variant(alias, version,
                               await self._backend.version_ready(model, version))
                for alias, version in state.pins.items()}

    async def _serves(self, state: DesiredState) -> bool:
        """Observed now: the champion's version is READY in the inference server."""
        champion = state.pins.get(CHAMPION)
        return champion is not None and await self._backend.version_ready(state.model, champion)

    async def models(self) -> dict[str, dict[str, Any]]:
        """Every model with desired state: its pins, strategy and revision, and whether its
        champion is served now."""
        return {model: {CHAMPION: state.pins.get(CHAMPION),
                        CHALLENGER: state.pins.get(CHALLENGER),
                        PREVIOUS: state.pins.get(PREVIOUS),
                        "strategy": state.policy.strategy,
                        "serving": await self._serves(state), "revision": state.revision,
                        "retired": state.retired}
                for model, state in self._states.items()}

    async def readiness(self) -> tuple[bool, str]:
        """Ready only when every model's champion answers from the inference server."""
        if not await self._backend.ready():
            return False, "the inference server is not ready or not reachable"
        missing = [f"champion version {state.pins[CHAMPION]} of {model!r} is not loaded in the "
                   "inference server (the reconciler loads it)"
                   for model, state in self._states.items()
                   if CHAMPION in state.pins and not await self._serves(state)]
        if missing:
            return False, "; ".join(missing)
        if not self._seeded and not self._states:
            # A store with desired state is served as it is while MLflow is down; an empty
            # one (a new or lost serving database) waits for the registry's champions.
            return False, ("desired state not known yet: the registry (MLflow) has not "
                           "answered which models have a champion")
        if not any(CHAMPION in state.pins for state in self._states.values()):
            return True, "no model deployed yet: the first commit's model is served once promoted"
        return True, "every champion is served"
