"""The browser tests' rule (tests/integration/browser.py): skipped, saying
why, on a machine without Chromium; a failure under CI, where .ci/run
installs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration import browser


def no_browser(monkeypatch: pytest.MonkeyPatch, ci: str | None) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.delenv("CHROMEDRIVER", raising=False)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)


def test_without_a_browser_the_tests_are_skipped_and_say_why(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    no_browser(monkeypatch, None)
    assert browser.find_browser() is None
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium chromium-driver"):
        next(browser.chromium(tmp_path))


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_missing_browser_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str) -> None:
    no_browser(monkeypatch, ci)
    with pytest.raises(pytest.fail.Exception, match="CI: no Chromium"):
        next(browser.chromium(tmp_path))
