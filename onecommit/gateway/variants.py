"""Variants: MLflow aliases resolved to a model version on reload, pinned until the next one."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

import httpx


class VariantError(RuntimeError):
    """An alias could not be resolved or its version is not servable; nothing was swapped."""


@dataclass(frozen=True)
class Variant:
    alias: str
    version: int
    ready: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AliasResolver:
    """Resolves `models:/<name>@<alias>` through MLflow's REST API."""

    def __init__(self, mlflow_url: str, timeout_s: float) -> None:
        self._client = httpx.AsyncClient(base_url=mlflow_url, timeout=timeout_s)

    async def close(self) -> None:
        await self._client.aclose()

    async def resolve(self, model: str, alias: str) -> int:
        try:
            response = await self._client.get(
                "/api/2.0/mlflow/registered-models/alias", params={"name": model, "alias": alias}
            )
        except httpx.HTTPError as error:
            raise VariantError(f"MLflow unreachable: {type(error).__name__}") from error
        if response.status_code != 200:
            raise VariantError(f"alias {alias!r} of model {model!r} is not set in the registry")
        return int(response.json()["model_version"]["version"])


class VariantTable:
    """alias → pinned Variant. Readers take one snapshot per request; a reload replaces the
    whole mapping in one assignment, so requests in flight keep the version they started with."""

    def __init__(self) -> None:
        self._variants: dict[str, Variant] = {}
        self._reload_lock = asyncio.Lock()

    def snapshot(self) -> dict[str, Variant]:
        return self._variants

    def get(self, alias: str) -> Variant | None:
        return self._variants.get(alias)

    @property
    def reload_lock(self) -> asyncio.Lock:
        return self._reload_lock

    def pin(self, variant: Variant) -> None:
        self._variants = {**self._variants, variant.alias: variant}
