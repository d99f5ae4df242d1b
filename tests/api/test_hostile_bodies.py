"""Hostile bodies through the API function's resolver, in-process: every route
the template gives ApiFunction, with the event API Gateway (the local
gateway's builder) would send. A body that is not UTF-8, nests too deep or
holds a number Python will not convert is a 400 `bad_request` before any
route code runs: DynamoDB here is an endpoint nobody listens on, so a route
that ran would answer 5xx, not the 400 naming the body's fault.

tests/security/test_hostile_bodies.py sends the same bodies over HTTP to
the local stack and checks nothing was written."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from billing.api.app import app, openapi_json
from devstack.gateway import build_proxy_event
from devstack.template import ApiRoute, Stack
from tests.api.context import Context

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# The three bodies, and their kin.
HOSTILE: dict[str, tuple[bytes, str]] = {
    "array nested 100,000 deep": (b"[" * 100_000 + b"]" * 100_000, "is nested deeper than 32 levels"),
    "objects nested 33 deep": (b'{"a":' * 32 + b"{}" + b"}" * 32, "is nested deeper than 32 levels"),
    "a 5,000-digit value": (b'{"value": ' + b"5" * 5000 + b', "event_name": "api", "customer_id": "c"}',
                            "holds an integer longer than 4300 digits"),
    "latin-1, not UTF-8": ('{"name":"\xe9"}'.encode("latin-1"), "is not UTF-8"),
    "NaN": (b'{"value": NaN}', "holds NaN, which is not JSON"),
    "a float past its range": (b'{"value": 1e999}', "holds a number too large for a float"),
    "a lone surrogate": (b'{"name": "\\ud800"}', "holds a string that is not valid Unicode"),
}


@pytest.fixture(autouse=True)
def nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS that refuses every connection at once: a route that runs cannot write."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9")
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_MAX_ATTEMPTS": "1",
                        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)


def api_routes() -> list[ApiRoute]:
    stack = Stack(ROOT / "template.yaml", stack_name="hostile")
    return [r for f in stack.functions({}) if f.logical_id == "ApiFunction" for r in f.routes]


def concrete(path: str) -> tuple[str, dict[str, str]]:
    params = {name: f"{name}_1" for name in re.findall(r"\{(\w+)\+?\}", path)}
    return re.sub(r"\{(\w+)\+?\}", lambda m: params[m.group(1)], path), params


def call(route: ApiRoute, body: bytes, content_type: str | None = "application/json") -> dict[str, Any]:
    path, params = concrete(route.path)
    headers = {"Content-Type": [content_type]} if content_type else {}
    event = build_proxy_event(route, params, route.method, path, {}, headers, body, "127.0.0.1")
    return dict(app.resolve(event, Context()))  # type: ignore[arg-type]


ROUTES = api_routes()


def test_the_template_gives_the_api_function_its_routes() -> None:
    assert len(ROUTES) >= 25
    assert {("PATCH", "/v1/customers/{customer_id}"), ("PUT", "/v1/usage/{identifier}"),
            ("GET", "/v1/health")} <= {(r.method, r.path) for r in ROUTES}


@pytest.mark.parametrize("name", list(HOSTILE))
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_a_hostile_body_is_a_400_bad_request_on_every_route(route: ApiRoute, name: str) -> None:
    body, reason = HOSTILE[name]
    response = call(route, body)
    assert response["statusCode"] == 400, (name, response["body"][:300])
    error = json.loads(response["body"])["error"]
    assert error["type"] == "bad_request"
    assert error["message"].startswith("the request body ") and reason in error["message"], error
    assert len(response["body"]) < 512  # names the fault, never repeats the body


@pytest.mark.parametrize("route", [r for r in ROUTES if (r.method, r.path) in {
    ("PATCH", "/v1/customers/{customer_id}"), ("PUT", "/v1/usage/{identifier}"), ("GET", "/v1/health")}],
    ids=lambda r: f"{r.method} {r.path}")
def test_without_a_content_type_the_body_is_still_read_as_json(route: ApiRoute) -> None:
    for body, reason in HOSTILE.values():
        response = call(route, body, content_type=None)
        assert response["statusCode"] == 400
        assert reason in json.loads(response["body"])["error"]["message"]


def test_a_base64_body_that_is_not_base64_is_a_400() -> None:
    (route,) = [r for r in ROUTES if (r.method, r.path) == ("PUT", "/v1/usage/{identifier}")]
    path, params = concrete(route.path)
    event = build_proxy_event(route, params, "PUT", path, {}, {"Content-Type": ["application/json"]}, b"{}", "ip")
    event.update(body="not*base64!", isBase64Encoded=True)
    response = app.resolve(event, Context())  # type: ignore[arg-type]
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"] == {
        "type": "bad_request", "message": "the request body is not valid base64", "details": {}}


def test_malformed_json_keeps_its_contract_answer_on_body_routes_and_is_now_read_on_the_others() -> None:
    by_key = {(r.method, r.path): r for r in ROUTES}
    for key in [("PUT", "/v1/usage/{identifier}"), ("POST", "/v1/usage/{identifier}/retry")]:
        response = call(by_key[key], b'{"value": ')
        assert response["statusCode"] == 400, key
        assert json.loads(response["body"])["error"]["message"] == "the request body is not valid JSON"


def test_the_health_route_still_answers_without_a_body_and_with_an_honest_one() -> None:
    (health,) = [r for r in ROUTES if r.path == "/v1/health"]
    for body in (b"", b"{}", b'{"probe": [1, 2, {"deep": "enough"}]}'):
        response = call(health, body)
        assert (response["statusCode"], json.loads(response["body"])) == (200, {"status": "ok"})


def test_every_operation_documents_the_400_any_body_can_earn() -> None:
    doc = json.loads(openapi_json())
    operations = [(m, p, op) for p, item in doc["paths"].items() for m, op in item.items()]
    assert len(operations) >= 25
    for method, path, op in operations:
        entry = op["responses"].get("400")
        assert entry is not None, f"{method.upper()} {path} does not document 400"
        assert entry["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
