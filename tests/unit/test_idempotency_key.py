"""Idempotency-Key through the API's resolver, in-process (moto's tables,
Powertools' idempotency utility, the Fake): the first response under a key
is replayed, another body under it is 422, a refusal that ran nothing is
not kept, and without the header a POST creates a new object each time."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from billing.api import idempotency
from billing.api.app import app
from devstack.fake_stripe import FakeProcessor

SAMPLE = json.loads((Path(__file__).resolve().parents[2] / "events" / "api" / "check_promotion_code.json")
                    .read_text())


@pytest.fixture
def api(fake: FakeProcessor) -> Iterator[FakeProcessor]:
    idempotency.reset_store()  # its client belongs to this test's moto
    yield fake
    idempotency.reset_store()


def call(method: str, path: str, body: Any = None, key: str | None = None,
         caller: str = "arn:aws:iam::123456789012:user/a") -> dict[str, Any]:
    event = copy.deepcopy(SAMPLE)
    event.update(resource=path, path=path, httpMethod=method, pathParameters=None,
                 body=json.dumps(body) if body is not None else None)
    event["requestContext"].update(resourcePath=path, httpMethod=method)
    event["requestContext"]["identity"]["userArn"] = caller
    if key is not None:
        event["headers"]["Idempotency-Key"] = key
    result = app.resolve(event, None)  # type: ignore[arg-type]
    return {"status": result["statusCode"], "body": json.loads(result["body"]),
            "headers": {k: v[-1] for k, v in (result.get("multiValueHeaders") or {}).items()}}


COUPON = {"percent_off": 10, "duration": "once"}


def test_without_the_header_each_post_is_a_new_coupon(api: FakeProcessor) -> None:
    first, second = call("POST", "/v1/coupons", COUPON), call("POST", "/v1/coupons", COUPON)
    assert (first["status"], second["status"]) == (201, 201)
    assert first["body"]["id"] != second["body"]["id"]
    keys = [c["idempotency_key"] for c in api.calls if c["operation"] == "create_coupon"]
    assert len(keys) == 2 and len(set(keys)) == 2 and all(k.startswith("coupon-create-") for k in keys)


def test_the_first_response_is_replayed_and_another_body_is_refused(api: FakeProcessor) -> None:
    first = call("POST", "/v1/coupons", COUPON, key="k-1")
    again = call("POST", "/v1/coupons", {"duration": "once", "percent_off": 10}, key="k-1")  # same body, reordered
    assert first["status"] == again["status"] == 201 and again["body"] == first["body"]
    assert again["headers"].get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first["headers"]
    assert len([c for c in api.calls if c["operation"] == "create_coupon"]) == 1
    reused = call("POST", "/v1/coupons", {**COUPON, "percent_off": 20}, key="k-1")
    assert reused["status"] == 422 and reused["body"]["error"]["type"] == "idempotency_key_reused"
    # The key is the caller's own: another caller's k-1 is another request.
    other = call("POST", "/v1/coupons", COUPON, key="k-1", caller="arn:aws:iam::123456789012:user/b")
    assert other["status"] == 201 and other["body"]["id"] != first["body"]["id"]


def test_a_refusal_that_ran_nothing_is_not_kept(api: FakeProcessor) -> None:
    refused = call("POST", "/v1/coupons", {"percent_off": 0}, key="k-2")
    assert refused["status"] == 422 and refused["body"]["error"]["type"] == "validation_error"
    fixed = call("POST", "/v1/coupons", COUPON, key="k-2")
    assert fixed["status"] == 201


def test_a_domain_error_is_kept_and_replayed(api: FakeProcessor) -> None:
    missing = call("POST", "/v1/customers/cust_nope/sync", key="k-3")
    assert missing["status"] == 404
    assert call("POST", "/v1/customers/cust_nope/sync", key="k-3")["headers"].get("Idempotent-Replayed") == "true"


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "caf\u00e9"])
def test_a_malformed_key_is_422(api: FakeProcessor, key: str) -> None:
    answer = call("POST", "/v1/coupons", COUPON, key=key)
    assert answer["status"] == 422 and answer["body"]["error"]["details"] == {"Idempotency-Key": "invalid"}
    assert not [c for c in api.calls if c["operation"] == "create_coupon"]


def test_reads_ignore_the_header(api: FakeProcessor) -> None:
    assert call("GET", "/v1/health", key="k-4")["headers"].get("Idempotent-Replayed") is None


def test_the_document_states_the_header_on_every_mutating_operation() -> None:
    from billing.api.app import openapi_json

    doc = json.loads(openapi_json())
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            names = {p["name"] for p in operation.get("parameters", [])}
            if method.upper() in idempotency.MUTATING and path != "/v1/webhooks/stripe":
                assert "Idempotency-Key" in names, (method, path)
            else:
                assert "Idempotency-Key" not in names, (method, path)
