"""Fixtures for the processor tests: Stripe's object shapes, a settable clock,
a Fake, and the same Fake served over HTTP (as the local stack does)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from billing.processor.base import Processor
from devstack.fake_stripe import FakeProcessor, FakeProcessorServer, RemoteFakeProcessor

# CI checks out shared/ beside the repository.
FIXTURES_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "stripe-fixtures" / "objects.json"


def load_fixtures() -> dict[str, Any]:
    return json.loads(FIXTURES_PATH.read_text())


@pytest.fixture(scope="session")
def _fixtures() -> dict[str, Any]:
    return load_fixtures()


@pytest.fixture
def fixtures(_fixtures: dict[str, Any]) -> dict[str, Any]:
    """A fresh copy per test: tests edit fixture objects freely."""
    return copy.deepcopy(_fixtures)


class Clock:
    """A clock tests move by hand (the Fake's session expiry, meter windows)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = float(int(time.time())) if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> FakeProcessor:
    return FakeProcessor(clock=clock)


@pytest.fixture
def fake_server(fake: FakeProcessor) -> Iterator[FakeProcessorServer]:
    server = FakeProcessorServer(fake).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def remote(fake_server: FakeProcessorServer) -> RemoteFakeProcessor:
    return RemoteFakeProcessor(fake_server.url)


@pytest.fixture(params=["fake", "remote"])
def processor(request: pytest.FixtureRequest, fake: FakeProcessor) -> Processor:
    """The Fake in process and through its RPC hop: both must behave the same."""
    if request.param == "fake":
        return fake
    return request.getfixturevalue("remote")
