"""The claim of an active promotion code on its code: a guard item
(`guard#code#<CODE>`) that one promotion code at a time holds, claimed and
released in the transactions that activate and deactivate it, by either
path (the user path's create and update, the webhook path)."""

from __future__ import annotations

from pynamodb.transactions import TransactWrite

from billing.core.errors import Conflict
from billing.core.observability import logger
from billing.data.reads import find
from billing.data.tables import PromotionCodeGuardRow, PromotionCodeRow

GUARD_PREFIX = "guard#code#"


def code_key(code: str) -> str:
    return PromotionCodeRow.code_key_for(code)


def guard_key(key: str) -> str:
    return GUARD_PREFIX + key


def guard(key: str) -> PromotionCodeGuardRow | None:
    return find(PromotionCodeGuardRow, guard_key(key))


def _claim(tw: TransactWrite, key: str, promotion_code_id: str) -> None:
    G = PromotionCodeGuardRow
    tw.update(G(pk=guard_key(key)), actions=[G.promotion_code_id.set(promotion_code_id), G.kind.set("code_guard")],
              condition=G.promotion_code_id.does_not_exist())


def _release(tw: TransactWrite, key: str, promotion_code_id: str) -> None:
    G = PromotionCodeGuardRow
    tw.update(G(pk=guard_key(key)), actions=[G.promotion_code_id.remove(), G.generation.add(1)],
              condition=G.promotion_code_id == promotion_code_id)


def add_code_guard(tw: TransactWrite, row: PromotionCodeRow, previous_code_key: str | None, *,
                   require: bool = False) -> bool:
    """Add to the transaction that writes `row` the guard changes its state
    calls for: claim the code while it is active, release what it held once
    it is not (or its code changed). True if a claim was added.

    A guard another promotion code holds is left alone unless `require`
    (the user path's create, which must own its code or fail): the webhook
    path applies the processor's state and never fails on a stale claim.
    Conditions make a concurrent change cancel the transaction; the caller
    re-reads and tries again.
    """
    want = row.code_key if row.active and row.code_key else None
    for key in {k for k in (previous_code_key, row.code_key) if k is not None and k != want}:
        held = guard(key)
        if held is not None and held.promotion_code_id == row.pk:
            _release(tw, key, row.pk)
    if want is None:
        return False
    held = guard(want)
    holder = held.promotion_code_id if held is not None else None
    if holder == row.pk:
        return False
    if holder is None or require:
        _claim(tw, want, row.pk)
        return True
    logger.info("code guard held by another promotion code",
                extra={"promotion_code_id": row.pk, "holder": holder})
    return False


def duplicate_code(code: str, holder: str | None) -> Conflict:
    details = {"code": code, "reason": "duplicate_code"}
    if holder is not None:
        details["promotion_code_id"] = holder
    return Conflict(f"an active promotion code already uses the code {code!r} (codes ignore case)", details)
