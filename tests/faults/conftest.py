"""The fault suite runs on the session stack with embedded moto (its DynamoDB
faults need moto's fault injector), once: it is not under tests/integration,
which `make test-dynamodb-local` re-runs against DynamoDB Local."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Client


@pytest.fixture(autouse=True)
def no_leftover_dynamodb_faults(api: Client) -> Iterator[None]:
    """A scenario that fails half-way must not leave throttles for the next one."""
    yield
    api.delete("/_local/dynamodb/faults")
