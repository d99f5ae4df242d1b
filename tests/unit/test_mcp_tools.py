"""The MCP server (DESIGN.md section 11) in-process: the SDK's own Client
against the server object, on moto with the Fake (billing state made by the
domain and the Fake's webhooks, applied as the stack would). The tool list,
every schema, every type and include, owner scoping, errors, and the write
tools with their idempotency keys."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel

from billing.agents import calls, objects, server
from billing.api.models import Customer
from billing.core import clock
from billing.customers import create, payment_methods
from billing.customers.keys import CustomerAttrs
from billing.data.ledger import Actor
from billing.data.tables import WebhookEventRow
from billing.data.usage_tables import MeterEventRow
from billing.metering import intake, outbox
from billing.metering.intake import UsageInput
from billing.metering.reconciliation import runs
from billing.subscriptions import actions
from devstack.fake_stripe import FakeProcessor
from tests.unit.webhook_delivery import Deliverer

API = Actor("api", "arn:aws:iam::123456789012:user/test")
READ = ["describe", "find", "get", "billing"]
WRITE = ["replay_webhook_event", "retry_usage", "cancel_usage", "cancel_subscription", "sync_customer"]


def call(srv: MCPServer, fn: Callable[[Client], Coroutine[Any, Any, Any]]) -> Any:
    async def run() -> Any:
        async with Client(srv) as client:
            return await fn(client)

    return asyncio.run(run())


def tool(srv: MCPServer, name: str, arguments: dict[str, Any]) -> tuple[bool, Any]:
    """(is_error, the answer: JSON when it is JSON, else the text)."""
    result = call(srv, lambda c: c.call_tool(name, arguments))
    text = result.content[0].text
    if result.is_error and text.startswith(f"Error executing tool {name}: {{"):
        text = text.split(": ", 1)[1]  # the SDK's prefix, then the contract's error body
    try:
        return result.is_error, json.loads(text)
    except ValueError:
        return result.is_error, text


def ok(srv: MCPServer, name: str, **arguments: Any) -> Any:
    failed, answer = tool(srv, name, arguments)
    assert not failed, answer
    return answer


@pytest.fixture
def world(fake: FakeProcessor) -> dict[str, Any]:
    """Two owners: u-1 with a card, an active subscription (its invoice and
    charge), usage (one failed); u-2 with a customer only."""
    hooks = Deliverer(fake)
    hooks.deliver()  # the seeded catalog
    one, _ = create.fetch_or_create("User", "u-1", CustomerAttrs(email="u1@example.com", currency="usd"), API)
    two, _ = create.fetch_or_create("User", "u-2", CustomerAttrs(email="u2@example.com", currency="eur"), API)
    pm = payment_methods.attach(one["id"], "pm_card_visa", API)[0]["id"]
    hooks.deliver()
    price = next(p for p in fake.catalog()["prices"] if p["lookup_key"] == "starter_monthly")
    sub = actions.create(one["id"], actions.NewSubscription(items=[(price["id"], 1)], default_payment_method=pm,
                                                            payment_behavior="allow_incomplete"), API)
    hooks.deliver()
    for identifier in ("mcp-u1-a", "mcp-u1-b"):
        intake.accept(identifier, UsageInput(event_name="api_requests", value=3, customer_id=one["id"]), API)
    MeterEventRow(pk="mcp-u1-b").update(actions=outbox.failed_actions(
        "mcp-u1-b", outbox.safe_error("meter_error", "x", "y"), clock.iso(), count_attempt=False))
    hour = int(time.time()) // 3600 * 3600 - 2 * 3600
    run, _ = runs.start(API, start=hour, end=hour + 3600, customer_id=one["id"])
    return {"one": one, "two": two, "pm": pm, "sub": sub, "price": price, "run": run}


def test_the_tool_list_is_read_only_unless_write_tools_are_on() -> None:
    tools = call(server.build(write_tools=False), lambda c: c.list_tools()).tools
    assert [t.name for t in tools] == READ
    assert all(t.annotations.read_only_hint is True for t in tools)
    tools = {t.name: t for t in call(server.build(write_tools=True), lambda c: c.list_tools()).tools}
    assert list(tools) == READ + WRITE
    assert {n for n, t in tools.items() if t.annotations.destructive_hint} == {"cancel_usage", "cancel_subscription"}
    assert all(tools[n].annotations.read_only_hint is False for n in WRITE)
    assert all("idempotency_key" in tools[n].input_schema["properties"] for n in WRITE)


def test_every_schema_is_exact_types_and_includes_enumerated() -> None:
    tools = {t.name: t.input_schema for t in call(server.build(write_tools=False), lambda c: c.list_tools()).tools}
    assert tools["describe"]["properties"] == {}
    find, get, billing = tools["find"], tools["get"], tools["billing"]
    assert find["properties"]["type"]["enum"] == list(objects.TYPES) and find["required"] == ["type"]
    assert find["properties"]["limit"]["minimum"] == 1 and find["properties"]["limit"]["maximum"] == 100
    assert find["properties"]["cursor"]["anyOf"][0]["maxLength"] > 0
    assert get["properties"]["type"]["enum"] == list(objects.TYPES) and get["required"] == ["type", "id"]
    assert get["properties"]["id"]["maxLength"] == 255
    include = get["properties"]["include"]["anyOf"][0]
    assert include["items"]["enum"] == ["subscriptions", "invoices", "payments", "payment_methods", "entitlements",
                                        "usage"]
    assert billing["required"] == ["owner_type", "owner_id"]


def test_describe_is_the_rest_models_and_the_rest_lists_filters() -> None:
    answer = ok(server.build(write_tools=False), "describe")
    types = {t["type"]: t for t in answer["types"]}
    assert list(types) == list(objects.TYPES)
    assert types["Customer"]["fields"] == Customer.model_json_schema()
    assert types["Customer"]["includes"] == list(objects.INCLUDES)
    for name, kind in objects.TYPES.items():
        model: type[BaseModel] = kind.response_model()
        assert types[name]["fields"] == model.model_json_schema(), name
    assert set(types["Customer"]["filters"]) == {"owner_type", "owner_id", "email", "currency", "processor_id",
                                                 "include_deleted"}
    assert set(types["Subscription"]["filters"]) == {"customer_id", "status", "price"}
    assert types["Subscription"]["filters"]["status"]["anyOf"][0]["enum"][:3] == ["incomplete", "incomplete_expired",
                                                                                  "trialing"]
    assert set(types["Invoice"]["filters"]) == {"customer_id", "status", "subscription"}
    assert set(types["Charge"]["filters"]) == {"customer_id", "subscription"}
    assert types["PaymentMethod"]["required_filters"] == ["customer_id"]
    assert set(types["Price"]["filters"]) == {"active", "product", "lookup_key"}
    assert set(types["PromotionCode"]["filters"]) == {"active", "code", "coupon", "sort", "order"}
    assert set(types["MeterEvent"]["filters"]) == {"status", "customer_id"}
    assert set(types["WebhookEvent"]["filters"]) == {"status"}
    assert types["UsageReconciliation"]["filters"] == {}


def test_find_reads_every_type_through_its_rest_list(world: dict[str, Any]) -> None:
    srv = server.build(write_tools=False)
    one = world["one"]
    found = {
        "Customer": ok(srv, "find", type="Customer", filter={"currency": "usd"}),
        "Subscription": ok(srv, "find", type="Subscription", filter={"customer_id": one["id"], "status": "active"}),
        "Invoice": ok(srv, "find", type="Invoice", filter={"customer_id": one["id"]}),
        "Charge": ok(srv, "find", type="Charge", filter={"customer_id": one["id"]}),
        "PaymentMethod": ok(srv, "find", type="PaymentMethod", filter={"customer_id": one["id"]}),
        "Price": ok(srv, "find", type="Price", filter={"lookup_key": "starter_monthly"}),
        "PromotionCode": ok(srv, "find", type="PromotionCode", filter={"active": True}),
        "MeterEvent": ok(srv, "find", type="MeterEvent", filter={"status": "failed"}),
        "WebhookEvent": ok(srv, "find", type="WebhookEvent", filter={"status": "failed"}),
        "UsageReconciliation": ok(srv, "find", type="UsageReconciliation", filter={}),
    }
    assert [c["id"] for c in found["Customer"]["data"]] == [one["id"]]
    assert [s["id"] for s in found["Subscription"]["data"]] == [world["sub"]["id"]]
    assert found["Invoice"]["data"] and {i["customer_id"] for i in found["Invoice"]["data"]} == {one["id"]}
    assert found["Charge"]["data"] and found["Charge"]["data"][0]["amount"] == world["price"]["unit_amount"]
    assert [p["id"] for p in found["PaymentMethod"]["data"]] == [world["pm"]]
    assert [p["id"] for p in found["Price"]["data"]] == [world["price"]["id"]]
    assert found["PromotionCode"]["data"] == [] and found["WebhookEvent"]["data"] == []
    assert [m["identifier"] for m in found["MeterEvent"]["data"]] == ["mcp-u1-b"]
    assert [r["id"] for r in found["UsageReconciliation"]["data"]] == [world["run"]["id"]]
    # Every object is the REST object, through its response model.
    for name, page in found.items():
        model = objects.TYPES[name].response_model()
        assert all(model.model_validate(item).model_dump(mode="json") == item for item in page["data"]), name


def test_find_pages_with_the_rest_cursor(world: dict[str, Any]) -> None:
    srv = server.build(write_tools=False)
    first = ok(srv, "find", type="Price", filter={"active": True}, limit=4)
    rest = ok(srv, "find", type="Price", filter={"active": True}, limit=4, cursor=first["next_cursor"])
    assert len(first["data"]) == 4 and first["next_cursor"] and rest["next_cursor"] is None
    assert len({p["id"] for p in first["data"] + rest["data"]}) == len(first["data"]) + len(rest["data"])


def test_get_every_type_by_id_and_a_customer_with_every_include(world: dict[str, Any]) -> None:
    srv = server.build(write_tools=False)
    one = world["one"]
    invoice = ok(srv, "find", type="Invoice", filter={"customer_id": one["id"]})["data"][0]
    charge = ok(srv, "find", type="Charge", filter={"customer_id": one["id"]})["data"][0]
    for kind, object_id in (("Subscription", world["sub"]["id"]), ("Invoice", invoice["id"]),
                            ("Charge", charge["id"]), ("PaymentMethod", world["pm"]),
                            ("Price", world["price"]["id"])):
        assert ok(srv, "get", type=kind, id=object_id)["id"] == object_id
    assert ok(srv, "get", type="MeterEvent", id="mcp-u1-a")["identifier"] == "mcp-u1-a"
    event_id = next(iter(WebhookEventRow.scan(limit=1))).pk
    assert ok(srv, "get", type="WebhookEvent", id=event_id)["id"] == event_id
    run = ok(srv, "get", type="UsageReconciliation", id=world["run"]["id"])
    assert (run["id"], run["customer_id"], run["end"] - run["start"]) == (world["run"]["id"], one["id"], 3600)

    plain = ok(srv, "get", type="Customer", id=one["id"])
    assert plain["owner_id"] == "u-1" and "subscriptions" not in plain
    full = ok(srv, "get", type="Customer", id=one["id"], include=list(objects.INCLUDES))
    assert [s["id"] for s in full["subscriptions"]["data"]] == [world["sub"]["id"]]
    assert [i["id"] for i in full["invoices"]["data"]] == [invoice["id"]]
    assert [c["id"] for c in full["payments"]["data"]] == [charge["id"]]
    assert [p["id"] for p in full["payment_methods"]["data"]] == [world["pm"]]
    assert full["entitlements"] == {"features": ["api_access", "reports"]}
    assert sorted(u["identifier"] for u in full["usage"]["data"]) == ["mcp-u1-a", "mcp-u1-b"]
    bare = ok(srv, "get", type="Customer", id=world["two"]["id"], include=["entitlements", "subscriptions"])
    assert bare["entitlements"] == {"features": []} and bare["subscriptions"]["data"] == []


def test_billing_and_find_are_scoped_to_the_owner_asked_for(world: dict[str, Any]) -> None:
    srv = server.build(write_tools=False)
    one = ok(srv, "billing", owner_type="User", owner_id="u-1")
    two = ok(srv, "billing", owner_type="User", owner_id="u-2")
    assert one["customer"]["id"] == world["one"]["id"] and [s["id"] for s in one["subscriptions"]] == [
        world["sub"]["id"]]
    assert two["customer"]["id"] == world["two"]["id"] and two["subscriptions"] == [] and two["entitlements"] == []
    mine = ok(srv, "find", type="Customer", filter={"owner_type": "User", "owner_id": "u-2"})
    assert [c["id"] for c in mine["data"]] == [world["two"]["id"]]
    failed, answer = tool(srv, "billing", {"owner_type": "User", "owner_id": "u-3"})
    assert failed and answer["error"]["type"] == "not_found"


def _counts() -> dict[str, int]:
    return {"meter_events": MeterEventRow.count(), "webhook_events": WebhookEventRow.count()}


@pytest.mark.parametrize(("name", "arguments", "field"), [
    ("find", {"type": "Invoices"}, "type"),
    ("find", {"type": "Customer", "filter": {"colour": "red"}}, "filter.colour"),
    ("find", {"type": "Subscription", "filter": {"status": "sleeping"}}, "filter.status"),
    ("find", {"type": "Customer", "filter": {"email": "x" * 600}}, "filter.email"),
    ("find", {"type": "PaymentMethod", "filter": {}}, "filter.customer_id"),
    ("find", {"type": "Price", "cursor": "not-a-cursor"}, "cursor"),
    ("find", {"type": "Price", "cursor": "c" * 5000}, "cursor"),
    ("find", {"type": "Price", "limit": 0}, "limit"),
    ("find", {"type": "MeterEvent", "filter": {}}, "status"),
    ("get", {"type": "Customer", "id": "x", "include": ["friends"]}, "include"),
    ("get", {"type": "Price", "id": "x", "include": ["usage"]}, "include.usage"),
    ("get", {"type": "Customer", "id": "c" * 300}, "id"),
    ("get", {"type": "Customer", "id": "cus_missing"}, "not_found"),
    ("billing", {"owner_type": "", "owner_id": "u-1"}, "owner_type"),
])
def test_bad_arguments_are_tool_errors_naming_the_field_and_write_nothing(
        world: dict[str, Any], name: str, arguments: dict[str, Any], field: str) -> None:
    srv = server.build(write_tools=False)
    before = _counts()
    failed, answer = tool(srv, name, arguments)
    assert failed, answer
    assert field in json.dumps(answer), answer
    assert "Traceback" not in json.dumps(answer)
    assert _counts() == before


def test_write_tools_go_through_the_domain_and_replay_under_their_key(world: dict[str, Any]) -> None:
    srv = server.build(write_tools=True)
    calls.reset_store()
    with calls.caller("arn:aws:iam::123456789012:role/support-agent"):
        retried = ok(srv, "retry_usage", identifier="mcp-u1-b", idempotency_key="k-1")
        assert retried["stripe_status"] == "pending"
        # The same key and arguments: the first answer, nothing run again.
        assert ok(srv, "retry_usage", identifier="mcp-u1-b", idempotency_key="k-1") == retried
        # The same key with other arguments: refused, naming the key.
        failed, answer = tool(srv, "retry_usage", {"identifier": "mcp-u1-a", "idempotency_key": "k-1"})
        assert failed and answer["error"]["type"] == "idempotency_key_reused"
        # A fresh key on a row that is no longer failed: the domain's 409, as over REST.
        failed, answer = tool(srv, "retry_usage", {"identifier": "mcp-u1-b", "idempotency_key": "k-2"})
        assert failed and answer["error"]["type"] == "conflict"

        canceled = ok(srv, "cancel_usage", identifier="mcp-u1-a")
        assert canceled["stripe_status"] == "canceled"
        ending = ok(srv, "cancel_subscription", subscription_id=world["sub"]["id"])
        assert ending["cancel_at_period_end"] is True and ending["status"] == "active"
        synced = ok(srv, "sync_customer", customer_id=world["one"]["id"])
        assert synced["id"] == world["one"]["id"]
        event_id = next(iter(WebhookEventRow.scan(limit=1))).pk
        replayed = ok(srv, "replay_webhook_event", event_id=event_id)
        assert replayed["id"] == event_id and replayed["replays"] >= 1
    failed, answer = tool(server.build(write_tools=False), "retry_usage", {"identifier": "mcp-u1-b"})
    assert failed and "Unknown tool" in str(answer)
