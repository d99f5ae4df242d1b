"""billing_usage_client against the local stack: SigV4 signing, retries with
the same identifier, typed errors.

The local stack does not enforce IAM, so the signature is checked here the
way API Gateway would check it: recomputed from the request as it arrived.
A small recording proxy in front of the stack scripts the transient failures
(503, 429, a dropped connection, an answer lost after the write).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from billing_usage_client import (
    UsageClient,
    UsageConflict,
    UsageConnectionError,
    UsageNotFound,
    UsageServerError,
    UsageValidationError,
)
from devstack.dynamodb import free_port
from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.usage_helpers import get_usage, new_customer, uid

REGION = "eu-west-1"
CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-example")
SIGV4 = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]+)/(?P<day>\d{8})/(?P<region>[a-z0-9-]+)/"
                   r"execute-api/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})")


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FlakyProxy:
    """Forwards to `upstream`, recording every request. Each entry of
    `script` decides one request: "503" or "429" (answered here), "drop"
    (connection closed, no answer), "lose" (forwarded, then answered 502);
    with the script used up, requests are forwarded."""

    def __init__(self, upstream: str, script: list[str]) -> None:
        self.upstream = upstream
        self.script = list(script)
        self.recorded: list[Recorded] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy._lock:
                    proxy.recorded.append(Recorded(self.command, self.path, dict(self.headers.items()), body))
                    action = proxy.script.pop(0) if proxy.script else "forward"
                if action == "drop":
                    self.close_connection = True
                    return
                if action in ("503", "429"):
                    self._answer(int(action), json.dumps({"message": "Slow down"}).encode())
                    return
                upstream = requests.request(self.command, proxy.upstream + self.path, data=body,
                                            headers={"Content-Type": "application/json"}, timeout=30)
                if action == "lose":
                    self._answer(502, json.dumps({"message": "Internal server error"}).encode())
                    return
                self._answer(upstream.status_code, upstream.content)

            def _answer(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(stack: LocalStack) -> Iterator[FlakyProxy]:
    flaky = FlakyProxy(stack.url, [])
    try:
        yield flaky
    finally:
        flaky.close()


def client(base_url: str, **kwargs: Any) -> UsageClient:
    return UsageClient(base_url, REGION, credentials=CREDENTIALS, backoff_base=0.01, backoff_cap=0.05, **kwargs)


def assert_signed(request: Recorded, base_url: str) -> None:
    """Recompute the SigV4 signature from the request as it arrived (what API Gateway does)."""
    match = SIGV4.fullmatch(request.headers["Authorization"])
    assert match, request.headers["Authorization"]
    assert (match["key"], match["region"]) == ("AKIDEXAMPLE", REGION)
    assert request.headers["X-Amz-Date"].startswith(match["day"])
    assert request.headers["X-Amz-Security-Token"] == "session-token-example"
    signed = match["signed"].split(";")
    assert {"host", "x-amz-date", "x-amz-security-token"} <= set(signed)
    headers = {k: v for k, v in request.headers.items() if k.lower() in signed}
    rebuilt = AWSRequest(method=request.method, url=base_url + request.path, data=request.body, headers=headers)
    rebuilt.context["timestamp"] = request.headers["X-Amz-Date"]
    signer = SigV4Auth(CREDENTIALS.get_frozen_credentials(), "execute-api", REGION)
    string_to_sign = signer.string_to_sign(rebuilt, signer.canonical_request(rebuilt))
    assert signer.signature(string_to_sign, rebuilt) == match["sig"]


def usage_rows(api: Client, customer_id: str) -> list[dict[str, Any]]:
    return list(api.get("/v1/usage", params={"customer_id": customer_id, "limit": "100"}).json()["data"])


def test_report_is_sigv4_signed_and_retried_with_the_same_identifier(api: Client, proxy: FlakyProxy) -> None:
    customer = new_customer(api)
    proxy.script = ["503", "drop", "429"]
    row = client(proxy.url).report("api_requests", 5, customer_id=customer["id"], operation_id="job-1")
    assert (row["stripe_status"], row["value"], row["operation_id"]) == ("pending", 5, "job-1")
    assert re.fullmatch(r"usage-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", row["identifier"])
    assert len(proxy.recorded) == 4
    assert {r.path for r in proxy.recorded} == {f"/v1/usage/{row['identifier']}"}
    assert len({r.body for r in proxy.recorded}) == 1
    assert json.loads(proxy.recorded[0].body) == {"event_name": "api_requests", "value": 5,
                                                  "customer_id": customer["id"], "operation_id": "job-1"}
    for request in proxy.recorded:
        assert_signed(request, proxy.url)
    assert [r["identifier"] for r in usage_rows(api, customer["id"])] == [row["identifier"]]


def test_an_answer_lost_after_the_write_is_retried_into_the_stored_event(api: Client, proxy: FlakyProxy) -> None:
    customer = new_customer(api)
    proxy.script = ["lose"]
    identifier = uid("client")
    row = client(proxy.url).report("api_requests", 2, customer_id=customer["id"], identifier=identifier)
    assert len(proxy.recorded) == 2  # the first landed; its 502 made the client send it again
    stored = get_usage(api, identifier)
    # The reporter may have sent it since the replay answered: compare the event, not its delivery.
    delivery = {"stripe_status", "attempts", "reported_at", "updated_at"}
    assert {k: v for k, v in row.items() if k not in delivery} == {k: v for k, v in stored.items() if k not in delivery}
    assert len(usage_rows(api, customer["id"])) == 1  # written once: the resend was a replay (200)
    assert row["id"] == get_usage(api, identifier)["id"]


def test_transient_failures_past_the_retries_raise_a_server_error(api: Client, proxy: FlakyProxy) -> None:
    customer = new_customer(api)
    proxy.script = ["503", "503", "503"]
    with pytest.raises(UsageServerError) as raised:
        client(proxy.url, max_retries=2).report("api_requests", 1, customer_id=customer["id"])
    assert raised.value.status == 503
    assert len(proxy.recorded) == 3
    assert usage_rows(api, customer["id"]) == []


def test_no_server_at_all_is_a_connection_error(stack: LocalStack) -> None:
    with pytest.raises(UsageConnectionError) as raised:
        client(f"http://127.0.0.1:{free_port()}", max_retries=1).report("api_requests", 1, customer_id="cust_x")
    assert raised.value.status is None
    assert isinstance(raised.value, UsageServerError)  # "try again later", like a 5xx


def test_rejections_raise_typed_errors_without_retrying(stack: LocalStack, api: Client, proxy: FlakyProxy) -> None:
    customer = new_customer(api)
    usage = client(proxy.url)
    with pytest.raises(UsageValidationError) as invalid:
        usage.report("api_requests", 1, customer_id=customer["id"], timestamp=int(time.time()) - 40 * 24 * 3600)
    assert (invalid.value.status, invalid.value.error_type) == (422, "timestamp_out_of_window")
    with pytest.raises(UsageNotFound) as missing:
        usage.report("api_requests", 1, customer_id="cust_nobody")
    assert missing.value.error_type == "not_found"
    identifier = uid("client")
    usage.report("api_requests", 1, customer_id=customer["id"], identifier=identifier)
    with pytest.raises(UsageConflict) as conflict:
        usage.report("api_requests", 2, customer_id=customer["id"], identifier=identifier)
    assert (conflict.value.error_type, conflict.value.identifier) == ("identifier_conflict", identifier)
    assert len(proxy.recorded) == 4  # one request each: rejections are not retried
    with pytest.raises(ValueError, match="exactly one"):
        usage.report("api_requests", 1, customer_id=customer["id"], stripe_customer_id=customer["processor_id"])


def test_owner_and_datetime_forms_and_get(api: Client, proxy: FlakyProxy) -> None:
    customer = new_customer(api)
    usage = client(proxy.url)
    moment = datetime.fromtimestamp(int(time.time()) - 3600, UTC)
    row = usage.report("api_requests", 9, owner=(customer["owner_type"], customer["owner_id"]), timestamp=moment)
    assert row["customer_id"] == customer["id"]
    assert row["occurred_at"] == moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert usage.get(row["identifier"])["id"] == row["id"]
    assert_signed(proxy.recorded[-1], proxy.url)  # a GET, signed over an empty body
    with pytest.raises(ValueError, match="aware"):
        usage.report("api_requests", 1, customer_id=customer["id"], timestamp=datetime(2024, 1, 1))
