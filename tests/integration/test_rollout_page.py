"""The gateway's rollout page (`/ui/`) on the real platform: in headless Chromium during a
canary, and its data and record endpoints."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from onecommit.browser import chromium, shows
from onecommit.lint.tools import ToolError, ensure_chromium
from onecommit.platform.components import gateway_admin_token
from onecommit.settings import Settings
from tests.conftest import SERVED_MODEL, Served, serve_two_versions, settled

pytestmark = pytest.mark.platform


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """Debian's headless Chromium. In CI a missing browser is installed, never a reason to
    skip."""
    try:
        ensure_chromium()
    except ToolError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(error))
    with chromium() as chrome:
        yield chrome


@pytest.fixture(scope="module")
def served(platform: Settings) -> Served:
    """The session's two versions, published and pinned again: the loop's tests, run before
    this module, promote past them and unload them."""
    return serve_two_versions(platform)


@pytest.fixture
def canary(served: Served) -> Iterator[float]:
    """A 30 % canary in force on every worker; the default policy again afterwards."""
    weight = 0.3
    response = httpx.put(f"{served.url}/models/{SERVED_MODEL}/traffic", headers=served.admin,
                         json={"strategy": "canary", "challenger_weight": weight})
    assert response.status_code == 200, response.text
    settled(served.settings, response.json()["revision"])
    yield weight
    httpx.put(f"{served.url}/models/{SERVED_MODEL}/traffic", json={"strategy": "canary"},
              headers=served.admin)


def test_the_page_shows_the_versions_and_the_canary_weight(
        served: Served, canary: float, browser: webdriver.Chrome, tmp_path: Path) -> None:
    browser.get(f"{served.url}/ui/")
    weight = f"challenger {canary:.1%}"
    try:
        shows(browser, f"#policy-{SERVED_MODEL}", weight, timeout_s=20)
    finally:
        shot = tmp_path / "rollout-page.png"
        browser.save_screenshot(str(shot))
        print(f"\nscreenshot of the rollout page: {shot}")
    versions = browser.find_element(By.ID, f"versions-{SERVED_MODEL}").text
    assert f"champion v{served.champion}" in versions
    assert f"challenger v{served.challenger}" in versions
    rows = browser.find_element(By.ID, f"variants-{SERVED_MODEL}").text
    assert f"challenger v{served.challenger} {canary:.1%}" in rows
    assert "gateway not answering" not in browser.find_element(By.ID, "stale").text


def test_the_page_and_its_data_are_open_and_hold_no_token(served: Served, canary: float) -> None:
    token = gateway_admin_token(served.settings)
    page = httpx.get(f"{served.url}/ui/")
    data = httpx.get(f"{served.url}/ui/rollout.json")
    assert page.status_code == data.status_code == 200
    assert token not in page.text
    assert token not in data.text
    shown = data.json()["models"][SERVED_MODEL]
    assert shown["versions"]["champion"] == served.champion
    assert shown["policy"]["weights"]["challenger"] == pytest.approx(canary)
    latest = shown["timeline"][-1]
    assert (latest["kind"], latest["weight"]) == ("policy", pytest.approx(canary))


def test_recording_a_rollout_event_needs_the_token_and_a_valid_body(served: Served) -> None:
    note = {"kind": "decision", "version": served.challenger, "detail": {}}
    events = f"{served.url}/models/{SERVED_MODEL}/rollout/events"
    refused = httpx.post(events, json=note)
    assert refused.status_code == 401
    assert "error" in refused.json()
    invalid = httpx.post(events, headers=served.admin, json={**note, "kind": "verdict"})
    assert invalid.status_code == 422
    assert invalid.json()["error"].startswith("body.kind")

