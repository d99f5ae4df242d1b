"""Coupons and promotion codes in-process (moto, the Fake): one record per
processor object whichever path writes it first, and the code guard."""

from __future__ import annotations

import pytest

from billing.core.errors import Conflict
from billing.data.ledger import Actor
from billing.data.tables import PromotionCodeRow
from billing.promotions import codes, coupons, listing, recording
from billing.promotions.codes import NewPromotionCode
from billing.promotions.coupons import NewCoupon
from devstack.fake_stripe import FakeProcessor

API = Actor("api", "arn:aws:iam::123456789012:user/test")


def test_a_row_the_webhook_wrote_first_is_adopted_not_duplicated(fake: FakeProcessor) -> None:
    coupon = coupons.create(NewCoupon(percent_off=20.0, duration="once"), API)
    obj = fake.create_promotion_code(idempotency_key="elsewhere", params={
        "promotion": {"type": "coupon", "coupon": coupon["id"]}, "code": "SPRING", "active": True})
    # The webhook path recorded it (no create_key); the user path's answer arrives after.
    webhook_row = PromotionCodeRow(pk=obj["id"], inserted_at="2026-01-01T00:00:00.000Z",
                                   updated_at="2026-01-01T00:00:00.000Z", code="SPRING", code_key="SPRING",
                                   active=True, data={"id": obj["id"]}, last_stripe_event_ts=1,
                                   last_stripe_event_id="evt_1")
    webhook_row.save()
    adopted = recording.record(codes.RECORDING, obj, "create-key-1", API)
    assert adopted.pk == obj["id"] and adopted.create_key == "create-key-1"
    assert adopted.coupon_id == coupon["id"]  # filled in: the webhook's row left it empty
    assert adopted.last_stripe_event_id == "evt_1"  # the webhook's newer state is kept
    # The same key again is the same request retried: its row, not a conflict.
    assert recording.record(codes.RECORDING, obj, "create-key-1", API).lock_version == adopted.lock_version
    with pytest.raises(Conflict) as again:
        recording.record(codes.RECORDING, obj, "create-key-2", API)
    assert again.value.details["reason"] == "duplicate_processor_id"


def test_an_active_code_is_unique_ignoring_case_until_deactivated(fake: FakeProcessor) -> None:
    coupon = coupons.create(NewCoupon(amount_off=500, currency="usd", duration="once"), API)
    first = codes.create(NewPromotionCode(code="Welcome", coupon=coupon["id"]), API)
    with pytest.raises(Conflict) as taken:
        codes.create(NewPromotionCode(code="WELCOME", coupon=coupon["id"]), API)
    assert taken.value.details["reason"] == "duplicate_code"
    codes.update(first["id"], active=False, metadata_update=None, expected_version=None, actor=API)
    second = codes.create(NewPromotionCode(code="WELCOME", coupon=coupon["id"]), API)
    assert second["id"] != first["id"]
    assert listing.check("welcome", None) == {"valid": True, "reason": None}
    found, _ = listing.list_codes(active=None, code="welcome", coupon=None, sort="expires_at", order="asc",
                                  limit=10, cursor=None)
    assert {r["id"] for r in found} == {first["id"], second["id"]}


def test_check_reasons(fake: FakeProcessor) -> None:
    assert listing.check("NOPE", None) == {"valid": False, "reason": "not_found"}
    coupon = coupons.create(NewCoupon(percent_off=10.0, duration="forever"), API)
    code = codes.create(NewPromotionCode(code="LIMITED", coupon=coupon["id"], active=False), API)
    assert listing.check("LIMITED", None) == {"valid": False, "reason": "inactive"}
    assert code["active"] is False
