"""What a reconciliation run may cover: an hour-aligned window in the past,
inside Stripe's 35-day meter event window, at most 31 days long."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from billing.core.errors import ValidationFailed

HOUR: Final = 3600
DAY: Final = 86400
MAX_AGE_SECONDS: Final = 35 * DAY  # Stripe takes meter events at most 35 days old
MAX_SPAN_SECONDS: Final = 31 * DAY


@dataclass(frozen=True)
class Window:
    start: int
    end: int

    def hours(self) -> range:
        return range(self.start, self.end, HOUR)

    def days(self) -> list[tuple[int, int]]:
        """The window cut at UTC midnights: one Stripe summary call per part
        (hour grouping needs hour-aligned bounds, which every part has)."""
        parts: list[tuple[int, int]] = []
        at = self.start
        while at < self.end:
            stop = min(self.end, (at // DAY + 1) * DAY)
            parts.append((at, stop))
            at = stop
        return parts


def check(start: object, end: object, *, now: float | None = None) -> Window:
    """The window, or a 422 naming each problem (nothing is started)."""
    now = time.time() if now is None else now
    problems: dict[str, str] = {}
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, int):
            problems[name] = "unix seconds (an integer)"
        elif value % HOUR:
            problems[name] = "not on an hour boundary (UTC)"
    if problems:
        raise ValidationFailed.of_fields("the window", problems)
    assert isinstance(start, int) and isinstance(end, int)  # noqa: S101 - checked above, for the type checker
    if end <= start:
        problems["end"] = "not after start"
    elif end > now:
        problems["end"] = "in the future: only closed hours can be reconciled"
    elif end - start > MAX_SPAN_SECONDS:
        problems["end"] = "the window is longer than 31 days"
    if start < now - MAX_AGE_SECONDS:
        problems["start"] = "older than 35 days (Stripe's meter event window)"
    if problems:
        raise ValidationFailed.of_fields("the window", problems)
    return Window(start, end)
