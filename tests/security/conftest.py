"""Every security test is watched by a log guard: what the functions wrote to
the session's log file (what CloudWatch Logs would hold) while the test ran
must carry no forbidden fragment (secrets by prefix, card fingerprints, raw
Stripe payload markers) and none of the secrets the test registered. The
session fixture scans the whole file once more at the end."""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import LocalStack
from tests.conftest import forbidden_log_fragments


class LogWindow:
    """The function log from the start of a test to now."""

    def __init__(self, path: Path, stack: LocalStack) -> None:
        self.path, self.stack = path, stack
        self.start = path.stat().st_size if path.exists() else 0
        self.secrets: list[str] = []

    def watch(self, *values: str) -> None:
        """Values that must never appear in the log (beyond the standard fragments)."""
        self.secrets.extend(values)

    def text(self) -> str:
        # Stream work the test caused logs after the response: let it finish.
        assert self.stack.drain(timeout=60)
        if not self.path.exists():
            return ""
        with self.path.open("rb") as log:
            log.seek(self.start)
            return log.read().decode("utf-8", "replace")

    def leaks(self) -> list[str]:
        fragments = [*forbidden_log_fragments(), *self.secrets]
        return [line[:300] for line in self.text().splitlines() if any(f in line for f in fragments)]


@pytest.fixture(autouse=True)
def log_window(function_log: Path, stack: LocalStack) -> Iterator[LogWindow]:
    window = LogWindow(function_log, stack)
    yield window
    leaks = window.leaks()
    assert not leaks, "the functions logged secrets or raw payloads during this test:\n" + "\n".join(leaks[:10])


def fake_secret(prefix: str) -> str:
    """Shaped like a real Stripe secret (sk_test_..., whsec_...), random each run."""
    return prefix + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
