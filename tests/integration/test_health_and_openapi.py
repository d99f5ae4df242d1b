"""The foundation's public surface through HTTP against the local stack."""

from __future__ import annotations

from tests.conftest import Client


def assert_error(resp, status: int, type_: str) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message", "details"}
    assert body["error"]["type"] == type_
    assert body["error"]["message"]
    return body


def test_health_answers_ok(api: Client) -> None:
    resp = api.get("/v1/health")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == {"status": "ok"}


def test_openapi_document_describes_routes_and_contract_errors(api: Client) -> None:
    resp = api.get("/v1/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["openapi"].startswith("3.")
    assert {"/v1/health", "/v1/openapi.json"} <= set(doc["paths"])
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["ErrorBody"]["properties"]["error"]["$ref"].endswith("/ErrorDetail")
    for operations in doc["paths"].values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorBody"}


def test_unknown_route_is_404_in_contract_shape(api: Client) -> None:
    assert_error(api.get("/v1/no-such-thing"), 404, "not_found")


def test_known_path_with_other_method_is_not_a_500(api: Client) -> None:
    assert_error(api.delete("/v1/health"), 405, "method_not_allowed")


def test_query_strings_and_headers_reach_the_handler_without_breaking_it(api: Client) -> None:
    resp = api.get("/v1/health?x=1&x=2&empty=", headers={"X-Correlation": "abc"})
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_every_route_is_served_by_the_function_the_template_names(stack, api: Client) -> None:  # type: ignore[no-untyped-def]
    before = stack.runtimes["ApiFunction"].invocations
    api.get("/v1/health")
    api.get("/v1/openapi.json")
    assert stack.runtimes["ApiFunction"].invocations == before + 2
    listing = api.get("/_local/functions").json()["data"]
    api_fn = next(f for f in listing if f["function"] == "ApiFunction")
    assert "GET /v1/health" in api_fn["routes"]
