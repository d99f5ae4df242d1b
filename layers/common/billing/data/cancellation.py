"""Reading why DynamoDB refused a write: the one place that interprets
TransactWriteItems cancellation reasons and DynamoDB error codes.

Duck-typed over PynamoDB's exceptions (`cause_response_code`,
`cancellation_reasons`) and botocore's ClientError (`response`), so the
webhook's lean ack path can ask without importing PynamoDB.

Cancellation reasons come in PynamoDB's item order (condition checks,
deletes, puts, then updates), not in the order items were added to the
transaction: callers name the item they mean by that order.
"""

from __future__ import annotations

from typing import Any, Final

CONDITION_FAILED: Final = "ConditionalCheckFailed"
TRANSACTION_CONFLICT: Final = "TransactionConflict"
NO_REASON: Final = "None"

# DynamoDB's answers that mean "not now" rather than "never": throttling
# (botocore's standard retry mode retries these itself, with backoff, before
# the code sees them), a transaction still in progress, and its own 5xx.
RETRYABLE_DYNAMODB_CODES: Final = frozenset({
    "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "TransactionInProgressException", "InternalServerError", "ServiceUnavailable",
})
# A TransactWriteItems cancelled because one of its items was throttled.
RETRYABLE_CANCELLATION_CODES: Final = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded"})


def error_code(exc: BaseException) -> str | None:
    """DynamoDB's error code of a PynamoDB or botocore exception, if any."""
    code = getattr(exc, "cause_response_code", None)
    if code is None:
        response = getattr(exc, "response", None)
        error = response.get("Error") if isinstance(response, dict) else None
        code = error.get("Code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def cancellation_codes(exc: BaseException) -> list[str | None]:
    """One code per item of a cancelled transaction, in PynamoDB's item order
    ("None" for an item that was fine); empty for any other exception."""
    return [getattr(r, "code", None) if r else None for r in (getattr(exc, "cancellation_reasons", None) or [])]


def cancelled_item(exc: BaseException, item: int) -> dict[str, Any] | None:
    """The item as it stood, when its condition failed on a write that asked
    for it back (ReturnValuesOnConditionCheckFailure=ALL_OLD)."""
    reasons = getattr(exc, "cancellation_reasons", None) or []
    try:
        raw = getattr(reasons[item], "raw_item", None) if reasons[item] else None
    except IndexError:
        return None
    return raw if isinstance(raw, dict) else None


def condition_failed(exc: BaseException, item: int | None = None) -> bool:
    """A condition failed: on the item at index `item` (negative counts from
    the end), or on any item."""
    codes = cancellation_codes(exc)
    if item is None:
        return CONDITION_FAILED in codes
    try:
        return codes[item] == CONDITION_FAILED
    except IndexError:
        return False


def lost_race(exc: BaseException) -> bool:
    """Cancelled because another writer got there first: a version condition
    failed, or DynamoDB saw a concurrent transaction on one of the items.
    Nothing was written either way; re-read and try again."""
    return bool({CONDITION_FAILED, TRANSACTION_CONFLICT} & set(cancellation_codes(exc)))


def transaction_conflict(exc: BaseException) -> bool:
    """Cancelled only because another transaction held one of its items:
    nothing was written and the same request can be sent again."""
    if error_code(exc) != "TransactionCanceledException":
        return False
    reasons = [c for c in cancellation_codes(exc) if c]
    return TRANSACTION_CONFLICT in reasons and all(r in (TRANSACTION_CONFLICT, NO_REASON) for r in reasons)


def retryable_dynamodb_code(exc: BaseException) -> str | None:
    """The DynamoDB error code if `exc` is a transient DynamoDB failure, else None."""
    code = error_code(exc)
    if code is None:
        return None
    if code in RETRYABLE_DYNAMODB_CODES:
        return code
    if code == "TransactionCanceledException":
        # Only when throttling is the sole reason: a failed condition beside
        # it is the caller's business, not a reason to retry.
        reasons = [c for c in cancellation_codes(exc) if c]
        throttled = [r for r in reasons if r in RETRYABLE_CANCELLATION_CODES]
        if throttled and all(r in RETRYABLE_CANCELLATION_CODES or r == NO_REASON for r in reasons):
            return throttled[0]
    return None
