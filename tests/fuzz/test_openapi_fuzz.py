"""Schemathesis against the local stack's own /v1/openapi.json: every
documented operation with generated inputs (a bounded number of examples per
operation, derandomized so CI is repeatable). No 5xx, and every response must
match the status codes, content types and schemas the document declares.

Schemathesis' pytest plugin does not run under pytest 9, so the operations are
driven through its Python API: each operation's strategy under Hypothesis,
every failure collected and reported together.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from devstack.stack import LocalStack

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance)


def _run_operation(operation: Any, base_url: str) -> str | None:
    """None, or the first failure found for this operation (Hypothesis shrinks it)."""

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        response = case.call(base_url=base_url)
        case.validate_response(response, checks=CHECKS)

    try:
        check()
    except Exception as exc:  # noqa: BLE001 - every check failure is reported, whatever its class
        return f"{operation.label}: {type(exc).__name__}: {str(exc)[:1500]}"
    return None


def test_every_operation_conforms_to_the_openapi_document(stack: LocalStack) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.url}/v1/openapi.json")
    operations, failures = [], []
    for result in schema.get_all_operations():
        if isinstance(result, Ok):
            operations.append(result.ok())
        else:
            failures.append(f"an operation the document cannot describe: {result.err()}")
    assert len(operations) >= 10, "the document lost its operations"
    failures += [f for f in (_run_operation(op, stack.url) for op in operations) if f]
    assert not failures, "\n\n".join(failures)
