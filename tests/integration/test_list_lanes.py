"""A renewal burst spreads over the list indexes' lanes (billing.data.lanes):
no key of a list or status index takes every invoice of the burst, read from
the table through the local stack, and the lists still return every invoice,
newest first, across pages, with no duplicates."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import pytest

from devstack.dynamodb import client
from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.webhook_helpers import accepted, event, settle, stripe_object

pytestmark = pytest.mark.integration
BURST = 48
# Keys that name one object (its customer, its subscription) hold that object's rows by design.
PER_OBJECT = {"customer_id", "subscription_id"}


def _all_pages(api: Client, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(500):
        resp = api.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        found.extend(body["data"])
        cursor = body.get("next_cursor")
        if not cursor:
            return found
    raise AssertionError("the list never ended")


def test_a_renewal_burst_spreads_over_lanes_and_lists_in_order(stack: LocalStack, api: Client) -> None:
    created = api.put(f"/v1/owners/User/{uuid.uuid4()}/customer", {"email": "burst@example.com"})
    assert created.status_code in (200, 201), created.text
    processor_id = created.json()["processor_id"]
    now = int(time.time())
    # Newest first by `created`: invoice 0 is the newest.
    invoices = [stripe_object("invoice", id=f"in_burst{uuid.uuid4().hex[:14]}", customer=processor_id,
                              status="paid", billing_reason="subscription_cycle", created=now - 10 * n)
                for n in range(BURST)]
    events = [event("invoice.paid", obj) for obj in invoices]
    for body in events:
        accepted(api, body)
    assert {e["status"] for e in settle(stack, api, *(e["id"] for e in events), timeout=60)} == {"processed"}

    # What was written: every GSI key of the burst's rows, read from the table.
    ddb = client(stack.ddb_endpoint)
    table = stack.runtimes["WebhookProcessorFunction"].env["INVOICES_TABLE"]
    indexes = ddb.describe_table(TableName=table)["Table"]["GlobalSecondaryIndexes"]
    keys = {i["IndexName"]: next(k["AttributeName"] for k in i["KeySchema"] if k["KeyType"] == "HASH")
            for i in indexes}
    rows = [ddb.get_item(TableName=table, Key={"pk": {"S": obj["id"]}}, ConsistentRead=True)["Item"]
            for obj in invoices]
    for name, attribute in keys.items():
        if attribute in PER_OBJECT:
            continue
        per_key = Counter(row[attribute]["S"] for row in rows if attribute in row)
        assert per_key, f"{name}: no row of the burst carries {attribute}"
        # 16 lanes: about 3 of 48 each; one key taking a quarter of the burst is a hot key.
        assert max(per_key.values()) <= BURST // 4, f"{name} ({attribute}) takes {per_key.most_common(2)}"
        assert len(per_key) >= 8, f"{name} ({attribute}) writes {len(per_key)} keys"

    expected = [obj["id"] for obj in invoices]
    for params in ({"limit": "7"}, {"limit": "5", "status": "paid"}):
        listed = _all_pages(api, "/v1/invoices", params)
        ids = [row["id"] for row in listed]
        assert len(ids) == len(set(ids)), f"{params}: an invoice listed twice"
        assert [i for i in ids if i in set(expected)] == expected, params
        # The whole list is newest first across lanes, not only the burst.
        sort_keys = [(row["data"].get("created") or 0, row["id"]) for row in listed]
        assert sort_keys == sorted(sort_keys, reverse=True), params
