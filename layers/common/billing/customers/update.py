"""Changing customers: the user path's update (optimistic locking, If-Match),
tax location and soft delete, and the webhook path's put_data/patch_data.

Every change goes through _change: read the row, let the change decide
(nothing to do, a domain error, or the ledger data of what changed), write
the row on condition of the version read, with its ledger row, in one
transaction; a lost race re-reads and decides again, so concurrent writers
(the API and a webhook, say) never lose each other's change."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError
from pynamodb.exceptions import PynamoDBException, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from billing.core import clock, idempotency, metadata
from billing.core.errors import Conflict, PreconditionFailed, ValidationFailed
from billing.core.observability import logger
from billing.core.pii import scrub
from billing.customers.create import add_owner_release
from billing.customers.keys import RESERVED_METADATA, owner_key
from billing.customers.records import load, to_api
from billing.customers.stripe_held import answer_watermark, apply_columns
from billing.data import ledger
from billing.data.cancellation import condition_failed, error_code
from billing.data.ledger import Actor
from billing.data.tables import CustomerRow, connection
from billing.data.transactions import retry_on_conflict
from billing.processor import get_processor
from billing.processor.errors import ProcessorFailure
from billing.processor.mapping import raise_for_processor

# Decides a change on the row as read, at a time (the row's new updated_at):
# None when there is nothing to write, else the ledger row's data.
Mutation = Callable[[CustomerRow, str], dict[str, Any] | None]


def _change(customer_id: str, mutate: Mutation, ledger_type: str, actor: Actor, *,
            expected_version: int | None = None,
            also: Callable[[TransactWrite, CustomerRow], None] | None = None) -> CustomerRow:
    """Apply `mutate` to the current row until its version-conditional write
    lands. With `expected_version` (If-Match), a stale version is 412 and
    nothing is written, before or during the write."""

    def attempt() -> CustomerRow:
        row = load(customer_id)
        if expected_version is not None and row.lock_version != expected_version:
            raise PreconditionFailed(
                f"lock_version {expected_version} is stale; the customer is at {row.lock_version}",
                {"lock_version": row.lock_version})
        at = clock.iso()
        data = mutate(row, at)
        if data is None:
            return row
        row.updated_at = at
        try:
            with TransactWrite(connection=connection()) as tw:
                tw.save(row)  # conditional on the lock_version read above
                if also is not None:
                    also(tw, row)
                ledger.append(tw, type_=ledger_type, subject_type="customer", subject_id=row.pk, actor=actor,
                              data=data)
        except TransactWriteError as exc:
            if expected_version is not None and condition_failed(exc):
                raise PreconditionFailed("the customer changed concurrently",
                                         {"lock_version": load(customer_id).lock_version}) from None
            raise
        return row

    return retry_on_conflict(attempt, subject="the customer")


# PATCH fields Stripe holds (they go to Stripe first) and those only this deployment holds.
STRIPE_FIELDS = ("email", "name", "tax_exempt", "preferred_locale", "metadata")
LOCAL_FIELDS = ("currency", "preferred_timezone")


def _check_version(row: CustomerRow, expected_version: int | None) -> None:
    if expected_version is not None and row.lock_version != expected_version:
        raise PreconditionFailed(f"lock_version {expected_version} is stale; the customer is at {row.lock_version}",
                                 {"lock_version": row.lock_version})


def _merged_metadata(row: CustomerRow, delta: dict[str, Any]) -> dict[str, str]:
    """Stripe's merge of a metadata delta, refused (422) when it would set the owner keys."""
    merged = metadata.merge(row.metadata or {}, delta)
    if set(merged) & set(RESERVED_METADATA) - set(row.metadata or {}):
        raise ValidationFailed("invalid metadata: owner_type, owner_id",
                               {"metadata": {"owner_type": "reserved", "owner_id": "reserved"}})
    return merged


def _stripe_params(row: CustomerRow, changes: dict[str, Any]) -> dict[str, Any]:
    """Stripe's update parameters for the Stripe-held fields that differ from
    the row (None unsets, as on Stripe; tax_exempt has no unset: "none")."""
    params: dict[str, Any] = {}
    for name in ("email", "name"):
        if name in changes and changes[name] != getattr(row, name):
            params[name] = changes[name]
    if "tax_exempt" in changes and (changes["tax_exempt"] or "none") != (row.tax_exempt or "none"):
        params["tax_exempt"] = changes["tax_exempt"] or "none"
    if "preferred_locale" in changes and changes["preferred_locale"] != row.preferred_locale:
        params["preferred_locales"] = [changes["preferred_locale"]] if changes["preferred_locale"] else None
    if changes.get("metadata") is not None and _merged_metadata(row, changes["metadata"]) != (row.metadata or {}):
        params["metadata"] = changes["metadata"]
    return params


def _check_currency(row: CustomerRow, changes: dict[str, Any]) -> None:
    """Stripe sets a customer's currency with its first invoice or
    subscription and never changes it; before that the currency is ours."""
    held = (row.data or {}).get("currency")
    if "currency" in changes and isinstance(held, str) and held and changes["currency"] != held:
        raise Conflict(f"the customer's currency is {held} at Stripe, which cannot change it",
                       {"currency": held})


def _update_key(customer_id: str, version: int, params: dict[str, Any]) -> str:
    """The Stripe idempotency key of a PATCH: the operation, the customer, the
    version it was sent on and the request (billing.core.idempotency), so the
    same request retried is the same Stripe call."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    return idempotency.processor_key("customer-update", customer_id, str(version), digest)


def _claim(row: CustomerRow, key: str) -> None:
    """Take the version read before calling Stripe: a conditional write that
    bumps lock_version and names the claiming request (its Stripe key), so a
    second PATCH with the same If-Match is 412 here, before it reaches
    Stripe. It changes no column and writes no ledger row: a request that
    dies after it leaves a row whose new ETag works (and its own retry
    resumes), and Stripe's customer.updated settles whatever Stripe ended with."""
    try:
        row.update(actions=[CustomerRow.patch_claim.set(key)])  # + lock_version, on the version read
    except UpdateError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        raise PreconditionFailed("the customer changed concurrently",
                                 {"lock_version": load(row.pk).lock_version}) from None


def _release(customer_id: str, version: int, key: str) -> None:
    """Give the claimed version back when the PATCH failed after its claim
    (Stripe refused it or was unreachable, the row write was throttled): the
    claim changed no column, so the ETag the caller holds is current again
    and the same request can be sent again. Only the claim's own version is
    reset (a raw UpdateItem: PynamoDB's version attribute only counts up);
    anything written since keeps the version it has. A request that dies
    instead leaves the claim, and the row's new ETag works."""
    try:
        # The model's table connection (its schema known, no DescribeTable).
        CustomerRow._get_connection().update_item(
            customer_id,
            actions=[CustomerRow.lock_version.set(version), CustomerRow.patch_claim.remove()],
            condition=(CustomerRow.lock_version == version + 1) & (CustomerRow.patch_claim == key))
    except (PynamoDBException, ClientError) as exc:
        # Lost (a newer write) or unavailable: the row's new ETag works either way.
        logger.warning("PATCH claim kept", extra={"customer_id": customer_id, "error_type": type(exc).__name__})


def _resumes_claim(row: CustomerRow, changes: dict[str, Any], expected_version: int | None) -> bool:
    """The same request again (its Idempotency-Key) after it claimed the
    version and died before writing Stripe's answer: nothing else wrote since."""
    if expected_version is None or row.patch_claim is None or row.lock_version != expected_version + 1:
        return False
    try:
        params = _stripe_params(row, changes)
    except ValidationFailed:
        return False
    return row.patch_claim == _update_key(row.pk, expected_version, params)


def _send_to_stripe(row: CustomerRow, params: dict[str, Any], key: str) -> dict[str, Any]:
    """Stripe first, under the request's key (_update_key). A refusal changes nothing here."""
    try:
        return get_processor().update_customer(str(row.processor_id), idempotency_key=key, fields=params)
    except ProcessorFailure as failure:
        raise_for_processor(failure)


def update(customer_id: str, changes: dict[str, Any], *, expected_version: int | None, actor: Actor
           ) -> dict[str, Any]:
    """PATCH: the fields Stripe holds go to Stripe first, then the row and its
    ledger row in one transaction; fields only this deployment holds
    (preferred_timezone; currency until Stripe has one) go to the row only,
    and a change of only those never calls Stripe.

    With an expected version (If-Match or body lock_version) a stale one is
    412 before Stripe is called, and nothing is written; a Stripe change
    claims that version first (_claim), so of concurrent PATCHes with one
    ETag one reaches Stripe and the others are 412. The row takes
    Stripe's answer (the columns Stripe holds, and in `data` the fields
    sent) with the answer's time as its watermark, so Stripe's
    customer.updated for this very change settles without a second change
    (billing.webhooks.customers), and an older event arriving late is stale.
    The ledger row names the columns that changed. A write that loses a race after
    Stripe answered re-reads and applies again (Stripe has the change); a
    newer Stripe state already on the row is kept.
    """
    row = load(customer_id)
    resumed = _resumes_claim(row, changes, expected_version)
    if not resumed:
        _check_version(row, expected_version)
    if row.deleted_at:
        raise Conflict(f"customer {customer_id} is deleted")
    _check_currency(row, changes)
    params = _stripe_params(row, changes)
    answer: dict[str, Any] | None = None
    answered_at, answer_mark = 0, ""
    claimed: tuple[int, str] | None = None
    if params and row.processor_id:
        key = _update_key(row.pk, expected_version if resumed and expected_version is not None
                          else int(row.lock_version or 0), params)
        if expected_version is not None:
            if not resumed:
                _claim(row, key)
            claimed = (expected_version, key)
        try:
            answer = _send_to_stripe(row, params, key)
        except Exception:
            if claimed is not None:
                _release(customer_id, *claimed)
            raise
        answered_at, answer_mark = answer_watermark()

    def mutate(current: CustomerRow, at: str) -> dict[str, Any] | None:
        if current.deleted_at:
            raise Conflict(f"customer {customer_id} is deleted")
        _check_currency(current, changes)
        changed: list[str] = []
        for name in LOCAL_FIELDS:
            if name in changes and getattr(current, name) != changes[name]:
                setattr(current, name, changes[name])
                changed.append(name)
        if answer is not None:
            newer_on_row = current.last_stripe_event_ts is not None and current.last_stripe_event_ts > answered_at
            if not newer_on_row:  # else the row already holds a later Stripe state, this change included
                # `data` takes the answer's values of what was sent; the rest of
                # it follows Stripe's events, as before the PATCH.
                clean = scrub(answer)
                current.data = {**(current.data or {}), **{k: clean.get(k) for k in params}}
                changed += apply_columns(current, answer)
                current.last_stripe_event_ts, current.last_stripe_event_id = answered_at, answer_mark
        elif params:  # no processor customer to send them to: the row is all there is
            for name in ("email", "name", "tax_exempt", "preferred_locale"):
                if name in changes and getattr(current, name) != changes[name]:
                    setattr(current, name, changes[name])
                    changed.append(name)
            if changes.get("metadata") is not None:
                merged = _merged_metadata(current, changes["metadata"])
                if merged != (current.metadata or {}):
                    current.metadata = merged
                    changed.append("metadata")
        if not changed:
            return None
        current.owner_key = owner_key(current.owner_type, current.owner_id) \
            if current.owner_type and current.owner_id else None
        return {"changed_fields": changed}

    # After Stripe answered, a lost race re-reads and applies again; before
    # (nothing sent), the expected version holds to the write.
    guarded = expected_version if answer is None else None
    try:
        return to_api(_change(customer_id, mutate, "customer.updated", actor, expected_version=guarded))
    except Exception:
        if claimed is not None:
            _release(customer_id, *claimed)
        raise


def put_data(customer_id: str, data: dict[str, Any], actor: Actor) -> dict[str, Any]:
    """Replace `data` with a whole processor object (webhook path; no required-field checks)."""

    def mutate(row: CustomerRow, at: str) -> dict[str, Any] | None:
        clean = scrub(data)
        if clean == row.data:
            return None
        row.data = clean
        return {"changed_fields": ["data"]}

    return to_api(_change(customer_id, mutate, "customer.data_replaced", actor))


def patch_data(customer_id: str, partial: dict[str, Any], actor: Actor) -> dict[str, Any]:
    """Shallow-merge a delta into `data` (webhook path)."""

    def mutate(row: CustomerRow, at: str) -> dict[str, Any] | None:
        merged = {**(row.data or {}), **scrub(partial)}
        if merged == row.data:
            return None
        row.data = merged
        return {"changed_fields": sorted(f"data.{k}" for k in scrub(partial))}

    return to_api(_change(customer_id, mutate, "customer.data_patched", actor))


ADDRESS_FIELDS = ("line1", "line2", "city", "state", "postal_code", "country")


def _digest(customer_id: str, name: str, value: str) -> str:
    # Enough to tell which address fields changed without keeping the address.
    return hashlib.sha256(f"{customer_id}\x00{name}\x00{value}".encode()).hexdigest()[:16]


def update_tax_location(customer_id: str, address: dict[str, str], actor: Actor) -> dict[str, Any]:
    row = load(customer_id)
    if row.deleted_at:
        raise Conflict(f"customer {customer_id} is deleted")
    if not row.processor_id:
        raise Conflict(f"customer {customer_id} has no processor customer")
    digest = {k: _digest(row.pk, k, str(v)) for k, v in address.items() if v}
    previous = row.tax_location_digest or {}
    changed = sorted(k for k in set(digest) | set(previous) if digest.get(k) != previous.get(k))
    # From the request (its Idempotency-Key, else a fresh one), never from the
    # address alone: Stripe replays a key for 24 h, so setting A, B, then A
    # again under A's first key would answer A and leave Stripe at B.
    key = idempotency.processor_key("tax-location", str(row.processor_id),
                                    json.dumps(sorted(digest.items())))
    try:
        obj = get_processor().update_tax_location(row.processor_id, address=address, idempotency_key=key)
    except ProcessorFailure as failure:
        if failure.code == "customer_tax_location_invalid":
            raise ValidationFailed("the tax location is not valid", {"address": failure.message},
                                   type_="tax_location_invalid") from None
        raise_for_processor(failure)

    answered_at, answer_mark = answer_watermark()

    def mutate(current: CustomerRow, at: str) -> dict[str, Any] | None:
        if not (current.last_stripe_event_ts is not None and current.last_stripe_event_ts > answered_at):
            # Stripe's answer, with its watermark: the customer.updated Stripe
            # sends for this change settles without a second ledger row.
            current.data = scrub(obj)
            current.last_stripe_event_ts, current.last_stripe_event_id = answered_at, answer_mark
        current.tax_location_digest = digest
        # The ledger lists field names only: the address itself is never stored.
        return {"changed_fields": changed} if changed else None

    return to_api(_change(customer_id, mutate, "customer.tax_location_updated", actor))


def delete(customer_id: str, actor: Actor) -> dict[str, Any]:
    row = load(customer_id)
    if row.deleted_at:
        return to_api(row)
    if row.processor_id:
        try:
            get_processor().delete_customer(row.processor_id, idempotency_key=f"customer-delete-{row.pk}")
        except ProcessorFailure as failure:
            if failure.code != "resource_missing":
                raise_for_processor(failure)

    def mutate(current: CustomerRow, at: str) -> dict[str, Any] | None:
        if current.deleted_at:
            return None
        current.deleted_at = at
        return {"processor_id": current.processor_id}

    # The owner is released with it, so a later fetch-or-create makes a new customer.
    return to_api(_change(customer_id, mutate, "customer.deleted", actor, also=add_owner_release))
