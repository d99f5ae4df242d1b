"""Headless Chromium for the console's browser tests (DESIGN.md section 12),
driven by selenium through the system's chromedriver. Nothing is downloaded:
without a browser on the machine the tests are skipped, except under CI,
where a missing browser fails the run."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVERS = ("chromedriver",)
# A closed network and a throwaway profile: nothing phones home, nothing is kept.
ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1280,1000")


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def find_browser() -> tuple[str, str] | None:
    """(browser, chromedriver) from PATH (CHROMIUM and CHROMEDRIVER override), or None."""
    browser = os.environ.get("CHROMIUM") or next((p for n in BROWSERS if (p := shutil.which(n))), None)
    driver = os.environ.get("CHROMEDRIVER") or next((p for n in DRIVERS if (p := shutil.which(n))), None)
    return (browser, driver) if browser and driver else None


def chromium(profile: Path) -> Iterator[Any]:
    found = find_browser()
    if found is None:
        reason = "no Chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)"
        if on_ci():
            pytest.fail(f"CI: {reason}; .ci/run installs them before make test")
        pytest.skip(reason)
    # Never let selenium look for (or download) a driver of its own.
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in (*ARGS, f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=found[1]))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def until[T](check: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll `check` until it answers something truthy (exceptions count as
    not yet), or fail after `timeout` seconds saying what was awaited."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - a page still rendering raises; retried until the deadline
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last!r})" if last else ""))
        time.sleep(0.1)


def screenshot(driver: Any, name: str) -> None:
    """With CONSOLE_SCREENSHOTS set (a folder), keep a picture of the page
    (the README's pictures are taken this way)."""
    folder = os.environ.get("CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))
