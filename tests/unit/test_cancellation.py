"""Reading why DynamoDB refused a write, from PynamoDB's and botocore's
exceptions alike (the webhook's lean path has no PynamoDB)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from pynamodb.exceptions import CancellationReason, TransactWriteError, VerboseClientError

from billing.data import cancellation


def _cancelled(*codes: str | None, raw_item: dict[str, Any] | None = None) -> TransactWriteError:
    """What PynamoDB raises for a cancelled TransactWriteItems."""
    reasons = [None if code is None else CancellationReason(code=code, message=None,
                                                            raw_item=raw_item if i == 0 else None)
               for i, code in enumerate(codes)]
    cause = VerboseClientError({"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"}},
                               "TransactWriteItems", cancellation_reasons=reasons)
    return TransactWriteError("cancelled", cause=cause)


def test_codes_in_item_order_and_by_position() -> None:
    exc = _cancelled("ConditionalCheckFailed", None, "None")
    assert cancellation.cancellation_codes(exc) == ["ConditionalCheckFailed", None, "None"]
    assert cancellation.condition_failed(exc)
    assert cancellation.condition_failed(exc, 0)
    assert not cancellation.condition_failed(exc, -1)
    assert not cancellation.condition_failed(exc, 7)


def test_lost_race_is_a_failed_version_or_a_concurrent_transaction() -> None:
    assert cancellation.lost_race(_cancelled("ConditionalCheckFailed", "None"))
    assert cancellation.lost_race(_cancelled("None", "TransactionConflict"))
    assert not cancellation.lost_race(_cancelled("ValidationError"))
    assert not cancellation.lost_race(ValueError("not DynamoDB"))


def test_transaction_conflict_only_when_nothing_else_failed() -> None:
    assert cancellation.transaction_conflict(_cancelled("TransactionConflict", "None"))
    assert not cancellation.transaction_conflict(_cancelled("TransactionConflict", "ConditionalCheckFailed"))


def test_retryable_codes_from_botocore_and_pynamodb() -> None:
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "PutItem")
    assert cancellation.retryable_dynamodb_code(throttled) == "ThrottlingException"
    assert cancellation.retryable_dynamodb_code(_cancelled("ThrottlingError", "None")) == "ThrottlingError"
    # A failed condition beside the throttle is the caller's business.
    assert cancellation.retryable_dynamodb_code(_cancelled("ThrottlingError", "ConditionalCheckFailed")) is None
    assert cancellation.retryable_dynamodb_code(ValueError("x")) is None


def test_the_item_as_it_stood_comes_back_with_its_failed_condition() -> None:
    item = {"pk": {"S": "usage-1"}}
    exc = _cancelled("ConditionalCheckFailed", raw_item=item)
    assert cancellation.cancelled_item(exc, 0) == item
    assert cancellation.cancelled_item(exc, 3) is None
