"""The in-process tier's domain harness: the template's tables on moto's
in-process mock (no server, no local stack), the environment the API
function gets from template.yaml, and the Fake processor injected as the
local stack injects it. Domain functions are called directly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from billing.core import settings
from billing.data import tables
from billing.processor import set_processor
from devstack.dynamodb import create_table_request, patch_moto
from devstack.fake_stripe import FakeProcessor
from devstack.template import REGION, Stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_metrics_carried_over() -> Iterator[None]:
    """Domain code adds metrics that only a handler's decorator flushes:
    called directly, they would pile up across tests until Powertools
    flushes them on its own (at 100) outside any function's environment."""
    from billing.core.observability import metrics

    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every table of template.yaml, empty, in moto's in-process mock, and
    the API function's environment pointing at them."""
    stack = Stack(ROOT / "template.yaml", stack_name="billing-unit")
    spec = next(f for f in stack.functions({}) if f.logical_id == "ApiFunction")
    for name in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**spec.environment, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
                        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    settings.load.cache_clear()
    # moto's DynamoDB is not thread-safe; the local stack serialises its
    # requests, and so must a test that writes from several threads.
    patch_moto()
    with mock_aws():
        # The shared transaction connection is rebuilt inside the mock.
        tables._connection = None
        ddb = boto3.client("dynamodb", region_name=REGION)
        for table in stack.tables():
            ddb.create_table(**create_table_request(table))
        yield
        tables._connection = None
    settings.load.cache_clear()


@pytest.fixture
def fake(aws: None) -> Iterator[FakeProcessor]:
    """The Fake processor, installed as the local stack installs it."""
    processor = FakeProcessor()
    set_processor(processor)
    yield processor
    set_processor(None)


@pytest.fixture
def measured(fake: FakeProcessor) -> Iterator[dict[str, Any]]:
    """The metrics emitted during the test (Powertools' metric set), cleared before and after."""
    from billing.core.observability import metrics

    metrics.clear_metrics()
    yield metrics.metric_set
    metrics.clear_metrics()
