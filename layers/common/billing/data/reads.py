"""Reading one row by its key: what every lookup of the package does."""

from __future__ import annotations

from decimal import Decimal

from pynamodb.exceptions import DoesNotExist
from pynamodb.models import Model

from billing.core.errors import NotFound


def find[M: Model](model: type[M], key: str, *, consistent: bool = True) -> M | None:
    """The row with this key, or None. Consistent by default: the callers
    read to decide a write, and a stale read would decide it wrongly."""
    try:
        return model.get(key, consistent_read=consistent)
    except DoesNotExist:
        return None


def load[M: Model](model: type[M], key: str, what: str) -> M:
    """The row with this key; a 404 naming `what` (e.g. "coupon co_1") if there is none."""
    row = find(model, key)
    if row is None:
        raise NotFound(f"{what} not found")
    return row


def whole(value: int | float | Decimal | None) -> int | None:
    """A stored number as the integer the API shows (DynamoDB numbers come back as Decimal)."""
    return int(value) if value is not None else None

