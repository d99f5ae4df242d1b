"""The backfill in-process (moto, the Fake as an existing Stripe account): each
stream record of a running run is played by calling the worker with the
row's step, as the sync table's stream would. Every object type lands once,
through the reconcile path; a page killed half way is redone from its
checkpoint and counted once; a second run changes nothing; newer state a
webhook brought is never overwritten; owners are linked from metadata."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from billing.core.errors import Conflict, NotFound, ValidationFailed
from billing.customers import records
from billing.data.ledger import Actor
from billing.data.tables import CustomerRow, LedgerRow, PaymentMethodRow
from billing.sync import backfill, backfill_runs
from devstack.fake_stripe import FakeProcessor
from tests.unit.webhook_delivery import Deliverer

OPERATOR = Actor("api", "arn:aws:iam::123456789012:user/operator")
CUSTOMERS = 7


def _account(fake: FakeProcessor) -> dict[str, Any]:
    """An existing Stripe account nobody told this deployment about: customers
    (some owned through metadata), a card each, a paid subscription, a
    coupon and its promotion code."""
    customers = []
    for n in range(CUSTOMERS):
        owner = {"owner_type": "Team", "owner_id": f"t-{n}"} if n % 2 == 0 else {}
        customer = fake.create_customer(idempotency_key=f"c{n}", email=f"c{n}@example.com", name=f"C {n}",
                                        metadata={"plan": "pro", **owner})
        pm = fake.attach_payment_method("pm_card_visa", customer_id=customer["id"], idempotency_key=f"p{n}")
        customers.append((customer, pm))
    price = next(p for p in fake.catalog()["prices"] if p["lookup_key"] == "pro_monthly")
    customer, pm = customers[0]
    subscription = fake.create_subscription(idempotency_key="s0", params={
        "customer": customer["id"], "items": [{"price": price["id"]}], "default_payment_method": pm["id"],
        "payment_behavior": "error_if_incomplete"})
    coupon = fake.create_coupon(idempotency_key="k0", params={"percent_off": 10, "duration": "once"})
    fake.create_promotion_code(idempotency_key="q0", params={"promotion": {"type": "coupon", "coupon": coupon["id"]},
                                                              "code": "BACKFILL10"})
    return {"customers": customers, "subscription": subscription}


def _drive(run_id: str, *, limit: int = 200) -> dict[str, Any]:
    """Play the stream: process the record of each checkpoint until the run completes."""
    for _ in range(limit):
        row = backfill_runs.load(run_id)
        assert row is not None
        if row.status == backfill_runs.COMPLETED:
            return backfill_runs.to_api(row)
        backfill.run_step(run_id, int(row.step))
    raise AssertionError("the backfill did not finish")


def _by_type(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["type"]: t for t in run["types"]}


def _listed_count(fake: FakeProcessor, object_type: str) -> int:
    return len(fake._stores()[object_type])  # the Fake's own store: what Stripe holds


def _customer_rows() -> list[CustomerRow]:
    return [r for r in CustomerRow.scan() if r.kind == "customer"]


def _ledger_types(customer_id: str) -> list[str]:
    return [r.type for r in LedgerRow.query(f"customer#{customer_id}")]


def test_a_run_imports_every_type_once_and_links_owners(fake: FakeProcessor) -> None:
    account = _account(fake)
    run = backfill_runs.start(OPERATOR, page_size=3)
    assert run["status"] == "running" and run["current_type"] == "product"
    done = _drive(run["id"])
    types = _by_type(done)
    assert list(types) == list(backfill_runs.TYPES)  # dependency order
    for object_type in ("product", "price", "coupon", "promotion_code", "customer", "subscription", "invoice",
                        "charge"):
        expected = _listed_count(fake, object_type)
        assert types[object_type]["seen"] == types[object_type]["applied"] == expected, (object_type, types)
        assert types[object_type]["done"] and types[object_type]["failed"] == 0
    assert types["payment_method"]["applied"] == CUSTOMERS
    assert types["customer"]["pages"] == 3  # 7 customers, 3 a page
    assert done["totals"]["seen"] == sum(t["seen"] for t in done["types"]) and done["finished_at"]

    rows = _customer_rows()
    assert len(rows) == CUSTOMERS == len({r.processor_id for r in rows})
    owned = {r.processor_id: (r.owner_type, r.owner_id) for r in rows}
    for n, (customer, _) in enumerate(account["customers"]):
        assert owned[customer["id"]] == (("Team", f"t-{n}") if n % 2 == 0 else (None, None))
    first = records.find_by_owner("Team", "t-0")
    assert first is not None and first.email == "c0@example.com" and first.metadata == {"plan": "pro"}
    assert first.default_payment_method_id is None
    # Each customer's ledger: created once, its payment method, and the first one's subscription.
    assert sorted(_ledger_types(first.pk)) == sorted(
        ["customer.created", "payment_method.updated", "customer.subscription.updated", "invoice.updated",
         "charge.updated"])
    assert {r.actor_type for r in LedgerRow.query(f"customer#{first.pk}")} == {"system"}


def test_a_run_killed_half_way_resumes_from_its_checkpoint_and_counts_each_object_once(
        fake: FakeProcessor, monkeypatch: pytest.MonkeyPatch) -> None:
    _account(fake)
    run = backfill_runs.start(OPERATOR, types=["customer", "payment_method"], page_size=4)
    applied = backfill.apply_one
    calls = {"n": 0}

    def dies_on_the_sixth(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 6:  # the second page, half applied
            raise SystemExit("the worker was killed")
        return applied(*args, **kwargs)

    monkeypatch.setattr(backfill, "apply_one", dies_on_the_sixth)
    backfill.run_step(run["id"], 0)  # page 1: 4 customers
    with pytest.raises(SystemExit):
        backfill.run_step(run["id"], 1)  # page 2: killed after one of its 3 customers
    stalled = backfill_runs.get(run["id"])
    assert stalled["checkpoints"] == 1 and _by_type(stalled)["customer"]["seen"] == 4
    assert len(_customer_rows()) == 5  # the half-applied page's first customer is in

    done = _drive(run["id"])  # the stream retries the same record: the page again, from its cursor
    types = _by_type(done)
    assert types["customer"]["seen"] == CUSTOMERS
    # Applied once each: the customer the dead attempt wrote is unchanged the second time.
    assert (types["customer"]["applied"], types["customer"]["unchanged"]) == (CUSTOMERS - 1, 1)
    assert types["payment_method"]["seen"] == types["payment_method"]["applied"] == CUSTOMERS
    rows = _customer_rows()
    assert len(rows) == CUSTOMERS
    for row in rows:
        assert _ledger_types(row.pk).count("customer.created") == 1
        assert len(list(PaymentMethodRow.by_customer.query(row.pk))) == 1


def test_a_second_run_changes_nothing(fake: FakeProcessor) -> None:
    _account(fake)
    _drive(backfill_runs.start(OPERATOR)["id"])
    ledger_rows = len(list(LedgerRow.scan()))
    versions = {r.pk: r.lock_version for r in _customer_rows()}
    again = _drive(backfill_runs.start(OPERATOR)["id"])
    assert again["totals"]["applied"] == 0 and again["totals"]["failed"] == 0
    assert again["totals"]["unchanged"] == again["totals"]["seen"] > 0
    assert len(list(LedgerRow.scan())) == ledger_rows
    assert {r.pk: r.lock_version for r in _customer_rows()} == versions


def test_newer_state_from_a_webhook_is_never_overwritten(fake: FakeProcessor) -> None:
    customer = fake.create_customer(idempotency_key="w", email="old@example.com", name="Old", metadata={})
    newer = dict(fake.retrieve_customer(customer["id"]), name="From a later webhook")
    event = {"id": "evt_newer_1", "object": "event", "type": "customer.updated", "created": int(time.time()) + 600,
             "livemode": False, "data": {"object": newer}}
    assert Deliverer.apply(json.loads(json.dumps(event))) == "processed"
    done = _drive(backfill_runs.start(OPERATOR, types=["customer"])["id"])
    assert _by_type(done)["customer"]["stale"] == 1
    (row,) = _customer_rows()
    assert row.name == "From a later webhook" and row.last_stripe_event_id == "evt_newer_1"


def test_an_object_whose_customer_is_missing_is_failed_and_the_run_goes_on(fake: FakeProcessor) -> None:
    _account(fake)
    done = _drive(backfill_runs.start(OPERATOR, types=["subscription", "invoice"])["id"])
    types = _by_type(done)
    assert types["subscription"]["failed"] == 1 and types["invoice"]["failed"] >= 1
    assert types["subscription"]["last_error"]["type"] == "parent_missing"
    assert done["status"] == "completed"


def test_start_resume_and_read_refuse_what_they_cannot_do(fake: FakeProcessor) -> None:
    with pytest.raises(ValidationFailed):
        backfill_runs.start(OPERATOR, types=["refund"])
    with pytest.raises(NotFound):
        backfill_runs.get("bf_missing")
    run = backfill_runs.start(OPERATOR, types=["coupon"])
    with pytest.raises(Conflict) as one_at_a_time:
        backfill_runs.start(OPERATOR)
    assert one_at_a_time.value.details == {"running": run["id"]}
    resumed = backfill_runs.resume(run["id"])
    assert resumed["status"] == "running"
    row = backfill_runs.load(run["id"])
    assert row is not None and int(row.nudges) == 1 and int(row.step) == 0
    # The resume is a record at the same step: the run carries on from it.
    _drive(run["id"])
    with pytest.raises(Conflict):
        backfill_runs.resume(run["id"])
    assert backfill_runs.start(OPERATOR, types=["coupon"])["status"] == "running"  # the guard was released
    # A record of an older step has nothing left to do.
    assert backfill.run_step(run["id"], 0) is None


def test_a_type_the_key_may_not_list_ends_with_its_error_and_the_run_goes_on(fake: FakeProcessor) -> None:
    _account(fake)
    fake.add_fault("list_objects", 403, code="secret_key_required", message="This key may not read coupons.")
    done = _drive(backfill_runs.start(OPERATOR, types=["coupon", "customer"])["id"])
    coupons, customers = done["types"]
    assert coupons["done"] and coupons["seen"] == 0
    assert coupons["last_error"] == {"object_id": None, "type": "permission_error",
                                     "message": "This key may not read coupons."}
    assert customers["applied"] == CUSTOMERS and done["status"] == "completed"
