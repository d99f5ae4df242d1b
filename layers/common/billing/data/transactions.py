"""Optimistic concurrency: run an attempt (read, decide, conditional write)
again when another writer got there first.

Every mutable row is written on condition of the version it was read at
(PynamoDB's VersionAttribute) and every uniqueness claim with
attribute_not_exists, so a lost race writes nothing: the attempt re-reads
and re-decides. The one retry policy of the package lives here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Final

from pynamodb.exceptions import TransactWriteError

from billing.core.errors import Contended
from billing.core.observability import logger
from billing.data.cancellation import lost_race

CONFLICT_RETRIES: Final = 12
MAX_BACKOFF_SECONDS: Final = 0.3


class Retry(Exception):
    """Raised by an attempt that found it lost a race in a way the
    transaction did not report (a merge that must re-read): try again."""


def backoff(attempt: int) -> None:
    """Full jitter: two writers that collided should not collide again in step."""
    time.sleep(random.uniform(0, min(MAX_BACKOFF_SECONDS, 0.01 * 2**attempt)))  # noqa: S311 - jitter, not security


def retry_on_conflict[T](attempt: Callable[[], T], *, subject: str, attempts: int = CONFLICT_RETRIES) -> T:
    """`attempt()` until it returns; a transaction cancelled by a lost race
    (or a Retry) backs off and runs it again. Any other error propagates.
    Still losing after `attempts` tries: 409 naming `subject`."""
    for n in range(attempts):
        try:
            return attempt()
        except TransactWriteError as exc:
            if not lost_race(exc):
                raise
        except Retry:
            pass
        logger.debug("write lost a race; retrying", extra={"subject": subject, "attempt": n})
        backoff(n)
    raise Contended(f"{subject} is changing too fast; retry")
