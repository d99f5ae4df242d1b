"""Creating customers: the user path's fetch-or-create and explicit create
(the processor first, under an idempotency key derived from the owner, then
the row, its guards and its ledger row in one transaction), and the webhook
path's row for a processor customer this deployment has not recorded.

Both paths claim the same guards (owner per processor, processor id) with
attribute_not_exists, so however they interleave there is one row per
processor customer and one customer per owner."""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.transactions import TransactWrite

from billing.core import clock, ids
from billing.core.errors import Conflict, Contended
from billing.core.observability import logger
from billing.core.pii import scrub
from billing.customers.keys import (
    CustomerAttrs,
    check_attrs,
    create_idempotency_key,
    created_guard,
    is_valid_owner,
    owner_guard,
    owner_key,
    processor_guard,
    validate_owner,
)
from billing.customers.records import find_by_owner, find_by_processor_id, load, to_api
from billing.customers.stripe_held import answer_watermark, apply_columns
from billing.data import ledger
from billing.data.cancellation import condition_failed, error_code
from billing.data.lanes import laned
from billing.data.ledger import Actor
from billing.data.reads import find
from billing.data.tables import CustomerRow, GuardRow, connection
from billing.data.transactions import retry_on_conflict
from billing.processor import get_processor, processor_name
from billing.processor.errors import ProcessorFailure
from billing.processor.mapping import raise_for_processor


def _owner_claim(processor: str, owner_type: str, owner_id: str) -> tuple[GuardRow | None, int]:
    """The owner's guard as it stands (None: never claimed) and the generation
    a new claim must be made at."""
    guard = find(GuardRow, owner_guard(processor, owner_type, owner_id))
    return guard, int(guard.generation) if guard is not None else 0


def _claimable(generation: int) -> Any:
    # A released guard (its customer deleted) may be claimed again, once per generation.
    return GuardRow.pk.does_not_exist() | (GuardRow.customer_id.does_not_exist()
                                           & (GuardRow.generation == generation))


def _add_row(tw: TransactWrite, row: CustomerRow, owner_claim: GuardRow | None, generation: int,
             actor: Actor, idempotency_key: str | None = None) -> None:
    """The row, its guards and its ledger row, each on condition that nobody
    claimed them first."""
    tw.save(row, condition=CustomerRow.pk.does_not_exist())
    if owner_claim is not None:
        tw.save(owner_claim, condition=_claimable(generation))
    tw.save(GuardRow(pk=processor_guard(row.processor, str(row.processor_id)), customer_id=row.pk),
            condition=GuardRow.pk.does_not_exist())
    ledger.append(tw, type_="customer.created", subject_type="customer", subject_id=row.pk, actor=actor,
                  data={"processor_id": row.processor_id, "owner_type": row.owner_type, "owner_id": row.owner_id},
                  idempotency_key=idempotency_key)


def _new_row(customer_id: str, owner_type: str | None, owner_id: str | None, processor: str,
             processor_obj: dict[str, Any], attrs: CustomerAttrs) -> CustomerRow:
    at = clock.iso()
    return CustomerRow(
        pk=customer_id, list_lane=laned("customer", customer_id), owner_type=owner_type, owner_id=owner_id,
        owner_key=owner_key(owner_type, owner_id) if owner_type and owner_id else None,
        processor=processor, processor_id=processor_obj.get("id"),
        email=attrs.email, name=attrs.name, currency=attrs.currency, tax_exempt=attrs.tax_exempt,
        preferred_locale=attrs.preferred_locale, preferred_timezone=attrs.preferred_timezone,
        metadata=attrs.metadata, data=scrub(processor_obj), inserted_at=at, updated_at=at,
    )


def _create(owner_type: str, owner_id: str, attrs: CustomerAttrs, actor: Actor, *, explicit: bool
            ) -> tuple[CustomerRow, bool]:
    validate_owner(owner_type, owner_id)
    check_attrs(attrs)
    processor = processor_name()
    guard, generation = _owner_claim(processor, owner_type, owner_id)
    if guard is not None and guard.customer_id:
        if explicit:
            raise Conflict(f"owner {owner_type}/{owner_id} already has a {processor} customer",
                           {"customer_id": guard.customer_id})
        return load(guard.customer_id), False

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
    # The row is Stripe's answer (its columns too: tax_exempt "none" where the
    # caller gave none), so Stripe's customer.created for it settles against
    # this watermark instead of recording a second creation.
    apply_columns(row, obj)
    row.last_stripe_event_ts, row.last_stripe_event_id = answer_watermark()
    claim = GuardRow(pk=owner_guard(processor, owner_type, owner_id), customer_id=row.pk, generation=generation)

    def record() -> tuple[CustomerRow, bool]:
        try:
            with TransactWrite(connection=connection()) as tw:
                _add_row(tw, row, claim, generation, actor, key)
                tw.save(GuardRow(pk=created_guard(processor, str(row.processor_id)), customer_id=row.pk),
                        condition=GuardRow.pk.does_not_exist())
        except TransactWriteError as exc:
            if condition_failed(exc):
                return _linked_concurrently(owner_type, owner_id, processor, str(obj["id"]), explicit)
            raise  # another transaction held one of the items: nothing committed, try again
        logger.info("customer created", extra={"customer_id": row.pk, "processor": processor})
        return row, True

    return retry_on_conflict(record, subject="the customer being created")


def _linked_concurrently(owner_type: str, owner_id: str, processor: str, processor_id: str, explicit: bool
                         ) -> tuple[CustomerRow, bool]:
    """Someone else linked this owner (or this processor customer) first: the
    processor create was idempotent, so theirs is the same customer."""
    existing = find_by_owner(owner_type, owner_id, processor)
    if existing is None:
        existing = find_by_processor_id(processor_id)
    if existing is None:
        raise Contended("the customer was created concurrently; retry")
    # The same processor customer means the webhook path recorded the one this
    # call just created (its customer.created won the race): that is this
    # call's customer, not a conflict.
    if explicit and existing.processor_id != processor_id:
        raise Conflict(f"owner {owner_type}/{owner_id} already has a {processor} customer",
                       {"customer_id": existing.pk})
    return existing, existing.processor_id == processor_id and _claim_creation(processor, existing)


def _claim_creation(processor: str, existing: CustomerRow) -> bool:
    """This call's create (its owner-derived key) made the processor customer
    the row holds, but Stripe's customer.created wrote the row first: the
    call still created the customer and answers 201, unless another call
    made under the same key claimed that answer first (concurrent PUTs:
    exactly one 201)."""
    try:
        GuardRow(pk=created_guard(processor, str(existing.processor_id)), customer_id=existing.pk).save(
            condition=GuardRow.pk.does_not_exist())
    except PutError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def fetch_or_create(owner_type: str, owner_id: str, attrs: CustomerAttrs, actor: Actor
                    ) -> tuple[dict[str, Any], bool]:
    row, created = _create(owner_type, owner_id, attrs, actor, explicit=False)
    return to_api(row), created


def create(owner_type: str, owner_id: str, attrs: CustomerAttrs, actor: Actor) -> dict[str, Any]:
    row, _ = _create(owner_type, owner_id, attrs, actor, explicit=True)
    return to_api(row)


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
    claim: GuardRow | None = None
    generation = 0
    if isinstance(owner_type, str) and isinstance(owner_id, str) and is_valid_owner(owner_type, owner_id):
        guard, generation = _owner_claim(processor, owner_type, owner_id)
        if guard is None or not guard.customer_id:
            claim = GuardRow(pk=owner_guard(processor, owner_type, owner_id), generation=generation)
    if claim is None:
        owner_type = owner_id = None
    row = _new_row(ids.new_id("cust"), owner_type, owner_id, processor, obj, attrs)
    row.last_stripe_event_ts, row.last_stripe_event_id = watermark
    row.default_payment_method_id = default_payment_method_id
    if claim is not None:
        claim.customer_id = row.pk
    _add_row(tw, row, claim, generation, actor)
    return row


def add_owner_release(tw: TransactWrite, row: CustomerRow) -> None:
    """Release a row's owner in the transaction that deletes it (either
    path), so a later fetch-or-create makes a new customer."""
    if row.owner_type and row.owner_id:
        guard = GuardRow(pk=owner_guard(row.processor, row.owner_type, row.owner_id))
        tw.update(guard, actions=[GuardRow.customer_id.remove(), GuardRow.generation.add(1)],
                  condition=GuardRow.customer_id == row.pk)
