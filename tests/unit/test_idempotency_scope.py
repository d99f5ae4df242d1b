"""Whose an Idempotency-Key is (the account and IAM principal, not the STS
session) and which answers are kept for replay."""

from __future__ import annotations

import json

import pytest

from billing.api.idempotency import _kept, principal


@pytest.mark.parametrize(("identity", "expected"), [
    ({"accountId": "111122223333", "userArn": "arn:aws:sts::111122223333:assumed-role/Billing/task-1",
      "caller": "AROAEXAMPLE:task-1"}, "111122223333/arn:aws:sts::111122223333:assumed-role/Billing"),
    ({"accountId": "111122223333", "userArn": "arn:aws-us-gov:sts::111122223333:assumed-role/Billing/i-0abc"},
     "111122223333/arn:aws-us-gov:sts::111122223333:assumed-role/Billing"),
    ({"accountId": "111122223333", "userArn": "arn:aws:iam::111122223333:user/ops", "caller": "AIDAEXAMPLE"},
     "111122223333/arn:aws:iam::111122223333:user/ops"),
    ({"accountId": "111122223333", "caller": "AROAEXAMPLE:session-9"}, "111122223333/AROAEXAMPLE"),
    ({"caller": None, "userArn": None}, "anonymous"),
])
def test_the_principal_is_the_role_not_the_session(identity: dict[str, str], expected: str) -> None:
    assert principal(identity) == expected


def test_two_sessions_of_a_role_are_one_caller_and_two_roles_are_two() -> None:
    def session(role: str, name: str) -> dict[str, str]:
        return {"accountId": "1", "userArn": f"arn:aws:sts::1:assumed-role/{role}/{name}"}

    assert principal(session("A", "x")) == principal(session("A", "y"))
    assert principal(session("A", "x")) != principal(session("B", "x"))


def _result(status: int, body: object, headers: dict[str, list[str]] | None = None) -> dict[str, object]:
    return {"statusCode": status, "body": json.dumps(body), "multiValueHeaders": headers or {}}


def test_answers_that_ask_for_a_retry_are_not_kept() -> None:
    assert _kept(_result(201, {"id": "x"}))
    assert _kept(_result(409, {"error": {"type": "conflict", "message": "already has one", "details": {}}}))
    assert not _kept(_result(409, {"error": {"type": "conflict", "message": "busy; retry", "details": {}}},
                             {"Retry-After": ["1"]}))
    assert not _kept(_result(502, {"error": {}}))
    assert not _kept(_result(429, {"error": {}}))
    assert _kept(_result(207, {"data": [{"status": 202}, {"status": 422}]}))
    assert not _kept(_result(207, {"data": [{"status": 202}, {"status": 503}]}))
