"""Request field types more than one route declares."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import AfterValidator

from billing.core.currencies import ISO_4217
from billing.data.pagination import MAX_CURSOR_LENGTH


def _iso_4217(value: str) -> str:
    if value not in ISO_4217:
        raise ValueError("must be a 3-letter lower-case ISO 4217 code")
    return value


# Stripe's currency codes: ISO 4217, lower case.
Currency = Annotated[str, AfterValidator(_iso_4217)]

# A list's page: 1 to 100 rows, as Stripe's lists, and the cursor the last
# page gave (opaque; the list that issued it checks it, billing.data.pagination).
PageSize = Annotated[int, Query(ge=1, le=100, description="How many rows, 1 to 100")]
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH, description="The next_cursor of the page before")]
