"""What the compose profile writes from the settings: Prometheus' targets and rules, the
containers' environment, and the projects' names."""

from __future__ import annotations

from pathlib import Path

import yaml

from onecommit.platform import compose
from onecommit.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings(profile="compose", state_dir=tmp_path, gateway_port=9100,
                    triton_metrics_port=9102,
                    alertmanager_port=9393, postgres_port=5544)


def test_prometheus_scrapes_the_gateway_and_triton(tmp_path: Path) -> None:
    config = compose.prometheus_config(_settings(tmp_path))
    targets = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert targets == {"gateway": ["127.0.0.1:9100"], "triton": ["127.0.0.1:9102"]}
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:9393"]


def test_rules_are_the_projects_with_alerts_held_briefly() -> None:
    original = yaml.safe_load(compose.RULES.read_text())
    rules = compose.compose_rules()
    pairs = [(a, b) for g, h in zip(original["groups"], rules["groups"], strict=True)
             for a, b in zip(g["rules"], h["rules"], strict=True)]
    assert pairs
    assert all(a["expr"] == b["expr"] for a, b in pairs)
    assert {b["for"] for a, b in pairs if "alert" in a} == {compose.ALERT_FOR}
    assert all("for" not in b for a, b in pairs if "record" in a)


def test_containers_use_postgres_and_the_images_paths(tmp_path: Path) -> None:
    environment = compose.onecommit_environment(_settings(tmp_path))
    assert environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(
        "postgresql+psycopg2://airflow:")
    assert environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@127.0.0.1:5544/airflow")
    assert environment["ONECOMMIT_SERVING_DB_URL"].startswith("postgresql+psycopg://serving:")
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS" not in environment  # SQLite's only
    assert environment["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags"
    assert environment["ONECOMMIT_STATE_DIR"] == str(tmp_path)


def test_the_compose_profile_has_a_state_dir_of_its_own() -> None:
    local, contained = Settings(), Settings(profile="compose")
    assert contained.state_dir == local.state_dir / "compose"
    assert contained.envs_dir == local.envs_dir  # environments stay shared
    assert Settings(profile="compose", state_dir=Path("/srv/x")).state_dir == Path("/srv/x")


def test_one_project_per_state_dir(tmp_path: Path) -> None:
    one, other = _settings(tmp_path / "a"), _settings(tmp_path / "b")
    assert compose.project(one) != compose.project(other)
    assert compose.project(one) == compose.project(_settings(tmp_path / "a"))


def test_feature_server_runs_as_on_the_local_profile_with_redis(tmp_path: Path) -> None:
    from onecommit.features.settings import FEATURE_SERVER
    from onecommit.features.state import feature_settings
    from onecommit.platform.optional_layer import serve_arguments

    settings = feature_settings(_settings(tmp_path))
    assert settings.online_store() == "redis"
    variables = compose.compose_environment(settings)
    service = yaml.safe_load(compose.COMPOSE_FILE.read_text())["services"][FEATURE_SERVER]
    command = [_interpolate(word, variables) for word in service["command"]]
    yaml_at = command.index("--feature-store-yaml") + 1
    assert command[yaml_at] == settings.store_yaml().name
    assert command[yaml_at + 1:] == serve_arguments(settings)
    assert service["profiles"] == [compose.OPTIONAL]
    assert variables["ONECOMMIT_FEAST_DATA"] == str(settings.feast_data_dir)


def test_dag_tasks_find_feast_in_the_platform_image(tmp_path: Path) -> None:
    environment = compose.onecommit_environment(_settings(tmp_path))
    assert environment["ONECOMMIT_ENVS_PATH"] == compose.IMAGE_ENVS
    dockerfile = (compose.PROJECT_ROOT / "docker" / "platform.Dockerfile").read_text()
    assert f"COPY --from=feast {compose.IMAGE_ENVS}/feast {compose.IMAGE_ENVS}/feast" in dockerfile
    assert {"ONECOMMIT_FEAST_PORT", "ONECOMMIT_FEAST_REDIS_PORT"} <= environment.keys()


def _interpolate(word: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        word = word.replace(f"${{{name}:?}}", value)
    return word


def test_the_layer_on_compose_refuses_sqlite_and_a_stopped_platform_in_one_line(
        tmp_path: Path) -> None:
    import pytest

    from onecommit.features.settings import FeatureSettings
    from onecommit.platform.local import PlatformError
    from onecommit.platform.optional_containers import Containers

    base = _settings(tmp_path).model_dump(exclude_none=True)
    with pytest.raises(PlatformError, match="unset ONECOMMIT_FEAST_ONLINE_STORE"):
        Containers(FeatureSettings(**base, feast_online_store="sqlite")).check()
    # No compose project of this state dir runs (or no engine answers at all).
    with pytest.raises(PlatformError, match=r"gateway not created\): start it with `invoke up "
                                            r"--profile compose`"):
        Containers(FeatureSettings(**base)).check()
