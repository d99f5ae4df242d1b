"""The one cursor codec: a cursor only decodes for the list that issued it,
and a forged position is a 422, never a key DynamoDB would refuse."""

from __future__ import annotations

import base64
import json

import pytest

from billing.core.errors import ValidationFailed
from billing.data import pagination

KEY = {"pk": {"S": "cust_1"}, "email": {"S": "a@example.com"}, "inserted_at": {"S": "2026-01-01T00:00:00.000Z"}}
NAMES = ("pk", "email", "inserted_at")


def _raw(state: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()


def test_round_trip_within_one_list() -> None:
    cursor = pagination.encode(KEY, scope="customers:by_email:a@example.com")
    assert cursor is not None
    decoded = pagination.decode(cursor, scope="customers:by_email:a@example.com", key_names=NAMES,
                                pinned={"email": "a@example.com"})
    assert decoded == KEY


def test_no_next_page_is_no_cursor_and_no_cursor_is_the_first_page() -> None:
    assert pagination.encode(None, scope="x") is None
    assert pagination.encode({}, scope="x") is None
    assert pagination.decode(None, scope="x") is None
    assert pagination.decode("", scope="x") is None


def test_a_cursor_of_another_list_is_refused() -> None:
    cursor = pagination.encode(KEY, scope="customers:by_email:a@example.com")
    with pytest.raises(ValidationFailed, match="another list") as refused:
        pagination.decode(cursor, scope="customers:by_email:b@example.com")
    assert refused.value.details == {"cursor": "invalid"}


@pytest.mark.parametrize("cursor", [
    "not base64 !!", "eyJhIjogMX0=", _raw([1, 2]), _raw({"scope": "s"}), "x" * 5000,
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
])
def test_garbage_is_a_validation_error(cursor: str) -> None:
    with pytest.raises(ValidationFailed):
        pagination.decode(cursor, scope="s", key_names=NAMES)


@pytest.mark.parametrize("position", [
    {"pk": {"S": "cust_1"}},  # attributes missing
    {**KEY, "extra": {"S": "x"}},  # an attribute the key does not have
    {**KEY, "pk": {"B": "AAAA"}},  # a type keys never use here
    {**KEY, "pk": {"S": ""}},  # empty
    {**KEY, "pk": "cust_1"},  # not an attribute value
    {**KEY, "email": {"S": "other@example.com"}},  # the partition this list does not read
])
def test_a_forged_position_is_refused_before_dynamodb_sees_it(position: dict[str, object]) -> None:
    cursor = _raw({"scope": "s", "at": position})
    with pytest.raises(ValidationFailed):
        pagination.decode(cursor, scope="s", key_names=NAMES, pinned={"email": "a@example.com"})


def test_is_key_accepts_numbers_and_strings() -> None:
    assert pagination.is_key({"pk": {"S": "a"}, "n": {"N": "12"}}, ("pk", "n"))
    assert not pagination.is_key({"pk": {"S": "a"}, "n": {"N": 12}}, ("pk", "n"))
