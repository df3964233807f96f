from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from onecommit.settings import PROJECT_ROOT, Settings


def test_defaults_bind_loopback_and_keep_state_in_project() -> None:
    settings = Settings()
    assert settings.host == "127.0.0.1"
    assert settings.state_dir == PROJECT_ROOT / ".onecommit"
    assert len(set(settings.ports.values())) == len(settings.ports)


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ONECOMMIT_GATEWAY_PORT", "9123")
    monkeypatch.setenv("ONECOMMIT_STATE_DIR", str(tmp_path))
    settings = Settings()
    assert settings.gateway_port == 9123
    assert settings.envs_dir == tmp_path / "envs"


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValidationError, match="profile"):
        Settings(profile="docker-swarm")  # type: ignore[arg-type]


def test_invoke_reports_unknown_profile_in_one_line() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("invoke")), "up", "--profile", "swarm"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "profile" in lines[0]
    assert "'swarm'" in lines[0]
    assert "ONECOMMIT_PROFILE" in lines[0]
