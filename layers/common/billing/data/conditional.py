"""Single-item conditional writes that say why they were refused, without a
transaction (a transactional write costs twice the write units) and without
a second read.

`put_new` is a PutItem conditional on the key being new that, when the key
is taken, returns the item that holds it from the refused write itself
(ReturnValuesOnConditionCheckFailure=ALL_OLD), so "is this a replay of the
same request?" costs no extra read.
"""

from __future__ import annotations

from typing import Any, Final

from botocore.exceptions import ClientError
from pynamodb.constants import PUT_ITEM
from pynamodb.models import Model

from billing.data.cancellation import error_code

CONDITIONAL_CHECK_FAILED: Final = "ConditionalCheckFailedException"


def put_new(row: Model) -> dict[str, Any] | None:
    """Put `row` if no item has its key: None when written, else the raw item
    that has the key (DynamoDB's own answer to the refused write)."""
    model = type(row)
    key = model._hash_key_attribute()  # type: ignore[no-untyped-call]
    kwargs = row.get_save_kwargs_from_instance(condition=key.does_not_exist(),
                                                return_values_on_condition_failure="ALL_OLD")
    try:
        row._get_connection().connection.dispatch(PUT_ITEM, kwargs)
    except ClientError as exc:
        if error_code(exc) != CONDITIONAL_CHECK_FAILED:
            raise
        item = exc.response.get("Item")
        # Without the item (a DynamoDB that ignores ALL_OLD) the caller reads it.
        return item if isinstance(item, dict) else {}
    return None


def refused(exc: BaseException) -> bool:
    """A single-item write refused by its condition (PynamoDB's or botocore's exception)."""
    return error_code(exc) == CONDITIONAL_CHECK_FAILED
