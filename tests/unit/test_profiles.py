"""The registry of profiles: one implementation per profile name the settings accept, and no
module deciding by a profile's name instead of asking it."""

from __future__ import annotations

import re
from typing import get_args

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from onecommit.platform import profiles
from onecommit.settings import PROFILE_DEFAULTS, PROJECT_ROOT, Profile, Settings
from onecommit.tasks import dev

NAME_CHECK = re.compile(r"profile\s*(==|!=)|==\s*settings\.profile")


def test_every_profile_the_settings_accept_is_implemented() -> None:
    assert set(profiles.PROFILES) == set(get_args(Profile)) == set(PROFILE_DEFAULTS)
    for name, profile in profiles.PROFILES.items():
        assert profiles.of(Settings(profile=name)) is profile


def test_no_module_compares_a_profile_name() -> None:
    found = [f"{path.relative_to(PROJECT_ROOT)}:{number}"
             for path in sorted((PROJECT_ROOT / "onecommit").rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if NAME_CHECK.search(line)]
    assert found == []


def test_the_loop_is_refused_where_it_does_not_run() -> None:
    with pytest.raises(Exit) as refused:
        dev.demo(Context(), profile="kind")
    assert refused.value.code == 2
    assert "--profile local" in str(refused.value.message)
