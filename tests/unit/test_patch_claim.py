"""PATCH with If-Match claims the version before calling Stripe: another
request on the same ETag is 412 without reaching Stripe, while the claiming
request's own retry (its Idempotency-Key) resumes after a lost answer."""

from __future__ import annotations

import pytest

from billing.core import idempotency
from billing.core.errors import PreconditionFailed, ValidationFailed
from billing.customers import records, update
from devstack.fake_stripe import FakeProcessor
from devstack.fake_stripe.faults import ProcessCrash
from tests.unit.test_customer_stripe_sync import API, _customer, _ledger, _updates, hooks  # noqa: F401
from tests.unit.webhook_delivery import Deliverer


def test_after_a_crash_only_the_claiming_request_resumes(fake: FakeProcessor, hooks: Deliverer) -> None:  # noqa: F811
    customer = _customer(hooks, "claim-1")
    version = customer["lock_version"]
    fake.add_fault("update_customer", 500, crash=True)  # Stripe took it; the process died
    with idempotency.request("claim-key-1", scope="test"), pytest.raises(ProcessCrash):
        update.update(customer["id"], {"name": "Mine"}, expected_version=version, actor=API)
    claimed = records.get(customer["id"], [])
    assert claimed["lock_version"] == version + 1 and claimed["name"] is None
    assert [r.type for r in _ledger(customer["id"])] == ["customer.created"]  # the claim wrote no ledger row

    with idempotency.request("another-key", scope="test"), pytest.raises(PreconditionFailed):
        update.update(customer["id"], {"name": "Mine"}, expected_version=version, actor=API)
    assert len(_updates(fake)) == 1  # refused before Stripe

    with idempotency.request("claim-key-1", scope="test"):
        after = update.update(customer["id"], {"name": "Mine"}, expected_version=version, actor=API)
    first, again = _updates(fake)
    assert first["idempotency_key"] == again["idempotency_key"]
    assert after["name"] == "Mine" and after["lock_version"] == version + 2
    with idempotency.request("claim-key-1", scope="test"), pytest.raises(PreconditionFailed):
        update.update(customer["id"], {"name": "Mine"}, expected_version=version, actor=API)


def test_a_patch_that_fails_after_its_claim_gives_the_version_back(fake: FakeProcessor,
                                                                  hooks: Deliverer) -> None:  # noqa: F811
    customer = _customer(hooks, "claim-2")
    version = customer["lock_version"]
    fake.add_fault("update_customer", 400, code="email_invalid", message="Invalid email address")
    with pytest.raises(ValidationFailed):
        update.update(customer["id"], {"email": "x@example.com"}, expected_version=version, actor=API)
    assert records.get(customer["id"], [])["lock_version"] == version  # the caller's ETag holds again
    fake.add_fault("update_customer", 500, after=True)  # Stripe took it; the answer was lost
    with pytest.raises(Exception, match="unavailable"):
        update.update(customer["id"], {"name": "Lost"}, expected_version=version, actor=API)
    assert records.get(customer["id"], [])["lock_version"] == version
    after = update.update(customer["id"], {"name": "Lost"}, expected_version=version, actor=API)
    assert after["name"] == "Lost" and after["lock_version"] == version + 2
