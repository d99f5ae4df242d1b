"""The one conflict-retry policy: lost races are retried, anything else
propagates, and a write that keeps losing is a 409."""

from __future__ import annotations

import pytest
from pynamodb.exceptions import CancellationReason, TransactWriteError, VerboseClientError

from billing.core.errors import Conflict
from billing.data import transactions
from billing.data.transactions import Retry, retry_on_conflict
from billing.data.transactions import backoff as real_backoff


def _cancelled(code: str) -> TransactWriteError:
    cause = VerboseClientError({"Error": {"Code": "TransactionCanceledException", "Message": "x"}},
                               "TransactWriteItems", cancellation_reasons=[CancellationReason(code=code)])
    return TransactWriteError("cancelled", cause=cause)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    slept: list[int] = []
    monkeypatch.setattr(transactions, "backoff", slept.append)
    return slept


def test_a_lost_race_runs_the_attempt_again(no_sleep: list[int]) -> None:
    outcomes: list[BaseException | str] = [_cancelled("ConditionalCheckFailed"), _cancelled("TransactionConflict"),
                                           Retry(), "done"]

    def attempt() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert retry_on_conflict(attempt, subject="the thing") == "done"
    assert no_sleep == [0, 1, 2]


def test_other_errors_propagate_at_once(no_sleep: list[int]) -> None:
    calls = 0

    def attempt() -> None:
        nonlocal calls
        calls += 1
        raise _cancelled("ValidationError")

    with pytest.raises(TransactWriteError):
        retry_on_conflict(attempt, subject="the thing")
    assert calls == 1 and no_sleep == []


def test_losing_every_time_is_a_409_naming_the_subject() -> None:
    def attempt() -> None:
        raise _cancelled("ConditionalCheckFailed")

    with pytest.raises(Conflict, match="the thing is changing too fast"):
        retry_on_conflict(attempt, subject="the thing", attempts=3)


def test_backoff_is_jittered_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("billing.data.transactions.time.sleep", slept.append)
    for attempt in range(20):
        real_backoff(attempt)
    assert all(0 <= s <= transactions.MAX_BACKOFF_SECONDS for s in slept)
    assert len(set(slept)) > 1  # jitter: two writers that collided do not retry in step
