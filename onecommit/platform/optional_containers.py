"""The optional layer on the compose profile: Redis and the feature server are the services of
compose.yaml's `optional` profile, and Feast's jobs run in the feast image (`compose run`), as
the platform's other programs do in theirs. The online store is always Redis there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from onecommit.commands import last_lines
from onecommit.features.offline import FeastJobError, job_arguments, job_report
from onecommit.features.settings import FEATURE_SERVER, REDIS, FeatureSettings
from onecommit.platform import compose
from onecommit.platform.components import feature_server
from onecommit.platform.health import ComponentStatus
from onecommit.platform.local import PlatformError, Report
from onecommit.platform.optional_runtime import Exited, redis_ready, refuse_taken_ports, wait_ready

# docker/feast.Dockerfile's copy of the feature repo.
IMAGE_REPO = PurePosixPath("/app/optional/feast")
# What a stopped or crashed container's state is (anything else runs or is starting).
_DEAD = {"exited", "dead", "restarting", "not created", "created"}


@dataclass(frozen=True)
class Containers:
    settings: FeatureSettings

    def check(self) -> None:
        settings = self.settings
        if settings.feast_online_store == "sqlite":
            raise PlatformError("the compose profile keeps Feast's online store in Redis, a "
                                "container of its own: unset ONECOMMIT_FEAST_ONLINE_STORE "
                                "(sqlite is for the local profile)")
        gateway = compose.service_state(settings, "gateway")
        if gateway != "healthy":
            raise PlatformError(f"the compose platform is not running (gateway {gateway}): "
                                "start it with `invoke up --profile compose` first")
        refuse_taken_ports(settings, [REDIS, FEATURE_SERVER], self.running())

    def running(self) -> set[str]:
        return compose.running_services(self.settings) & {REDIS, FEATURE_SERVER}

    def start_store(self, report: Report) -> None:
        # The job and the server write Feast's registry there, as the containers' user.
        compose.own(self.settings.features_dir)
        compose.own(self.settings.feast_data_dir)
        self._up(REDIS)
        wait_ready(self.settings, REDIS, redis_ready(self.settings), self._exited(REDIS),
                   report)

    def prepare(self) -> dict[str, float]:
        yaml_file = IMAGE_REPO / self.settings.store_yaml().name
        try:
            output = compose.compose(self.settings, "run", "--rm", "--no-deps", "-T",
                                     FEATURE_SERVER, "python",
                                     *job_arguments("prepare", IMAGE_REPO, yaml_file),
                                     optional=True)
        except compose.ComposeError as error:
            raise FeastJobError(f"feast prepare failed in the feast image: "
                                f"{last_lines(error.detail)}") from None
        return job_report(output)

    def start_server(self, report: Report) -> None:
        self._up(FEATURE_SERVER)

        def ready() -> str:
            # As `invoke status` judges it: the probe, and both containers' own checks.
            server = self.server_status()
            return "" if server.healthy else server.detail

        wait_ready(self.settings, FEATURE_SERVER, ready, self._exited(FEATURE_SERVER), report)

    def stop(self, program: str) -> None:
        if program in self.running():
            compose.compose(self.settings, "stop", program, optional=True)

    def server_status(self) -> ComponentStatus:
        return compose.part_status(self.settings,
                                   compose.optional_part(feature_server(self.settings)))

    def server_log(self) -> tuple[str, str]:
        return "`invoke logs feast --profile compose`", compose.logs(self.settings, "feast", 20)

    def _up(self, service: str) -> None:
        compose.compose(self.settings, "up", "--detach", "--no-deps", service, optional=True)

    def _exited(self, service: str) -> Exited:
        def exited() -> tuple[str, str] | None:
            if compose.service_state(self.settings, service) not in _DEAD:
                return None
            return self.server_log()

        return exited
