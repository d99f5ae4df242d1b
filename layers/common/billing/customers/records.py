"""Customers: the link between a host application's billable record (its owner)
and a processor customer, with fetch-or-create, optimistic locking, soft
delete and the webhook path's put_data/patch_data."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from billing.core import clock, ids, metadata
from billing.core.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from billing.core.observability import logger
from billing.core.pii import scrub
from billing.data import ledger
from billing.data.ledger import Actor
from billing.data.tables import (
    ChargeRow,
    CustomerRow,
    GuardRow,
    InvoiceRow,
    PaymentMethodRow,
    SubscriptionRow,
    connection,
)
from billing.processor import get_processor, processor_name
from billing.processor.errors import ProcessorFailure
from billing.processor.mapping import raise_for_processor

RESERVED_METADATA = ("owner_type", "owner_id")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_OWNER_LENGTH = 255
CONFLICT_RETRIES = 12


def backoff(attempt: int) -> None:
    """Full jitter: two writers that collided should not collide again in step."""
    time.sleep(random.uniform(0, min(0.3, 0.01 * 2**attempt)))  # noqa: S311 - jitter, not security


@dataclass
class CustomerAttrs:
    """What a caller may set on a customer (all optional)."""

    email: str | None = None
    name: str | None = None
    currency: str | None = None
    tax_exempt: str | None = None
    preferred_locale: str | None = None
    preferred_timezone: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


# -- keys --------------------------------------------------------------------------


def validate_owner(owner_type: str, owner_id: str) -> None:
    problems = {}
    for name, value in (("owner_type", owner_type), ("owner_id", owner_id)):
        if not value:
            problems[name] = "must not be empty"
        elif len(value) > MAX_OWNER_LENGTH:
            problems[name] = f"longer than {MAX_OWNER_LENGTH} characters"
        elif _CONTROL.search(value):
            problems[name] = "contains control characters"
    if problems:
        raise ValidationFailed(f"invalid owner: {', '.join(sorted(problems))}", {"fields": problems})


def owner_key(owner_type: str, owner_id: str) -> str:
    # JSON keeps any character in either part unambiguous (no separator to escape).
    return json.dumps([owner_type, owner_id], ensure_ascii=False)


def _owner_guard(processor: str, owner_type: str, owner_id: str) -> str:
    return "guard#owner#" + json.dumps([processor, owner_type, owner_id], ensure_ascii=False)


def _processor_guard(processor: str, processor_id: str) -> str:
    return f"guard#processor_id#{processor}#{processor_id}"


def create_idempotency_key(processor: str, owner_type: str, owner_id: str, generation: int) -> str:
    """Derived from the owner, so concurrent creators get one processor customer."""
    digest = hashlib.sha256(json.dumps([processor, owner_type, owner_id, generation]).encode()).hexdigest()
    return f"customer-create-{digest[:48]}"




# -- serialisation ------------------------------------------------------------------


def to_api(row: CustomerRow) -> dict[str, Any]:
    return {
        "id": row.pk, "owner_type": row.owner_type, "owner_id": row.owner_id, "processor": row.processor,
        "processor_id": row.processor_id, "email": row.email, "name": row.name, "currency": row.currency,
        "tax_exempt": row.tax_exempt, "preferred_locale": row.preferred_locale,
        "preferred_timezone": row.preferred_timezone, "metadata": row.metadata or {}, "data": row.data or {},
        "default_payment_method_id": row.default_payment_method_id, "lock_version": row.lock_version,
        "last_stripe_event_ts": int(row.last_stripe_event_ts) if row.last_stripe_event_ts is not None else None,
        "last_stripe_event_id": row.last_stripe_event_id, "inserted_at": row.inserted_at,
        "updated_at": row.updated_at, "deleted_at": row.deleted_at,
    }


def encode_cursor(key: dict[str, Any] | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode() if key else None


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("cursor is not one this API issued", {"cursor": "invalid"}) from None
    if not isinstance(key, dict):
        raise ValidationFailed("cursor is not one this API issued", {"cursor": "invalid"})
    return key


# -- reads ---------------------------------------------------------------------------


def load(customer_id: str, *, consistent: bool = True) -> CustomerRow:
    try:
        row = CustomerRow.get(customer_id, consistent_read=consistent)
    except DoesNotExist:
        raise NotFound(f"customer {customer_id} not found") from None
    if row.kind != "customer":
        raise NotFound(f"customer {customer_id} not found")
    return row


def find_by_owner(owner_type: str, owner_id: str, processor: str | None = None) -> CustomerRow | None:
    processor = processor or processor_name()
    try:
        guard = GuardRow.get(_owner_guard(processor, owner_type, owner_id), consistent_read=True)
    except DoesNotExist:
        return None
    return load(guard.customer_id) if guard.customer_id else None


def find_by_processor_id(processor_id: str) -> CustomerRow | None:
    try:
        guard = GuardRow.get(_processor_guard(processor_name(), processor_id), consistent_read=True)
    except DoesNotExist:
        return None
    return load(guard.customer_id) if guard.customer_id else None


_INCLUDES: dict[str, type[PaymentMethodRow] | type[SubscriptionRow] | type[InvoiceRow] | type[ChargeRow]] = {
    "payment_methods": PaymentMethodRow, "subscriptions": SubscriptionRow,
    "invoices": InvoiceRow, "charges": ChargeRow,
}


def parse_includes(raw: str | None) -> list[str]:
    names = [n.strip() for n in (raw or "").split(",") if n.strip()]
    unknown = sorted(set(names) - set(_INCLUDES))
    if unknown:
        raise ValidationFailed(f"unknown include: {', '.join(unknown)}",
                               {"include": f"allowed: {', '.join(_INCLUDES)}"})
    return names


def get(customer_id: str, includes: list[str]) -> dict[str, Any]:
    from billing.customers import projections

    body = to_api(load(customer_id))
    for name in includes:
        body[name] = projections.list_for_customer(_INCLUDES[name], customer_id)
    return body


def list_customers(filters: dict[str, str], *, limit: int, cursor: str | None,
                   include_deleted: bool) -> tuple[list[dict[str, Any]], str | None]:
    """Served by an index for every filter; the remaining filters narrow the page."""
    start = decode_cursor(cursor)
    condition: Any = None if include_deleted else CustomerRow.deleted_at.does_not_exist()
    if "owner_type" in filters or "owner_id" in filters:
        if not ("owner_type" in filters and "owner_id" in filters):
            raise ValidationFailed("owner_type and owner_id filter together", {"owner": "give both"})
        index, hash_key = "by_owner", owner_key(filters["owner_type"], filters["owner_id"])
    elif "processor_id" in filters:
        index, hash_key = "by_processor_id", filters["processor_id"]
    elif "email" in filters:
        index, hash_key = "by_email", filters["email"]
    elif "currency" in filters:
        index, hash_key = "by_currency", filters["currency"]
    else:
        index, hash_key = "by_inserted", "customer"
    for name, attr in (("email", CustomerRow.email), ("currency", CustomerRow.currency)):
        if name in filters and index != f"by_{name}":
            term = attr == filters[name]
            condition = term if condition is None else condition & term
    found = getattr(CustomerRow, index).query(hash_key, filter_condition=condition, limit=limit, page_size=limit,
                                              last_evaluated_key=start, scan_index_forward=False)
    rows = list(found)
    return [to_api(r) for r in rows], encode_cursor(found.last_evaluated_key)


# -- writes --------------------------------------------------------------------------


def _new_row(customer_id: str, owner_type: str | None, owner_id: str | None, processor: str,
             processor_obj: dict[str, Any], attrs: CustomerAttrs) -> CustomerRow:
    at = clock.iso()
    return CustomerRow(
        pk=customer_id, owner_type=owner_type, owner_id=owner_id,
        owner_key=owner_key(owner_type, owner_id) if owner_type and owner_id else None,
        processor=processor, processor_id=processor_obj.get("id"),
        email=attrs.email, name=attrs.name, currency=attrs.currency, tax_exempt=attrs.tax_exempt,
        preferred_locale=attrs.preferred_locale, preferred_timezone=attrs.preferred_timezone,
        metadata=attrs.metadata, data=scrub(processor_obj), inserted_at=at, updated_at=at,
    )


def _check_attrs(attrs: CustomerAttrs) -> None:
    reserved = sorted(set(attrs.metadata) & set(RESERVED_METADATA))
    if reserved:
        raise ValidationFailed(f"invalid metadata: {', '.join(reserved)}",
                               {"metadata": dict.fromkeys(reserved, "reserved for the owner link")})
    metadata.validate(attrs.metadata)
    if len(attrs.metadata) + len(RESERVED_METADATA) > metadata.MAX_KEYS:
        raise ValidationFailed("invalid metadata: too many keys",
                               {"metadata": {"metadata": f"at most {metadata.MAX_KEYS - 2} keys"}})


def _cancelled_codes(exc: TransactWriteError) -> list[str | None]:
    return [getattr(r, "code", None) if r else None for r in (exc.cancellation_reasons or [])]


def lost_race(exc: TransactWriteError) -> bool:
    """Cancelled because another writer got there first: a version condition
    failed, or DynamoDB saw a concurrent transaction on one of the items.
    Nothing was written either way; re-read and try again."""
    return bool({"ConditionalCheckFailed", "TransactionConflict"} & set(_cancelled_codes(exc)))


def _create(owner_type: str, owner_id: str, attrs: CustomerAttrs, actor: Actor, *, explicit: bool
            ) -> tuple[CustomerRow, bool]:
    validate_owner(owner_type, owner_id)
    _check_attrs(attrs)
    processor = processor_name()
    guard_key = _owner_guard(processor, owner_type, owner_id)
    try:
        guard: GuardRow | None = GuardRow.get(guard_key, consistent_read=True)
    except DoesNotExist:
        guard = None
    if guard is not None and guard.customer_id:
        if explicit:
            raise Conflict(f"owner {owner_type}/{owner_id} already has a {processor} customer",
                           {"customer_id": guard.customer_id})
        return load(guard.customer_id), False

    generation = int(guard.generation) if guard is not None else 0
    key = create_idempotency_key(processor, owner_type, owner_id, generation)
    try:
        obj = get_processor().create_customer(
            idempotency_key=key, email=attrs.email, name=attrs.name,
            metadata={**attrs.metadata, "owner_type": owner_type, "owner_id": owner_id},
            preferred_locales=[attrs.preferred_locale] if attrs.preferred_locale else None,
            tax_exempt=attrs.tax_exempt,
        )
    except ProcessorFailure as failure:
        raise_for_processor(failure)

    row = _new_row(ids.new_id("cust"), owner_type, owner_id, processor, obj, attrs)
    new_guard = GuardRow(pk=guard_key, customer_id=row.pk, generation=generation)
    # A released guard (its customer deleted) may be claimed again, once per generation.
    claimable = GuardRow.pk.does_not_exist() | (GuardRow.customer_id.does_not_exist()
                                                & (GuardRow.generation == generation))
    for attempt in range(CONFLICT_RETRIES):
        try:
            with TransactWrite(connection=connection()) as tw:
                tw.save(row, condition=CustomerRow.pk.does_not_exist())
                tw.save(new_guard, condition=claimable)
                tw.save(GuardRow(pk=_processor_guard(processor, str(obj["id"])), customer_id=row.pk),
                        condition=GuardRow.pk.does_not_exist())
                ledger.append(tw, type_="customer.created", subject_type="customer", subject_id=row.pk,
                              actor=actor, data={"processor_id": obj.get("id"), "owner_type": owner_type,
                                                 "owner_id": owner_id}, idempotency_key=key)
            break
        except TransactWriteError as exc:
            codes = _cancelled_codes(exc)
            if "ConditionalCheckFailed" in codes:
                return _linked_concurrently(owner_type, owner_id, processor, str(obj["id"]), explicit)
            if "TransactionConflict" not in codes:
                raise
            # Another transaction held one of our items: nothing committed, try again.
            backoff(attempt)
    else:
        raise Conflict("the customer is being created concurrently; retry")
    logger.info("customer created", extra={"customer_id": row.pk, "processor": processor})
    return row, True


def _linked_concurrently(owner_type: str, owner_id: str, processor: str, processor_id: str, explicit: bool
                         ) -> tuple[CustomerRow, bool]:
    """Someone else linked this owner (or this processor customer) first: the
    processor create was idempotent, so theirs is the same customer."""
    existing = find_by_owner(owner_type, owner_id, processor)
    if existing is None:
        existing = find_by_processor_id(processor_id)
    if existing is None:
        raise Conflict("the customer was created concurrently; retry")
    # The same processor customer means the webhook path recorded the one this
    # call just created (its customer.created won the race): that is this
    # call's customer, not a conflict.
    if explicit and existing.processor_id != processor_id:
        raise Conflict(f"owner {owner_type}/{owner_id} already has a {processor} customer",
                       {"customer_id": existing.pk})
    return existing, False


def fetch_or_create(owner_type: str, owner_id: str, attrs: CustomerAttrs, actor: Actor
                    ) -> tuple[dict[str, Any], bool]:
    row, created = _create(owner_type, owner_id, attrs, actor, explicit=False)
    return to_api(row), created


def create(owner_type: str, owner_id: str, attrs: CustomerAttrs, actor: Actor) -> dict[str, Any]:
    row, _ = _create(owner_type, owner_id, attrs, actor, explicit=True)
    return to_api(row)


UPDATABLE = ("email", "name", "currency", "tax_exempt", "preferred_locale", "preferred_timezone")


def update(customer_id: str, changes: dict[str, Any], *, expected_version: int | None, actor: Actor
           ) -> dict[str, Any]:
    """Local update with optimistic locking.

    With an expected version (If-Match or body lock_version) a stale one is
    412 and nothing is written. Without one, a concurrent write (a webhook,
    say) makes us re-read and re-apply, so neither change is lost.
    """
    for attempt in range(CONFLICT_RETRIES):
        row = load(customer_id)
        if row.deleted_at:
            raise Conflict(f"customer {customer_id} is deleted")
        if expected_version is not None and row.lock_version != expected_version:
            raise PreconditionFailed(
                f"lock_version {expected_version} is stale; the customer is at {row.lock_version}",
                {"lock_version": row.lock_version})
        changed: list[str] = []
        for name in UPDATABLE:
            if name in changes and getattr(row, name) != changes[name]:
                setattr(row, name, changes[name])
                changed.append(name)
        if "metadata" in changes and changes["metadata"] is not None:
            merged = metadata.merge(row.metadata or {}, changes["metadata"])
            if set(merged) & set(RESERVED_METADATA) - set(row.metadata or {}):
                raise ValidationFailed("invalid metadata: owner_type, owner_id",
                                       {"metadata": {"owner_type": "reserved", "owner_id": "reserved"}})
            if merged != (row.metadata or {}):
                row.metadata = merged
                changed.append("metadata")
        if not changed:
            return to_api(row)
        row.owner_key = owner_key(row.owner_type, row.owner_id) if row.owner_type and row.owner_id else None
        row.updated_at = clock.iso()
        try:
            with TransactWrite(connection=connection()) as tw:
                tw.save(row)  # conditional on the lock_version read above
                ledger.append(tw, type_="customer.updated", subject_type="customer", subject_id=row.pk,
                              actor=actor, data={"changed_fields": changed})
        except TransactWriteError as exc:
            if not lost_race(exc):
                raise
            if expected_version is not None and "ConditionalCheckFailed" in _cancelled_codes(exc):
                raise PreconditionFailed("the customer changed concurrently",
                                         {"lock_version": load(customer_id).lock_version}) from None
            logger.info("customer update lost a race; retrying", extra={"attempt": attempt})
            backoff(attempt)
            continue
        return to_api(row)
    raise Conflict("the customer is changing too fast; retry")


def _retry_on_conflict(customer_id: str, mutate: Callable[[CustomerRow], list[str] | None],
                       ledger_type: str, actor: Actor) -> CustomerRow:
    """Re-read and re-apply until the version-conditional write lands."""
    for attempt in range(CONFLICT_RETRIES * 2):
        row = load(customer_id)
        changed = mutate(row)
        if changed is None:
            return row
        row.updated_at = clock.iso()
        try:
            with TransactWrite(connection=connection()) as tw:
                tw.save(row)
                ledger.append(tw, type_=ledger_type, subject_type="customer", subject_id=row.pk, actor=actor,
                              data={"changed_fields": changed})
        except TransactWriteError as exc:
            if lost_race(exc):
                backoff(attempt)
                continue
            raise
        return row
    raise Conflict("the customer is changing too fast; retry")


def put_data(customer_id: str, data: dict[str, Any], actor: Actor) -> dict[str, Any]:
    """Replace `data` with a whole processor object (webhook path; no required-field checks)."""

    def mutate(row: CustomerRow) -> list[str] | None:
        clean = scrub(data)
        if clean == row.data:
            return None
        row.data = clean
        return ["data"]

    return to_api(_retry_on_conflict(customer_id, mutate, "customer.data_replaced", actor))


def patch_data(customer_id: str, partial: dict[str, Any], actor: Actor) -> dict[str, Any]:
    """Shallow-merge a delta into `data` (webhook path)."""

    def mutate(row: CustomerRow) -> list[str] | None:
        merged = {**(row.data or {}), **scrub(partial)}
        if merged == row.data:
            return None
        row.data = merged
        return sorted(f"data.{k}" for k in scrub(partial))

    return to_api(_retry_on_conflict(customer_id, mutate, "customer.data_patched", actor))


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
    key = "tax-location-" + hashlib.sha256(json.dumps([row.processor_id, sorted(digest.items())]).encode()
                                           ).hexdigest()[:48]
    try:
        obj = get_processor().update_tax_location(row.processor_id, address=address, idempotency_key=key)
    except ProcessorFailure as failure:
        if failure.code == "customer_tax_location_invalid":
            raise ValidationFailed("the tax location is not valid", {"address": failure.message},
                                   type_="tax_location_invalid") from None
        raise_for_processor(failure)

    def mutate(current: CustomerRow) -> list[str] | None:
        current.data = scrub(obj)
        current.tax_location_digest = digest
        return changed or None

    # The ledger lists field names only: the address itself is never stored.
    return to_api(_retry_on_conflict(customer_id, mutate, "customer.tax_location_updated", actor))


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
    for attempt in range(CONFLICT_RETRIES):
        row = load(customer_id)
        if row.deleted_at:
            return to_api(row)
        row.deleted_at = row.updated_at = clock.iso()
        try:
            with TransactWrite(connection=connection()) as tw:
                tw.save(row)
                if row.owner_type and row.owner_id:
                    # Release the owner so a later fetch-or-create makes a new customer.
                    guard = GuardRow(pk=_owner_guard(row.processor, row.owner_type, row.owner_id))
                    tw.update(guard, actions=[GuardRow.customer_id.remove(), GuardRow.generation.add(1)],
                              condition=GuardRow.customer_id == row.pk)
                ledger.append(tw, type_="customer.deleted", subject_type="customer", subject_id=row.pk,
                              actor=actor, data={"processor_id": row.processor_id})
        except TransactWriteError as exc:
            if lost_race(exc):
                backoff(attempt)
                continue
            raise
        return to_api(row)
    raise Conflict("the customer is changing too fast; retry")


def _is_valid_owner(owner_type: str, owner_id: str) -> bool:
    try:
        validate_owner(owner_type, owner_id)
    except ValidationFailed:
        return False
    return True


def add_created_from_processor(tw: TransactWrite, obj: dict[str, Any], attrs: CustomerAttrs, actor: Actor,
                               *, watermark: tuple[int, str], default_payment_method_id: str | None = None
                               ) -> CustomerRow:
    """Webhook path: add, to the caller's transaction, the row of a processor
    customer this deployment has not recorded, with the guards the user path
    claims (processor id; owner per processor), so the two paths can never
    make two rows for one processor customer or one owner.

    Owned by the object's metadata owner_type/owner_id when they form a valid
    owner that has no customer yet; otherwise unowned (owner null). A lost
    guard race cancels the transaction; the caller re-reads and finds the row.
    """
    processor = processor_name()
    meta = obj.get("metadata")
    owner_type, owner_id = (meta.get("owner_type"), meta.get("owner_id")) if isinstance(meta, dict) else (None, None)
    owner_guard: GuardRow | None = None
    claimable: Any = None
    if isinstance(owner_type, str) and isinstance(owner_id, str) and _is_valid_owner(owner_type, owner_id):
        try:
            guard: GuardRow | None = GuardRow.get(_owner_guard(processor, owner_type, owner_id), consistent_read=True)
        except DoesNotExist:
            guard = None
        if guard is None or not guard.customer_id:
            generation = int(guard.generation) if guard is not None else 0
            owner_guard = GuardRow(pk=_owner_guard(processor, owner_type, owner_id), generation=generation)
            claimable = GuardRow.pk.does_not_exist() | (GuardRow.customer_id.does_not_exist()
                                                        & (GuardRow.generation == generation))
    if owner_guard is None:
        owner_type = owner_id = None
    row = _new_row(ids.new_id("cust"), owner_type, owner_id, processor, obj, attrs)
    row.last_stripe_event_ts, row.last_stripe_event_id = watermark
    row.default_payment_method_id = default_payment_method_id
    tw.save(row, condition=CustomerRow.pk.does_not_exist())
    if owner_guard is not None:
        owner_guard.customer_id = row.pk
        tw.save(owner_guard, condition=claimable)
    tw.save(GuardRow(pk=_processor_guard(processor, str(obj["id"])), customer_id=row.pk),
            condition=GuardRow.pk.does_not_exist())
    ledger.append(tw, type_="customer.created", subject_type="customer", subject_id=row.pk, actor=actor,
                  data={"processor_id": obj["id"], "owner_type": owner_type, "owner_id": owner_id})
    return row


def add_owner_release(tw: TransactWrite, row: CustomerRow) -> None:
    """Webhook path: release a row's owner in the transaction that deletes it
    (as delete() does), so a later fetch-or-create makes a new customer."""
    if row.owner_type and row.owner_id:
        guard = GuardRow(pk=_owner_guard(row.processor, row.owner_type, row.owner_id))
        tw.update(guard, actions=[GuardRow.customer_id.remove(), GuardRow.generation.add(1)],
                  condition=GuardRow.customer_id == row.pk)


def events(customer_id: str, *, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    load(customer_id)
    rows, last = ledger.for_subject("customer", customer_id, limit=limit, cursor=decode_cursor(cursor))
    return [r.to_dict() for r in rows], encode_cursor(last)

