"""Shared fixtures: the local stack (started once per test session, on a free
port) and a small HTTP client for it."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.stack import LocalStack, Settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = json.loads((ROOT.parent / "shared" / "stripe-fixtures" / "objects.json").read_text()) \
    if (ROOT.parent / "shared" / "stripe-fixtures" / "objects.json").exists() else {}


class Client:
    """requests against the stack's base URL, JSON by default."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def request(self, method: str, path: str, json_body: Any = None, **kwargs: Any) -> requests.Response:
        if json_body is not None:
            kwargs["data"] = json.dumps(json_body)
            kwargs.setdefault("headers", {})["Content-Type"] = "application/json"
        return self.session.request(method, self.base_url + path, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, json_body, **kwargs)

    def put(self, path: str, json_body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, json_body, **kwargs)

    def patch(self, path: str, json_body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, json_body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)


# The stack accepts two webhook signing secrets, as during a rotation.
WEBHOOK_SECRETS = ("whsec_local_dev", "whsec_local_rotated")


# What must never reach a log: secrets by their Stripe prefixes, the Fake's
# card fingerprints, and the markers of a raw Stripe event or object body.
FORBIDDEN_IN_LOGS = ("whsec_", "sk_test_", "sk_live_", "rk_live_", '"pending_webhooks"', '"invoice_prefix"',
                     '"billing_details"')


def forbidden_log_fragments() -> list[str]:
    from devstack.fake_stripe import TEST_CARDS

    return [*FORBIDDEN_IN_LOGS, *(card.fingerprint for card in TEST_CARDS.values())]


def scan_function_log(path: Path) -> list[str]:
    """Lines of the functions' output that carry something forbidden."""
    fragments = forbidden_log_fragments()
    text = path.read_text(errors="replace") if path.exists() else ""
    return [line[:300] for line in text.splitlines() if any(f in line for f in fragments)]


# Modules whose tests start processes of the local stack themselves (a stack,
# a runtime, a poller) rather than through the `stack` fixture.
LOCAL_STACK_MODULES = frozenset({
    "tests/devstack/test_schedules.py", "tests/devstack/test_startup.py", "tests/devstack/test_streams.py",
    "tests/devstack/test_parameter_overrides.py",
    "tests/faults/test_stripe_faults.py", "tests/integration/test_meter_reporter_v2.py",
    "tests/processor/test_crash_fault.py",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Two tiers: `integration` (anything that runs the local stack: the
    `stack` fixture, or a module that starts its own processes) and `unit`
    (in-process, `make unit`)."""
    for item in items:
        path = Path(str(item.fspath)).resolve().relative_to(ROOT).as_posix()
        local = ("stack" in getattr(item, "fixturenames", ()) or path in LOCAL_STACK_MODULES
                 or item.get_closest_marker("integration") is not None)
        item.add_marker(pytest.mark.integration if local else pytest.mark.unit)


@pytest.fixture(scope="session")
def function_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where every function's output goes during the session (what CloudWatch
    Logs would hold); the stack fixture checks it once the stack has stopped."""
    return tmp_path_factory.mktemp("logs") / "functions.log"


def stack_settings(function_log: Path, base: Settings | None = None, **fields: Any) -> Settings:
    """A test stack's settings: a free port, the session's DynamoDB (a real
    DynamoDB Local with DYNAMODB_ENDPOINT_URL, else its own embedded moto),
    webhook secrets and function log (scanned for leaks at the session's
    end), then `fields` over them. A module's own stack names itself: a
    process hosts several stacks, and on a shared DynamoDB Local their
    tables must not share names."""
    return replace(base or Settings(), port=0, dynamodb_endpoint=os.environ.get("DYNAMODB_ENDPOINT_URL") or None,
                   webhook_secrets=",".join(WEBHOOK_SECRETS), function_log=function_log, **fields)


def running(settings: Settings) -> Iterator[LocalStack]:
    """A stack for as long as a fixture holds it (yield from it)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    local = LocalStack(settings).start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def stack(function_log: Path) -> Iterator[LocalStack]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # One stack per pytest-xdist worker, named after it.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    local = LocalStack(stack_settings(function_log, concurrency=4,
                                     stack_name=f"billing-local-{worker}" if worker else "billing-local")).start()
    try:
        yield local
    finally:
        invocations = sum(r.invocations for r in local.runtimes.values())
        local.stop()
    if invocations:
        assert function_log.exists() and function_log.stat().st_size > 0, "function output was not captured"
    leaks = scan_function_log(function_log)
    assert not leaks, f"function logs ({function_log}) carry secrets or raw payloads:\n" + "\n".join(leaks[:20])


@pytest.fixture(scope="session")
def api(stack: LocalStack) -> Client:
    return Client(stack.url)
