"""Customers' domain logic in-process (moto, the Fake): the rules that hold
whatever the transport."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from billing.core.errors import Conflict, PreconditionFailed, ValidationFailed
from billing.customers import create, payment_methods, records, update
from billing.customers.keys import CustomerAttrs
from billing.data.ledger import Actor
from billing.data.tables import LedgerRow
from devstack.fake_stripe import FakeProcessor

API = Actor("api", "arn:aws:iam::123456789012:user/test")


def _ledger(customer_id: str) -> list[str]:
    return [row.type for row in LedgerRow.query(f"customer#{customer_id}")]


def test_fetch_or_create_is_one_customer_under_concurrency(fake: FakeProcessor) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: create.fetch_or_create("Team", "t-1", CustomerAttrs(), API), range(8)))
    ids = {body["id"] for body, _ in results}
    assert len(ids) == 1
    assert sum(created for _, created in results) == 1
    creates = [c for c in fake.calls if c["operation"] == "create_customer"]
    assert len({c["idempotency_key"] for c in creates}) == 1  # every caller asked for the same customer
    assert fake.snapshot()["customers"] == 1  # idempotent at the processor too
    assert _ledger(ids.pop()) == ["customer.created"]


def test_explicit_create_for_a_linked_owner_is_409(fake: FakeProcessor) -> None:
    create.fetch_or_create("User", "u-1", CustomerAttrs(email="a@example.com"), API)
    with pytest.raises(Conflict):
        create.create("User", "u-1", CustomerAttrs(), API)


def test_stale_lock_version_is_412_and_writes_nothing(fake: FakeProcessor) -> None:
    body, _ = create.fetch_or_create("User", "u-2", CustomerAttrs(), API)
    update.update(body["id"], {"name": "First"}, expected_version=body["lock_version"], actor=API)
    with pytest.raises(PreconditionFailed) as stale:
        update.update(body["id"], {"name": "Second"}, expected_version=body["lock_version"], actor=API)
    assert stale.value.details == {"lock_version": body["lock_version"] + 2}  # the claim, then the write
    current = records.get(body["id"], [])
    assert current["name"] == "First"
    assert _ledger(body["id"]) == ["customer.created", "customer.updated"]


def test_update_merges_metadata_and_refuses_the_owner_keys(fake: FakeProcessor) -> None:
    body, _ = create.fetch_or_create("User", "u-3", CustomerAttrs(metadata={"plan": "pro", "seats": "3"}), API)
    after = update.update(body["id"], {"metadata": {"seats": None, "region": "eu"}}, expected_version=None,
                          actor=API)
    assert after["metadata"] == {"plan": "pro", "region": "eu"}
    with pytest.raises(ValidationFailed):
        update.update(body["id"], {"metadata": {"owner_id": "someone-else"}}, expected_version=None, actor=API)


def test_delete_releases_the_owner_for_a_new_customer(fake: FakeProcessor) -> None:
    first, _ = create.fetch_or_create("Org", "o-1", CustomerAttrs(), API)
    deleted = update.delete(first["id"], API)
    assert deleted["deleted_at"] is not None and deleted["updated_at"] == deleted["deleted_at"]
    again, created = create.fetch_or_create("Org", "o-1", CustomerAttrs(), API)
    assert created and again["id"] != first["id"] and again["processor_id"] != first["processor_id"]


def test_same_card_twice_is_one_payment_method_and_detach_clears_the_default(fake: FakeProcessor) -> None:
    customer, _ = create.fetch_or_create("User", "u-4", CustomerAttrs(), API)
    pm, created = payment_methods.attach(customer["id"], "pm_card_visa", API)
    again, created_again = payment_methods.attach(customer["id"], "pm_card_visa", API)
    assert created and not created_again and again["id"] == pm["id"] == pm["processor_id"]
    payment_methods.set_default(customer["id"], pm["id"], API)
    payment_methods.detach(customer["id"], pm["id"], API)
    assert records.get(customer["id"], [])["default_payment_method_id"] is None
    assert "fingerprint" not in str(records.get(customer["id"], ["payment_methods"]))


def test_lists_and_their_cursors(fake: FakeProcessor) -> None:
    for n in range(5):
        create.fetch_or_create("Batch", f"b-{n}", CustomerAttrs(email="same@example.com"), API)
    first, cursor = records.list_customers({"email": "same@example.com"}, limit=3, cursor=None,
                                           include_deleted=False)
    assert len(first) == 3 and cursor
    second, last = records.list_customers({"email": "same@example.com"}, limit=3, cursor=cursor,
                                          include_deleted=False)
    assert len(second) == 2 and last is None
    assert not {c["id"] for c in first} & {c["id"] for c in second}
    with pytest.raises(ValidationFailed):  # a cursor of another list
        records.list_customers({"email": "other@example.com"}, limit=3, cursor=cursor, include_deleted=False)
