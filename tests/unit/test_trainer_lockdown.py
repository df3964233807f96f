"""The compose trainer, where every commit's training runs, stays locked down: the lint passes
the project's compose file and names each lock a changed trainer loses."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from onecommit.lint.compose import COMPOSE_FILE, check_compose
from onecommit.platform import compose
from onecommit.settings import PROJECT_ROOT, Settings


def _tree(tmp_path: Path, **trainer: object) -> Path:
    """A copy of the compose file and the Dockerfiles, its trainer changed."""
    shutil.copytree(PROJECT_ROOT / "docker", tmp_path / "docker")
    document = yaml.safe_load((PROJECT_ROOT / COMPOSE_FILE).read_text())
    document["services"]["trainer"].update(trainer)
    (tmp_path / COMPOSE_FILE).parent.mkdir()
    (tmp_path / COMPOSE_FILE).write_text(yaml.safe_dump(document))
    return tmp_path


def test_the_project_trainer_is_locked_down() -> None:
    assert check_compose(PROJECT_ROOT) == []
    service = yaml.safe_load((PROJECT_ROOT / COMPOSE_FILE).read_text())["services"]["trainer"]
    assert service["volumes"] == [f"training:{compose.TRAINING_SPOOL}"]
    assert set(service["environment"]) == {"PYTHONPATH", "HOME"}


def test_a_trainer_with_network_state_or_settings_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path, network_mode="host", read_only=False,
                 volumes=["state:${ONECOMMIT_STATE_DIR:?}"], env_file=["x.env"])
    assert [finding.problem for finding in check_compose(root)] == [
        "training must reach no service: network_mode: none",
        "a commit's code must not change the image: read_only",
        "mounts the state dir: training must see the training spool only",
        "reads the platform's settings (env_file): give it PYTHONPATH and HOME only"]


def test_the_scheduler_hands_training_to_the_trainer(tmp_path: Path) -> None:
    settings = Settings(profile="compose", state_dir=tmp_path)
    assert compose.onecommit_environment(settings)["ONECOMMIT_TRAINING_SPOOL"] == (
        compose.TRAINING_SPOOL)
    scheduler = yaml.safe_load(compose.COMPOSE_FILE.read_text())["services"]["airflow-scheduler"]
    assert f"training:{compose.TRAINING_SPOOL}" in scheduler["volumes"]
