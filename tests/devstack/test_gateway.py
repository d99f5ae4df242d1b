"""The gateway's routing and the REST proxy events it builds."""

from __future__ import annotations

import base64

from devstack.gateway import Router, build_proxy_event
from devstack.template import ApiRoute


def route(method: str, path: str) -> ApiRoute:
    return ApiRoute("Fn", method, path, "AWS_IAM")


def test_static_segments_win_over_parameters_and_greedy_paths() -> None:
    router = Router([route("ANY", "/v1/{proxy+}"), route("GET", "/v1/customers/{id}"),
                     route("GET", "/v1/customers/search")])
    found = router.match("GET", "/v1/customers/search")
    assert not isinstance(found, str) and found is not None
    assert found[0].path == "/v1/customers/search"
    found = router.match("GET", "/v1/customers/cus%2F1")
    assert not isinstance(found, str) and found is not None
    assert found == (route("GET", "/v1/customers/{id}"), {"id": "cus/1"})
    found = router.match("POST", "/v1/customers/x/y")
    assert not isinstance(found, str) and found is not None
    assert found[1] == {"proxy": "customers/x/y"}


def test_unknown_path_and_wrong_method_are_told_apart() -> None:
    router = Router([route("GET", "/v1/health")])
    assert router.match("GET", "/v2/health") is None
    assert router.match("POST", "/v1/health") == "method"


def test_proxy_event_has_the_rest_api_shape() -> None:
    event = build_proxy_event(
        route("PUT", "/v1/usage/{identifier}"), {"identifier": "u-1"}, "PUT", "/v1/usage/u-1",
        {"a": ["1", "2"]}, {"Content-Type": ["application/json"], "X-Multi": ["a", "b"]},
        b'{"value": 1}', "127.0.0.1",
    )
    assert event["resource"] == "/v1/usage/{identifier}"
    assert event["path"] == "/v1/usage/u-1"
    assert event["httpMethod"] == "PUT"
    assert event["pathParameters"] == {"identifier": "u-1"}
    assert event["queryStringParameters"] == {"a": "2"}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    assert event["headers"]["X-Multi"] == "b"
    assert event["multiValueHeaders"]["X-Multi"] == ["a", "b"]
    assert event["body"] == '{"value": 1}'
    assert event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["resourcePath"] == "/v1/usage/{identifier}"
    assert ctx["identity"]["sourceIp"] == "127.0.0.1"
    assert ctx["requestId"] and ctx["stage"] == "local"


def test_absent_parts_are_null_like_api_gateway() -> None:
    event = build_proxy_event(route("GET", "/v1/health"), {}, "GET", "/v1/health", {}, {}, b"", "127.0.0.1")
    assert event["queryStringParameters"] is None
    assert event["pathParameters"] is None
    assert event["body"] is None


def test_non_utf8_body_is_base64_encoded() -> None:
    raw = b"\xff\xfe\x00binary"
    event = build_proxy_event(route("POST", "/x"), {}, "POST", "/x", {}, {}, raw, "127.0.0.1")
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw
