"""UsageClient.report_many against the local stack: events buffered and sent
100 to a request (POST /v1/usage/batch), flushed by size, by age, on close
and at exit, and never dropped silently: what cannot be sent stays buffered
and is raised (UsageBatchError, with the events), or written out at exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from billing_usage_client import UsageBatchError
from devstack.dynamodb import free_port
from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.test_usage_client import FlakyProxy, assert_signed, client
from tests.integration.usage_helpers import get_usage, new_customer, uid

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def proxy(stack: LocalStack) -> Iterator[FlakyProxy]:
    flaky = FlakyProxy(stack.url, [])
    try:
        yield flaky
    finally:
        flaky.close()


def batches(proxy: FlakyProxy) -> list[list[str]]:
    """The identifiers of each batch request that reached the proxy."""
    return [[e["identifier"] for e in json.loads(r.body)["events"]] for r in proxy.recorded
            if r.method == "POST" and r.path == "/v1/usage/batch"]


def test_events_go_out_a_batch_at_a_time_when_the_buffer_is_full_and_on_close(api: Client,
                                                                              proxy: FlakyProxy) -> None:
    customer = new_customer(api)
    usage = client(proxy.url)
    with usage.report_many(max_events=3, max_age=60) as buffer:
        identifiers = [buffer.add("api_requests", n, customer_id=customer["id"], identifier=uid("many"))
                       for n in range(7)]
        assert buffer.pending == 1  # two full batches went out as they filled
        assert batches(proxy) == [identifiers[:3], identifiers[3:6]]
    assert batches(proxy)[-1] == identifiers[6:]
    for request in proxy.recorded:
        assert_signed(request, proxy.url)
    assert [get_usage(api, i)["value"] for i in identifiers] == list(range(7))


def test_an_old_enough_buffer_is_sent_by_itself(api: Client, proxy: FlakyProxy) -> None:
    customer = new_customer(api)
    buffer = client(proxy.url).report_many(max_events=100, max_age=0.2)
    try:
        first = buffer.add("api_requests", 1, customer_id=customer["id"])
        second = buffer.add("api_requests", 2, customer_id=customer["id"])
        deadline = time.monotonic() + 10
        while buffer.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert batches(proxy) == [[first, second]]
        results = buffer.results()
        assert [(r["identifier"], r["status"]) for r in results] == [(first, 202), (second, 202)]
    finally:
        assert buffer.close() == []


def test_a_refused_event_is_answered_not_raised(api: Client, proxy: FlakyProxy) -> None:
    customer = new_customer(api)
    with client(proxy.url).report_many() as buffer:
        good = buffer.add("api_requests", 1, customer_id=customer["id"])
        missing = buffer.add("api_requests", 1, customer_id="cust_nobody")
        results = {r["identifier"]: r for r in buffer.flush()}
    assert results[good]["status"] == 202
    assert (results[missing]["status"], results[missing]["error"]["type"]) == (404, "not_found")


def test_what_cannot_be_sent_stays_buffered_and_is_raised_until_it_goes(api: Client, proxy: FlakyProxy) -> None:
    customer = new_customer(api)
    proxy.script = ["503", "503", "503"]
    buffer = client(proxy.url, max_retries=2).report_many()
    identifiers = [buffer.add("api_requests", n, customer_id=customer["id"]) for n in range(3)]
    with pytest.raises(UsageBatchError) as raised:
        buffer.flush()
    assert [e["identifier"] for e in raised.value.unsent] == identifiers
    assert buffer.pending == 3  # not dropped
    assert api.get(f"/v1/usage/{identifiers[0]}").status_code == 404
    # The service is back: the next flush sends them, under the same identifiers.
    assert [r["status"] for r in buffer.flush()] == [202, 202, 202]
    assert buffer.pending == 0 and buffer.close() == []
    assert [get_usage(api, i)["value"] for i in identifiers] == [0, 1, 2]


def test_a_background_flush_that_failed_is_raised_by_the_next_add(api: Client, stack: LocalStack) -> None:
    customer = new_customer(api)
    buffer = client(f"http://127.0.0.1:{free_port()}", max_retries=0).report_many(max_age=0.1)
    first = buffer.add("api_requests", 1, customer_id=customer["id"])
    time.sleep(1.0)
    with pytest.raises(UsageBatchError) as raised:
        buffer.add("api_requests", 2, customer_id=customer["id"])
    assert [e["identifier"] for e in raised.value.unsent] == [first]
    assert buffer.pending == 1  # the first is still held; the second was not taken
    with pytest.raises(UsageBatchError) as at_close:
        buffer.close()
    assert [e["identifier"] for e in at_close.value.unsent] == [first]  # handed back, not lost


EXIT_SCRIPT = """
import sys
from botocore.credentials import Credentials
from billing_usage_client import UsageClient
client = UsageClient(sys.argv[1], "eu-west-1", credentials=Credentials("AKID", "secret"), max_retries=0,
                     backoff_base=0.01, backoff_cap=0.02)
buffer = client.report_many(max_age=3600)
print(buffer.add("api_requests", 4, customer_id=sys.argv[2]))
"""


def _exit_with_a_full_buffer(base_url: str, customer_id: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "clients/usage_client")}
    return subprocess.run([sys.executable, "-c", EXIT_SCRIPT, base_url, customer_id],  # noqa: S603
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_what_is_buffered_at_exit_is_sent(api: Client, stack: LocalStack) -> None:
    customer = new_customer(api)
    out = _exit_with_a_full_buffer(stack.url, customer["id"])
    assert out.returncode == 0, out.stderr
    identifier = out.stdout.strip()
    assert get_usage(api, identifier)["value"] == 4


def test_what_cannot_be_sent_at_exit_is_written_out_not_lost(stack: LocalStack) -> None:
    out = _exit_with_a_full_buffer(f"http://127.0.0.1:{free_port()}", "cust_x")
    identifier = out.stdout.strip()
    lines = [line for line in out.stderr.splitlines() if line.startswith("billing_usage_client: unsent")]
    assert len(lines) == 1, out.stderr
    event: dict[str, Any] = json.loads(lines[0].split("event ", 1)[1])
    assert event == {"event_name": "api_requests", "value": 4, "customer_id": "cust_x", "identifier": identifier}
    assert "UsageBatchError" in out.stderr
