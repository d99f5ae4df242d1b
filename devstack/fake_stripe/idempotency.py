"""Stripe's idempotency keys, as the Fake honours them.

The first successful result is saved under the key and replayed for a retry
with the same parameters; the same key with other parameters (or on another
endpoint) is an idempotency_error. Failures are not saved, so a retry after a
scripted fault or a validation error runs again (Stripe saves only requests
that began executing; faults stand for requests that never got that far).
Stripe ignores keys on DELETE: the Fake records those without honouring them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

from billing.processor.base import JSONDict


def fingerprint(args: JSONDict) -> str:
    """The parameters of a request, comparable across retries."""
    return json.dumps(args, sort_keys=True, default=str)


def mismatch_message(key: str) -> str:
    """Stripe's message when a key is reused with other parameters."""
    return (
        "Keys for idempotent requests can only be used with the same parameters they were first used with. "
        f"Try using a key other than '{key}' if you meant to execute a different request."
    )


class IdempotencyKeys:
    """idempotency key -> (operation, parameters, result) of the call that first used it."""

    def __init__(self) -> None:
        self._saved: dict[str, tuple[str, str, JSONDict]] = {}

    def run(
        self,
        operation: str,
        args: JSONDict,
        key: str | None,
        execute: Callable[[], JSONDict],
        *,
        mismatch: Callable[[str], Exception],
    ) -> JSONDict:
        """`execute()`, or the saved result of the first call with `key`;
        `mismatch(key)` is raised when the key was used for something else."""
        if key is None:
            return execute()
        params = fingerprint(args)
        cached = self._saved.get(key)
        if cached is not None:
            cached_operation, cached_params, result = cached
            if (cached_operation, cached_params) != (operation, params):
                raise mismatch(key)
            return result
        result = execute()
        self._saved[key] = (operation, params, copy.deepcopy(result))
        return result
