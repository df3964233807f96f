"""Headless Chromium for the rollout page: Debian's browser with its own chromedriver, both
paths given to Selenium, so its manager never downloads anything. The browser test drives it;
`invoke screenshot` takes the README's picture with it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from onecommit.errors import OnecommitError
from onecommit.lint.tools import ensure_chromium


class PageError(OnecommitError):
    """The page did not show what was waited for."""


@contextmanager
def chromium(width: int = 1100, height: int = 1000) -> Iterator[webdriver.Chrome]:
    """A headless Chromium (installed from Debian's packages when missing), quit on exit."""
    browser, driver = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(browser)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(str(driver)), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


def shows(chrome: webdriver.Chrome, selector: str, text: str, timeout_s: float) -> None:
    """Until the visible text of an element the CSS selector picks contains `text`
    (TimeoutException after timeout_s)."""
    WebDriverWait(chrome, timeout_s).until(
        lambda page: any(text in e.text for e in page.find_elements(By.CSS_SELECTOR, selector)))


def screenshot(url: str, path: Path, until: str, timeout_s: float) -> None:
    """The page at `url` once a model's verdict line shows `until`, as a PNG at `path`."""
    with chromium() as chrome:
        chrome.get(url)
        try:
            shows(chrome, ".verdict", until, timeout_s)
        except TimeoutException:
            shown = "; ".join(e.text for e in chrome.find_elements(By.CSS_SELECTOR, ".verdict"))
            raise PageError(f"{url} did not show {until!r} within {timeout_s:g} s (it shows "
                            f"{shown!r}): is a rollout running? See `invoke watch`") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        chrome.save_screenshot(str(path))
