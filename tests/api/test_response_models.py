"""The API's bodies and its OpenAPI document come from the same models.

In-process, through the resolver the API function runs (billing.api.app),
with API Gateway events built from the samples in events/api: no stack.

- Every route returns `Response[Model]`, and every success response the
  document declares for it is that model's JSON schema: the document cannot
  drift from what Powertools serialises.
- Every response model refuses undeclared fields: a domain function that
  returns one answers a 500 `internal_error` in the contract's shape, which
  neither echoes the body nor logs it.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import pytest
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Route
from pydantic import BaseModel

from billing.api.app import app, openapi_json
from billing.api.routes.webhook_events import WebhookAck
from billing.core.observability import logger
from tests.api.context import Context

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
REF = "#/components/schemas/{model}"
# Paths the document describes that this resolver does not serve.
OTHER_FUNCTIONS = {"/v1/webhooks/stripe"}
# The one route whose body is not a model: the document itself, a JSON string built once.
NOT_A_MODEL = {("GET", "/v1/openapi.json")}
SECRET = "s3cr3t-value-never-echoed"


def routes() -> list[Route]:
    app.load()  # every route group (they load on first use, billing.api.lazy)
    return [r for r in [*app._static_routes, *app._dynamic_routes] if r.include_in_schema]


def returned(route: Route) -> Any:
    """What the route's annotation says it returns: X of Response[X]."""
    hint = get_type_hints(route.func)["return"]
    assert get_origin(hint) is Response, f"{route.method} {route.openapi_path} returns {hint}, not Response[Model]"
    (inner,) = get_args(hint)
    return inner


def models_in(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """The model and every model its fields nest, however deep."""
    seen: set[type[BaseModel]] = set()
    todo = [model]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        yield current
        for field in current.model_fields.values():
            todo.extend(_models_of(field.annotation))


def _models_of(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_of(arg)]


def document() -> dict[str, Any]:
    return dict(json.loads(openapi_json()))


def as_written(schema: Any) -> Any:
    """A JSON schema as Powertools writes the document: without null-valued
    keywords (its OpenAPI model is dumped with exclude_none, so a field's
    `"default": null` does not appear)."""
    if isinstance(schema, dict):
        return {k: as_written(v) for k, v in schema.items() if v is not None}
    if isinstance(schema, list):
        return [as_written(v) for v in schema]
    return schema


# -- the document is the models ------------------------------------------------------------------


def test_every_route_returns_a_typed_response_of_a_model_that_refuses_undeclared_fields() -> None:
    found = routes()
    assert len(found) >= 25, "the resolver lost its routes"
    for route in found:
        inner = returned(route)
        if (route.method, route.openapi_path) in NOT_A_MODEL:
            assert inner is str
            continue
        assert isinstance(inner, type) and issubclass(inner, BaseModel), (route.openapi_path, inner)
        for model in models_in(inner):
            assert model.model_config.get("extra") == "forbid", f"{model.__name__} lets undeclared fields through"


def test_every_documented_success_body_is_the_json_schema_of_the_routes_model() -> None:
    doc = document()
    components = doc["components"]["schemas"]
    served = {(r.method.lower(), r.openapi_path): r for r in routes()}
    checked = set()
    for path, operations in doc["paths"].items():
        if path in OTHER_FUNCTIONS:
            continue
        for method, operation in operations.items():
            route = served[(method, path)]
            successes = {status: response["content"]["application/json"]["schema"]
                         for status, response in operation["responses"].items()
                         if status.startswith("2") and "application/json" in response.get("content", {})}
            assert successes, f"{method} {path} documents no JSON success body"
            if (route.method, route.openapi_path) in NOT_A_MODEL:
                continue
            model = returned(route)
            # The model's own JSON schema as it serialises (pydantic's, not Powertools').
            expected = as_written(model.model_json_schema(mode="serialization", ref_template=REF))
            nested = expected.pop("$defs", {})
            for status, schema in successes.items():
                assert schema == {"$ref": REF.format(model=model.__name__)}, \
                    f"{method.upper()} {path} {status} is not documented as {model.__name__}"
            assert components[model.__name__] == expected, f"the document's {model.__name__} drifted from the model"
            for name, schema in nested.items():
                assert components[name] == schema, f"the document's {name} drifted from the model"
            checked.add((method, path))
    assert checked == {k for k in served if (k[0].upper(), k[1]) not in NOT_A_MODEL}, "a route is missing a document"


def test_routes_with_two_success_statuses_document_both_with_the_one_model() -> None:
    doc = document()
    both = {("put", "/v1/owners/{owner_type}/{owner_id}/customer"): ("200", "201"),
            ("post", "/v1/customers/{customer_id}/payment-methods"): ("200", "201"),
            ("put", "/v1/usage/{identifier}"): ("200", "202")}
    for (method, path), statuses in both.items():
        responses = doc["paths"][path][method]["responses"]
        schemas = [responses[s]["content"]["application/json"]["schema"] for s in statuses]
        assert schemas[0] == schemas[1], (method, path)


def test_the_webhook_functions_ack_is_documented_from_its_model() -> None:
    doc = document()
    ack = doc["paths"]["/v1/webhooks/stripe"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ack == {"$ref": REF.format(model="WebhookAck")}
    assert doc["components"]["schemas"]["WebhookAck"] == WebhookAck.model_json_schema(ref_template=REF)


def test_response_models_are_closed_in_the_document() -> None:
    doc = document()
    for route in routes():
        if (route.method, route.openapi_path) in NOT_A_MODEL:
            continue
        for model in models_in(returned(route)):
            assert doc["components"]["schemas"][model.__name__]["additionalProperties"] is False, model.__name__


def test_a_500_is_documented_in_the_contract_shape_not_powertools() -> None:
    doc = document()
    assert "ResponseValidationError" not in doc["components"]["schemas"]
    customer = doc["paths"]["/v1/customers/{customer_id}"]["get"]["responses"]
    assert customer["500"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}


# -- bodies through the resolver ------------------------------------------------------------------


def sample(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "events" / "api" / name).read_text()))


def customer_event(method: str, path: str, resource: str, path_parameters: dict[str, str],
                   query: dict[str, str] | None = None) -> dict[str, Any]:
    """Another customer route's event, built from the fetch-or-create sample."""
    event = copy.deepcopy(sample("fetch_or_create_customer.json"))
    event.update(httpMethod=method, path=path, resource=resource, pathParameters=path_parameters, body=None,
                 queryStringParameters=query,
                 multiValueQueryStringParameters={k: [v] for k, v in query.items()} if query else None)
    event["requestContext"].update(httpMethod=method, resourcePath=resource, path=f"/local{path}")
    return event


def get_customer_event(customer_id: str, include: str) -> dict[str, Any]:
    return customer_event("GET", f"/v1/customers/{customer_id}", "/v1/customers/{customer_id}",
                          {"customer_id": customer_id}, {"include": include})


def customer_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "cust_test_1", "owner_type": "User", "owner_id": "42", "processor": "stripe",
        "processor_id": "cus_test_1", "email": "ada@example.com", "name": "Ada Lovelace", "currency": "gbp",
        "tax_exempt": None, "preferred_locale": None, "preferred_timezone": None, "metadata": {"plan": "pro"},
        "data": {"id": "cus_test_1", "object": "customer", "balance": 0}, "default_payment_method_id": None,
        "lock_version": 3, "last_stripe_event_ts": None, "last_stripe_event_id": None,
        "inserted_at": "2025-11-21T00:00:00.000000Z", "updated_at": "2025-11-21T00:00:00.000000Z",
        "deleted_at": None,
    }
    body.update(changes)
    return body


def payment_method_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "pm_test_1", "processor_id": "pm_test_1", "customer_id": "cust_test_1", "status": "attached",
        "type": "card", "brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034, "data": {},
        "lock_version": 1, "last_stripe_event_ts": None, "last_stripe_event_id": None, "detached_at": None,
        "inserted_at": "2025-11-21T00:00:00.000000Z", "updated_at": "2025-11-21T00:00:00.000000Z",
    }
    body.update(changes)
    return body


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    """What the API function logs while the test runs."""
    captured = io.StringIO()
    handler = logger.registered_handler
    previous = handler.setStream(captured)  # type: ignore[attr-defined]
    try:
        yield captured
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]


def resolve(event: dict[str, Any]) -> dict[str, Any]:
    return dict(app.resolve(event, Context()))  # type: ignore[arg-type]


def test_a_body_its_model_accepts_is_served_as_the_domain_returned_it(monkeypatch: pytest.MonkeyPatch) -> None:
    body = customer_body()
    monkeypatch.setattr("billing.customers.create.fetch_or_create", lambda *args: (dict(body), True))
    result = resolve(sample("fetch_or_create_customer.json"))
    assert result["statusCode"] == 201, result["body"]
    # Every field as the domain returned it, none added (no null includes), none lost.
    assert json.loads(result["body"]) == body
    assert result["multiValueHeaders"]["ETag"] == ['"3"']


def test_embedded_projections_are_served_through_their_models(monkeypatch: pytest.MonkeyPatch) -> None:
    body = customer_body(payment_methods=[payment_method_body()], subscriptions=[], invoices=[], charges=[])
    monkeypatch.setattr("billing.customers.records.get", lambda *args: copy.deepcopy(body))
    result = resolve(get_customer_event("cust_test_1", "payment_methods,subscriptions,invoices,charges"))
    assert result["statusCode"] == 200, result["body"]
    assert json.loads(result["body"]) == body


def _extra_top_level(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    body = customer_body(internal_note=SECRET)
    monkeypatch.setattr("billing.customers.create.fetch_or_create", lambda *args: (body, True))
    return sample("fetch_or_create_customer.json")


def _extra_nested(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    body = customer_body(payment_methods=[payment_method_body(fingerprint=SECRET)])
    monkeypatch.setattr("billing.customers.records.get", lambda *args: body)
    return get_customer_event("cust_test_1", "payment_methods")


def _extra_in_check(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr("billing.promotions.listing.check",
                        lambda *args: {"valid": True, "reason": None, "coupon_secret": SECRET})
    return sample("check_promotion_code.json")


def _wrong_type(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    body = customer_body(email=[SECRET])
    monkeypatch.setattr("billing.customers.create.fetch_or_create", lambda *args: (body, False))
    return sample("fetch_or_create_customer.json")


@pytest.mark.parametrize(("case", "field"), [
    (_extra_top_level, "response.internal_note"),
    (_extra_nested, "response.payment_methods.0.fingerprint"),
    (_extra_in_check, "response.coupon_secret"),
    (_wrong_type, "response.email"),
], ids=["extra-field", "extra-nested-field", "extra-field-in-check", "wrong-type"])
def test_a_body_its_model_refuses_is_a_500_that_neither_echoes_nor_logs_it(
        monkeypatch: pytest.MonkeyPatch, log: io.StringIO, case: Any, field: str) -> None:
    result = resolve(case(monkeypatch))
    assert result["statusCode"] == 500, result["body"]
    assert json.loads(result["body"]) == {"error": {"type": "internal_error", "message": "internal error",
                                                    "details": {}}}
    assert "ETag" not in result.get("multiValueHeaders", {})
    text = log.getvalue()
    assert SECRET not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    (entry,) = [line for line in lines if line.get("message") == "response does not match its model"]
    assert entry["level"] == "ERROR"
    assert field in {e["field"] for e in entry["errors"]}
