"""`make console STACK=<name>` (devstack/console.py): the console's files
served locally and each /v1/ call forwarded to the stack's API, signed with
SigV4 for execute-api. The "API" here is a local HTTP stub that checks the
signature as API Gateway would (recomputed with the same key): no AWS."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from devstack.console import ConsoleServer, Upstream, api_url_from_stack, region_of

KEY = Credentials("AKIDEXAMPLECONSOLE", "console-secret-key-for-tests", "session-token-xyz")
REGION = "eu-west-1"


class StubApi:
    """Answers like the deployed API: 403 unless the request carries a valid
    SigV4 signature for execute-api in REGION by KEY; records what it got."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.answer: tuple[int, dict[str, Any]] = (200, {"data": [], "next_cursor": None})
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers.items())
                valid = stub.signature_is_valid(self.command, self.path, headers, body)
                stub.seen.append({"method": self.command, "path": self.path, "headers": headers, "body": body,
                                  "valid": valid})
                status, payload = stub.answer if valid else (403, {"message": "The request signature we calculated "
                                                                              "does not match"})
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("ETag", '"3"')
                self.send_header("Set-Cookie", "stub=1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/Prod"

    def signature_is_valid(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bool:
        authorization = headers.get("Authorization", "")
        if not authorization.startswith("AWS4-HMAC-SHA256 "):
            return False
        parts = dict(p.strip().split("=", 1) for p in authorization[len("AWS4-HMAC-SHA256 "):].split(","))
        access_key, date, region, service, terminator = parts["Credential"].split("/")
        if (access_key, region, service, terminator) != (KEY.access_key, REGION, "execute-api", "aws4_request"):
            return False
        signed = parts["SignedHeaders"].split(";")
        lowered = {k.lower(): v for k, v in headers.items()}
        if "host" not in signed or "x-amz-date" not in signed or not lowered["x-amz-date"].startswith(date):
            return False
        request = AWSRequest(method=method, url=f"http://{lowered['host']}{path}", data=body or None,
                             headers={h: lowered[h] for h in signed})
        request.context["timestamp"] = lowered["x-amz-date"]
        auth = SigV4Auth(KEY, "execute-api", REGION)
        expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        return bool(parts["Signature"] == expected and lowered.get("x-amz-security-token") == KEY.token)


@pytest.fixture
def stub() -> Iterator[StubApi]:
    api = StubApi()
    thread = threading.Thread(target=api.httpd.serve_forever, daemon=True)
    thread.start()
    yield api
    api.httpd.shutdown()
    api.httpd.server_close()


@pytest.fixture
def console(stub: StubApi) -> Iterator[ConsoleServer]:
    server = ConsoleServer(Upstream(stub.url, REGION, lambda: KEY), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_a_read_is_forwarded_signed_for_execute_api(console: ConsoleServer, stub: StubApi) -> None:
    resp = requests.get(f"{console.url}/v1/customers?email=ada%40example.com&limit=20", timeout=10,
                        headers={"Cookie": "session=browser"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"data": [], "next_cursor": None}
    assert resp.headers["ETag"] == '"3"' and "Set-Cookie" not in resp.headers
    (seen,) = stub.seen
    assert seen["valid"], seen["headers"].get("Authorization")
    assert seen["path"] == "/Prod/v1/customers?email=ada%40example.com&limit=20"
    assert "Cookie" not in seen["headers"]  # the browser's own headers stay on the machine


def test_a_write_is_signed_with_its_body_and_idempotency_key(console: ConsoleServer, stub: StubApi) -> None:
    stub.answer = (202, {"id": "evt_1", "status": "received", "replays": 1})
    resp = requests.post(f"{console.url}/v1/webhook-events/evt_1/replay", timeout=10, json={"apply": True},
                         headers={"Idempotency-Key": "console-k1", "Origin": console.url})
    assert resp.status_code == 202 and resp.json()["replays"] == 1
    (seen,) = stub.seen
    assert seen["valid"] and seen["method"] == "POST" and json.loads(seen["body"]) == {"apply": True}
    assert seen["headers"]["Idempotency-Key"] == "console-k1"


def test_the_apis_refusal_comes_back_as_it_was(console: ConsoleServer, stub: StubApi) -> None:
    # A read-only role's write: API Gateway's 403, passed through unchanged.
    stub.answer = (403, {"message": "User: arn:aws:sts::1:assumed-role/ReadOnly/x is not authorized"})
    resp = requests.post(f"{console.url}/v1/usage/u-1/retry", timeout=10, headers={"Idempotency-Key": "k"})
    assert resp.status_code == 403
    assert resp.json() == {"message": "User: arn:aws:sts::1:assumed-role/ReadOnly/x is not authorized"}


def test_a_wrong_key_is_what_the_stub_refuses(stub: StubApi) -> None:
    # The stub's check can fail: the same call signed by another key is refused.
    other = ConsoleServer(Upstream(stub.url, REGION, lambda: Credentials("AKIDEXAMPLECONSOLE", "wrong")), port=0)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        assert requests.get(f"{other.url}/v1/health", timeout=10).status_code == 403
    finally:
        other.shutdown()
    assert [s["valid"] for s in stub.seen] == [False]


def test_other_pages_and_hosts_cannot_use_the_operators_identity(console: ConsoleServer, stub: StubApi) -> None:
    port = urlsplit(console.url).port
    foreign = requests.post(f"{console.url}/v1/usage/u-1/retry", timeout=10, headers={"Origin": "https://evil.example"})
    rebound = requests.get(f"{console.url}/v1/customers", timeout=10, headers={"Host": f"evil.example:{port}"})
    assert (foreign.status_code, rebound.status_code) == (403, 403)
    assert foreign.json()["error"]["type"] == "forbidden"
    assert requests.get(f"{console.url}/_local/fake-stripe/meter-events", timeout=10).status_code == 404
    assert stub.seen == []


def test_the_console_files_are_served_locally(console: ConsoleServer, stub: StubApi) -> None:
    page = requests.get(f"{console.url}/", timeout=10)
    assert page.status_code == 200 and "Billing console" in page.text and page.url.endswith("/console/")
    assert requests.get(f"{console.url}/console/js/api.js", timeout=10).headers["Content-Type"].startswith(
        "text/javascript")
    assert requests.get(f"{console.url}/console/../Makefile", timeout=10).status_code == 404
    assert stub.seen == []


def test_no_credentials_is_a_clear_401(stub: StubApi) -> None:
    server = ConsoleServer(Upstream(stub.url, REGION, lambda: None), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        resp = requests.get(f"{server.url}/v1/health", timeout=10)
    finally:
        server.shutdown()
    assert resp.status_code == 401 and "aws sso login" in resp.json()["error"]["message"]


class FakeCloudFormation:
    def __init__(self, outputs: list[dict[str, str]]) -> None:
        self.outputs = outputs

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        return {"Stacks": [{"StackName": StackName, "Outputs": self.outputs}]}


def test_the_api_url_and_region_come_from_the_stack() -> None:
    url = "https://a1b2c3.execute-api.eu-central-1.amazonaws.com/Prod"
    assert api_url_from_stack(FakeCloudFormation([{"OutputKey": "WebhookUrl", "OutputValue": url + "/v1/x"},
                                                  {"OutputKey": "ApiUrl", "OutputValue": url + "/"}]), "b") == url
    assert region_of(url, None) == "eu-central-1"
    with pytest.raises(ValueError, match="no ApiUrl"):
        api_url_from_stack(FakeCloudFormation([]), "b")
    with pytest.raises(ValueError, match="region"):
        region_of("http://127.0.0.1:1/Prod", None)
