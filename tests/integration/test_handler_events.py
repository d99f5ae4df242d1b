"""The API handler invoked directly with the sample events in events/ (what
`sam local invoke -e` would feed it), inside a function worker of the stack so
it runs with exactly the template's environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "events" / name).read_text()))


def test_health_sample_event(stack) -> None:  # type: ignore[no-untyped-def]
    result = stack.invoke("ApiFunction", load_event("api/health.json"))
    assert result["statusCode"] == 200
    assert json.loads(result["body"]) == {"status": "ok"}


def test_fetch_or_create_sample_event_creates_then_finds(stack) -> None:  # type: ignore[no-untyped-def]
    event = load_event("api/fetch_or_create_customer.json")
    # The sample names owner User/42; a unique owner keeps this test independent.
    event["pathParameters"]["owner_id"] = "sample-event-42"
    event["path"] = event["requestContext"]["path"] = "/v1/owners/User/sample-event-42/customer"
    first = stack.invoke("ApiFunction", event)
    assert first["statusCode"] == 201, first["body"]
    body = json.loads(first["body"])
    assert (body["owner_type"], body["owner_id"], body["email"]) == ("User", "sample-event-42", "ada@example.com")
    # Powertools answers REST proxy events with multiValueHeaders.
    assert first["multiValueHeaders"]["ETag"] == [f'"{body["lock_version"]}"']
    second = stack.invoke("ApiFunction", event)
    assert second["statusCode"] == 200
    assert json.loads(second["body"])["id"] == body["id"]
