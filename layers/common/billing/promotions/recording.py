"""Recording what the processor created on the user path (coupons and
promotion codes): one path for both.

The row is keyed by the processor's id. A create request that finds no row
writes it (with its ledger row, and whatever claims the type needs) on
condition it still does not exist. A row only the webhook path wrote (its
`*.created` event won the race, or this request's earlier answer was lost)
is adopted: the webhook's state is at least as new as the create's answer,
so only the columns it left empty are filled in. A row another create
request recorded already (`create_key`) is a 409: that processor object
belongs to an earlier request; the same key is this request retried, and
gets its row back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from billing.core import clock
from billing.core.errors import Conflict
from billing.core.observability import logger
from billing.core.pii import scrub
from billing.data import ledger
from billing.data.cancellation import condition_failed
from billing.data.ledger import Actor
from billing.data.reads import find
from billing.data.tables import CouponRow, PromotionCodeRow, connection
from billing.data.transactions import Retry, retry_on_conflict

Row = CouponRow | PromotionCodeRow
# (transaction, row, the code key it held before, whether the claim is required) -> claimed
Claim = Callable[[TransactWrite, Any, str | None, bool], bool]


@dataclass(frozen=True)
class Recording:
    kind: str  # "coupon", "promotion_code": the ledger's subject type and type prefix
    model: type[Row]
    columns: Callable[[dict[str, Any], str, Any], dict[str, Any]]  # (object, event type, row) -> columns
    duplicate: Callable[[Any], Conflict]  # the 409 when a create request recorded the row already
    created_data: Callable[[Any], dict[str, Any]]  # the ledger row's data for a new row
    claim: Claim | None = None
    # A required claim failed (the transaction's last item): raise Retry when
    # the claim is this row's after all, a Conflict when another row holds it.
    claim_lost: Callable[[Any], None] | None = None


def record(spec: Recording, obj: dict[str, Any], key: str, actor: Actor) -> Any:
    """The row of `obj` as this create request records it (new or adopted)."""
    object_id = str(obj["id"])

    def attempt() -> Any:
        existing = find(spec.model, object_id)
        if existing is not None:
            if existing.create_key == key:
                return existing  # this request, retried: the row it recorded
            if existing.create_key:
                raise spec.duplicate(existing)
            return _adopt(spec, existing, obj, key, actor)
        now = clock.iso()
        row = spec.model(pk=object_id, inserted_at=now, updated_at=now, create_key=key)
        for name, value in spec.columns(obj, f"{spec.kind}.created", row).items():
            setattr(row, name, value)
        row.data = scrub(obj)
        claimed = False
        try:
            # PynamoDB sends puts (row, ledger) before updates (a claim): the
            # row's cancellation reason is the first, a claim's the last.
            with TransactWrite(connection=connection()) as tw:
                tw.save(row, condition=spec.model.pk.does_not_exist())
                claimed = spec.claim(tw, row, None, True) if spec.claim is not None else False
                ledger.append(tw, type_=f"{spec.kind}.created", subject_type=spec.kind, subject_id=object_id,
                              actor=actor, data=spec.created_data(row), idempotency_key=key)
        except TransactWriteError as exc:
            if condition_failed(exc, 0):
                raise Retry from None  # the webhook path wrote the row meanwhile: adopt it
            if claimed and spec.claim_lost is not None and condition_failed(exc, -1):
                spec.claim_lost(row)
            raise
        logger.info("created and recorded", extra={"kind": spec.kind, "object_id": object_id, "claimed": claimed})
        return row

    return retry_on_conflict(attempt, subject=f"the {spec.kind} being recorded")


def _adopt(spec: Recording, row: Any, obj: dict[str, Any], key: str, actor: Actor) -> Any:
    """Fill in what the webhook's row left empty, and mark it recorded by this
    request. A lost race cancels the transaction (retried by the caller)."""
    previous_code_key = getattr(row, "code_key", None)
    filled = []
    for name, value in spec.columns(obj, f"{spec.kind}.created", row).items():
        if getattr(row, name) is None and value is not None:
            setattr(row, name, value)
            filled.append(name)
    if not row.data:
        row.data = scrub(obj)
    row.create_key = key
    row.updated_at = clock.iso()
    with TransactWrite(connection=connection()) as tw:
        tw.save(row)  # conditional on the lock_version read
        if spec.claim is not None:
            spec.claim(tw, row, previous_code_key, False)
        ledger.append(tw, type_=f"{spec.kind}.create_confirmed", subject_type=spec.kind, subject_id=row.pk,
                      actor=actor, data={"processor_id": row.pk, "recorded_first_by": "webhook",
                                         "filled_fields": filled},
                      idempotency_key=key)
    logger.info("create merged into the webhook's row", extra={"kind": spec.kind, "object_id": row.pk})
    return row
