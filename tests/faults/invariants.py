"""The invariants every fault scenario ends with (DESIGN.md section 7,
"nothing lost or double-billed under duplicated, reordered and failing
deliveries"), written once so each scenario checks them the same way:

- usage: accepted = reported + failed + canceled, nothing pending after the
  drain;
- billing: no identifier billed twice (the Fake's billed list holds each at
  most once) and every reported row billed, with the value it was accepted
  with (a resend the Fake counted as a duplicate is fine: Stripe deduplicates
  it by identifier, which is the point of sending one); a canceled row is
  not billed (never received, or canceled there by a meter event
  adjustment), and one canceled while pending never reaches Stripe at all;
- ledger: the usage row is its own record (no ledger row per usage event);
  one row per applied webhook event, none for a stale or duplicate delivery;
- projections: none behind its newest event (the watermark is the newest
  `created` delivered for it, and the state is the newest state).

Each check reads through the public surfaces (HTTP) and the Fake's own
records, never the tables directly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration import usage_helpers, webhook_helpers

FINISHED_OK = ("processed", "stale", "ignored")


def quiet(stack: LocalStack, api: Client) -> None:
    """Nothing in flight (the Fake's webhooks delivered and applied) and no
    fault left over, so a scenario's faults hit its own calls."""
    assert stack.settle(timeout=90), "the Fake's webhooks or the streams did not settle"
    assert pending_faults(stack, api) == {}


def pending_faults(stack: LocalStack, api: Client) -> dict[str, Any]:
    """Scripted faults not yet consumed, Stripe's and DynamoDB's."""
    stripe_faults = api.get("/_local/fake-stripe/state").json()["pending_faults"]
    dynamodb = api.get("/_local/dynamodb/faults")
    assert dynamodb.status_code == 200, dynamodb.text
    return {**{f"stripe:{k}": v for k, v in stripe_faults.items()},
            **{f"dynamodb:{k}": v for k, v in dynamodb.json()["pending"].items()}}


def ledger(api: Client, customer_id: str) -> list[dict[str, Any]]:
    """Every ledger row of a customer, all pages."""
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        resp = api.get(f"/v1/customers/{customer_id}/events", params=params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        rows.extend(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return rows


def check_ledger(api: Client, customer_id: str, changes: Mapping[str, int]) -> None:
    """One ledger row per change: exactly `changes` (type -> count) for these types."""
    counts = Counter(e["type"] for e in ledger(api, customer_id))
    assert {t: counts.get(t, 0) for t in changes} == dict(changes), counts


# -- usage -----------------------------------------------------------------------------------


def check_usage(stack: LocalStack, api: Client, accepted: Mapping[str, int], *,
                failed: Collection[str] = (), canceled: Collection[str] = (), never_sent: Collection[str] = (),
                timeout: float = 90.0) -> dict[str, dict[str, Any]]:
    """`accepted`: identifier -> the value it was accepted with. `failed`: the
    identifiers expected to end failed (a permanent Stripe rejection);
    `canceled`: those expected canceled, of which `never_sent` were canceled
    while pending and must never have reached Stripe. Returns the rows."""
    identifiers = list(accepted)
    rows = usage_helpers.settle(stack, api, identifiers, timeout=timeout)
    statuses = Counter(r["stripe_status"] for r in rows.values())
    # accepted = reported + failed + canceled, and nothing pending after the drain.
    assert statuses["pending"] == 0, statuses
    assert statuses["reported"] + statuses["failed"] + statuses["canceled"] == len(identifiers), statuses
    assert {i for i, r in rows.items() if r["stripe_status"] == "failed"} == set(failed)
    assert {i for i, r in rows.items() if r["stripe_status"] == "canceled"} == set(canceled)
    assert set(never_sent) <= set(canceled)
    reported = {i for i, r in rows.items() if r["stripe_status"] == "reported"}
    for identifier, row in rows.items():
        assert row["value"] == accepted[identifier]
        if identifier in reported:
            assert row["reported_at"] is not None and row["attempts"] >= 1 and row["stripe_error"] is None
        elif identifier in set(canceled):
            assert row["canceled_at"] is not None
        else:
            assert set(row["stripe_error"]) == {"type", "code", "message"}
            assert len(row["stripe_error"]["message"] or "") <= 512

    # No identifier billed twice; every reported one billed once, as accepted;
    # no canceled one billed (and one canceled while pending never sent).
    wanted = set(identifiers)
    # A row resent after a meter error is at Stripe under its stripe_identifier ("<identifier>#r<n>").
    received = [{**e, "identifier": e["identifier"].partition("#r")[0]} for e in usage_helpers.fake(stack).meter_events
                if e["identifier"].partition("#r")[0] in wanted]
    assert not {e["identifier"] for e in received} & set(never_sent), "a canceled pending event reached Stripe"
    billed = [e for e in received if not e["canceled"] and not e.get("rejected")]
    counts = Counter(e["identifier"] for e in billed)
    assert not [i for i, n in counts.items() if n > 1], counts
    assert set(counts) == reported, (set(counts) ^ reported)
    for entry in billed:
        row = rows[entry["identifier"]]
        assert entry["payload"] == {"stripe_customer_id": row["stripe_customer_id"], "value": str(row["value"])}
        assert entry["event_name"] == row["event_name"]

    # The usage row is its own audit record: no ledger row for any usage transition.
    for customer_id in {r["customer_id"] for r in rows.values()}:
        usage_rows = [e for e in ledger(api, customer_id) if e["type"].startswith("usage.")]
        assert usage_rows == [], Counter(e["type"] for e in usage_rows)
    return rows


# -- webhooks and projections -----------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    """A webhook event sent to the stack, and what it is about."""

    event: dict[str, Any]
    customer_id: str  # our customer the event's object belongs to
    kind: str  # "customer" or "payment_method"
    object_id: str

    @property
    def id(self) -> str:
        return str(self.event["id"])

    @property
    def created(self) -> int:
        return int(self.event["created"])


def check_webhooks(stack: LocalStack, api: Client, delivered: Iterable[Delivered], *,
                   newest: Mapping[tuple[str, str], dict[str, Any]], timeout: float = 90.0
                   ) -> dict[str, dict[str, Any]]:
    """Every event stored once and finished; one ledger row per applied event
    and none for a stale one; every projection at its newest event.

    `newest`: (kind, object_id) -> the newest state Stripe holds for it; the
    projection's `data` must carry its metadata."""
    events = {d.id: d for d in delivered}  # a duplicate delivery is the same event
    stored = {s["id"]: s for s in webhook_helpers.settle(stack, api, *events, timeout=timeout)}
    assert set(stored) == set(events)
    assert {s["status"] for s in stored.values()} <= set(FINISHED_OK), \
        {i: (s["status"], s["error"]) for i, s in stored.items() if s["status"] not in FINISHED_OK}

    by_customer: dict[str, list[Delivered]] = {}
    for d in events.values():
        by_customer.setdefault(d.customer_id, []).append(d)
    for customer_id, mine in by_customer.items():
        caused = Counter(e["caused_by_webhook_event_id"] for e in ledger(api, customer_id)
                         if e["caused_by_webhook_event_id"] in events)
        for d in mine:
            # An applied event wrote exactly one ledger row; a stale one none.
            expected = 1 if stored[d.id]["status"] == "processed" else 0
            assert caused.get(d.id, 0) == expected, (d.id, stored[d.id]["status"], caused.get(d.id, 0))

        # No projection behind its newest event.
        body = api.get(f"/v1/customers/{customer_id}", params={"include": "payment_methods"})
        assert body.status_code == 200, body.text
        projection = body.json()
        current: dict[tuple[str, str], dict[str, Any]] = {("customer", projection["processor_id"]): projection}
        for pm in projection.get("payment_methods") or []:
            current[("payment_method", pm["id"])] = pm
        for key in {(d.kind, d.object_id) for d in mine}:
            newest_created = max(d.created for d in mine if (d.kind, d.object_id) == key)
            assert key in current, (key, sorted(current))
            row = current[key]
            assert row["last_stripe_event_ts"] == newest_created, (key, row["last_stripe_event_ts"], newest_created)
            assert row["data"].get("metadata") == newest[key].get("metadata"), key
    return stored
