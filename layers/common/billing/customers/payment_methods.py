"""Payment methods of a customer: attach (de-duplicated by card fingerprint),
detach (a default pointing at it becomes null), and the default."""

from __future__ import annotations

import re
from typing import Any

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from billing.core import clock
from billing.core.errors import Conflict, NotFound, ValidationFailed
from billing.core.pii import scrub
from billing.customers import projections
from billing.customers import records as customers
from billing.data import ledger
from billing.data.ledger import Actor
from billing.data.reads import find
from billing.data.tables import CustomerRow, PaymentMethodRow, connection
from billing.data.transactions import retry_on_conflict
from billing.processor import get_processor
from billing.processor.errors import ProcessorFailure
from billing.processor.mapping import raise_for_processor

PM_ID = re.compile(r"^pm_[A-Za-z0-9_]{1,250}$")


def _check_id(payment_method_id: Any) -> str:
    if not isinstance(payment_method_id, str) or not PM_ID.match(payment_method_id):
        raise ValidationFailed("payment_method_id must look like pm_...", {"payment_method_id": "invalid"})
    return payment_method_id


def _active(customer_id: str) -> list[PaymentMethodRow]:
    return [r for r in PaymentMethodRow.by_customer.query(customer_id) if not r.detached_at]


def _row_from(obj: dict[str, Any], customer: CustomerRow) -> PaymentMethodRow:
    at = clock.iso()
    card = obj.get("card") or {}
    return PaymentMethodRow(
        pk=str(obj["id"]), customer_id=customer.pk, processor_customer_id=customer.processor_id,
        sort_key=f"{at}#{obj['id']}", status="attached", data=scrub(obj), type=obj.get("type"),
        brand=card.get("brand"), last4=card.get("last4"), exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"), fingerprint=card.get("fingerprint"), inserted_at=at, updated_at=at,
    )


def attach(customer_id: str, payment_method_id: Any, actor: Actor) -> tuple[dict[str, Any], bool]:
    """(payment method, created). A card already attached by fingerprint returns the existing one."""
    pm_id = _check_id(payment_method_id)
    customer = customers.load(customer_id)
    if customer.deleted_at or not customer.processor_id:
        raise Conflict(f"customer {customer_id} cannot take payment methods")
    processor = get_processor()
    try:
        obj = processor.attach_payment_method(pm_id, customer_id=customer.processor_id,
                                              idempotency_key=f"pm-attach-{customer.processor_id}-{pm_id}")
    except ProcessorFailure as failure:
        raise_for_processor(failure)
    fingerprint = (obj.get("card") or {}).get("fingerprint")
    for existing in _active(customer_id):
        if existing.pk == obj["id"]:
            return projections.to_api(existing), False
        if fingerprint and existing.fingerprint == fingerprint:
            # The same card twice: keep one. Undo the duplicate at the processor.
            try:
                processor.detach_payment_method(str(obj["id"]), idempotency_key=f"pm-detach-{obj['id']}")
            except ProcessorFailure as failure:
                raise_for_processor(failure)
            return projections.to_api(existing), False
    row = _row_from(obj, customer)
    try:
        with TransactWrite(connection=connection()) as tw:
            tw.save(row, condition=PaymentMethodRow.pk.does_not_exist())
            ledger.append(tw, type_="payment_method.attached", subject_type="customer", subject_id=customer.pk,
                          actor=actor, data={"payment_method_id": row.pk, "brand": row.brand})
    except TransactWriteError:
        # A concurrent attach of the same payment method wrote it first.
        winner = find(PaymentMethodRow, row.pk)
        if winner is None:
            raise
        return projections.to_api(winner), False
    return projections.to_api(row), True


def _load(customer_id: str, pm_id: str) -> PaymentMethodRow:
    row = find(PaymentMethodRow, pm_id)
    if row is None:
        raise NotFound(f"payment method {pm_id} not found")
    if row.customer_id != customer_id:
        raise NotFound(f"payment method {pm_id} not found for customer {customer_id}")
    return row


def detach(customer_id: str, payment_method_id: str, actor: Actor) -> dict[str, Any]:
    pm = _load(customer_id, payment_method_id)
    if pm.detached_at:
        return projections.to_api(pm)
    try:
        get_processor().detach_payment_method(pm.pk, idempotency_key=f"pm-detach-{pm.pk}")
    except ProcessorFailure as failure:
        if failure.code != "resource_missing":
            raise_for_processor(failure)

    def record() -> dict[str, Any]:
        pm = _load(customer_id, payment_method_id)
        customer = customers.load(customer_id)
        pm.detached_at = pm.updated_at = clock.iso()
        pm.status = "detached"
        with TransactWrite(connection=connection()) as tw:
            tw.save(pm)
            cleared = customer.default_payment_method_id == pm.pk
            if cleared:
                # ON DELETE SET NULL: the default cannot outlive its payment method.
                customer.default_payment_method_id = None
                customer.updated_at = pm.updated_at
                tw.save(customer)
            ledger.append(tw, type_="payment_method.detached", subject_type="customer", subject_id=customer_id,
                          actor=actor, data={"payment_method_id": pm.pk, "default_cleared": cleared})
        return projections.to_api(pm)

    return retry_on_conflict(record, subject="the customer")


def set_default(customer_id: str, payment_method_id: Any, actor: Actor) -> dict[str, Any]:
    pm_id = _check_id(payment_method_id)
    customer = customers.load(customer_id)
    if customer.deleted_at:
        raise Conflict(f"customer {customer_id} is deleted")
    try:
        pm = _load(customer_id, pm_id)
    except NotFound:
        pm = None
    if pm is None or pm.detached_at:
        raise Conflict(f"payment method {pm_id} is not attached to customer {customer_id}",
                       {"payment_method_id": pm_id}, type_="not_attached")
    try:
        get_processor().update_customer(
            str(customer.processor_id), idempotency_key=None,
            fields={"invoice_settings": {"default_payment_method": pm_id}})
    except ProcessorFailure as failure:
        raise_for_processor(failure)

    def record() -> dict[str, Any]:
        customer = customers.load(customer_id)
        if customer.default_payment_method_id == pm_id:
            return customers.to_api(customer)
        customer.default_payment_method_id = pm_id
        customer.updated_at = clock.iso()
        try:
            with TransactWrite(connection=connection()) as tw:
                tw.save(customer)
                # The payment method must still be attached when the default lands.
                tw.condition_check(PaymentMethodRow, pm_id, condition=PaymentMethodRow.detached_at.does_not_exist())
                ledger.append(tw, type_="customer.default_payment_method_set", subject_type="customer",
                              subject_id=customer_id, actor=actor, data={"payment_method_id": pm_id})
        except TransactWriteError:
            if _load(customer_id, pm_id).detached_at:
                raise Conflict(f"payment method {pm_id} was detached", type_="not_attached") from None
            raise
        return customers.to_api(customer)

    return retry_on_conflict(record, subject="the customer")


def list_for(customer_id: str) -> list[dict[str, Any]]:
    customers.load(customer_id)
    return list_active(customer_id)


def list_active(customer_id: str) -> list[dict[str, Any]]:
    """The attached payment methods of a customer already read: one query."""
    return [projections.to_api(r) for r in _active(customer_id)]


def get(payment_method_id: str) -> dict[str, Any]:
    """One payment method by its processor id (attached or detached)."""
    row = find(PaymentMethodRow, payment_method_id)
    if row is None:
        raise NotFound(f"payment method {payment_method_id} not found")
    return projections.to_api(row)
