"""Schedule events of the template's functions, run locally.

Each enabled Schedule event fires on its own clock and invokes the function
with the event EventBridge sends (or the event's Input, which replaces it).
`trigger(name)` fires one now, synchronously, for tests and the local control
route. LOCAL_SCHEDULE_SPEEDUP (a float, default 1) divides every interval, so
`rate(1 hour)` with 3600 fires every second.

Expressions: `rate(N minute|minutes|hour|hours|day|days)` and AWS's six-field
`cron(minutes hours day-of-month month day-of-week year)` with `*`, `?`,
numbers, names (JAN, MON), ranges, lists and `/` steps. `L`, `W` and `#`
cannot be evaluated here and make their field "every day" (logged).
Times are UTC, as EventBridge's are.
"""

from __future__ import annotations

import copy
import heapq
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from devstack.runtime import FunctionError
from devstack.template import ACCOUNT, REGION, FunctionSpec, ScheduleSpec

log = logging.getLogger("devstack.schedules")

Invoke = Callable[[dict[str, Any]], Any]

__all__ = [
    "CronSchedule",
    "FiredSchedule",
    "Invoke",
    "RateSchedule",
    "ScheduleError",
    "ScheduleRunner",
    "parse_expression",
    "speedup_from_env",
]


class ScheduleError(ValueError):
    """A schedule expression the local stack cannot run; one clear line."""


# -- expressions ------------------------------------------------------------------------

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {name: i + 1 for i, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"))}
# L (last), W (nearest weekday), LW, 5L (last Thursday), 6#3 (third Friday).
_SPECIAL_DAY = re.compile(r"#|^\d*L$|^\d*W$|^LW$")
_DAYS = {name: i + 1 for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}


@dataclass(frozen=True)
class RateSchedule:
    interval_s: float

    def next_after(self, moment: datetime) -> datetime:
        return moment + timedelta(seconds=self.interval_s)


@dataclass(frozen=True)
class CronSchedule:
    """Allowed values per field; None means any. Day of week is AWS's 1 (SUN) .. 7 (SAT)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int] | None
    months: frozenset[int] | None
    days_of_week: frozenset[int] | None
    years: frozenset[int] | None

    def _day_matches(self, day: datetime) -> bool:
        aws_dow = (day.weekday() + 1) % 7 + 1  # Monday is 0 in Python, 2 in AWS
        return ((self.years is None or day.year in self.years)
                and (self.months is None or day.month in self.months)
                and (self.days_of_month is None or day.day in self.days_of_month)
                and (self.days_of_week is None or aws_dow in self.days_of_week))

    def next_after(self, moment: datetime) -> datetime:
        """The first firing strictly after `moment` (whole minutes, UTC)."""
        start = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        # Day by day, then only the allowed hours and minutes: a few thousand
        # steps at most, even for a once-a-year expression.
        for _ in range(366 * 5):
            if self._day_matches(day):
                for hour in hours:
                    for minute in minutes:
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        raise ScheduleError("the cron expression does not fire in the next five years")


def _field_values(text: str, low: int, high: int, names: Mapping[str, int] | None = None) -> frozenset[int]:
    def number(token: str) -> int:
        token = token.upper()
        if names and token in names:
            return names[token]
        if not token.isdigit():
            raise ScheduleError(f"{token!r} is not a value between {low} and {high}")
        value = int(token)
        if not low <= value <= high:
            raise ScheduleError(f"{value} is outside {low}-{high}")
        return value

    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ScheduleError(f"empty list item in {text!r}")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ScheduleError(f"bad step in {part!r}")
            step = int(step_text)
        if base in ("*", "?"):
            first, last = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            first, last = number(a), number(b)
            if first > last:
                raise ScheduleError(f"range {base!r} runs backwards")
        else:
            first = number(base)
            last = high if step_text else first  # "5/15": from 5, every 15
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _day_field(text: str, low: int, high: int, what: str, names: Mapping[str, int] | None = None,
               expression: str = "") -> frozenset[int] | None:
    if text in ("*", "?"):
        return None
    if any(_SPECIAL_DAY.search(token) for token in text.upper().split(",")):
        log.warning("schedule %s: %s %r (L, W, #) is not evaluated locally; treated as every day",
                    expression, what, text)
        return None
    return _field_values(text, low, high, names)


def parse_expression(expression: str) -> RateSchedule | CronSchedule:
    expression = expression.strip()
    rate = _RATE.match(expression)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2).rstrip("s")
        if value < 1:
            raise ScheduleError(f"{expression}: the rate must be a positive number")
        return RateSchedule(float(value * _UNIT_SECONDS[unit]))
    cron = _CRON.match(expression)
    if not cron:
        raise ScheduleError(f"{expression!r} is neither rate(...) nor cron(...)")
    fields = cron.group(1).split()
    if len(fields) != 6:
        raise ScheduleError(f"{expression}: cron takes six fields (minutes hours day-of-month month day-of-week year)")
    minute, hour, dom, month, dow, year = fields
    try:
        return CronSchedule(
            minutes=_field_values(minute, 0, 59),
            hours=_field_values(hour, 0, 23),
            days_of_month=_day_field(dom, 1, 31, "day-of-month", expression=expression),
            months=None if month in ("*", "?") else _field_values(month, 1, 12, _MONTHS),
            days_of_week=_day_field(dow, 1, 7, "day-of-week", _DAYS, expression=expression),
            years=None if year in ("*", "?") else _field_values(year, 1970, 2199),
        )
    except ScheduleError as exc:
        raise ScheduleError(f"{expression}: {exc}") from None


def speedup_from_env(env: Mapping[str, str] = os.environ) -> float:
    raw = env.get("LOCAL_SCHEDULE_SPEEDUP", "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise ScheduleError(f"LOCAL_SCHEDULE_SPEEDUP must be a number, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ScheduleError(f"LOCAL_SCHEDULE_SPEEDUP must be a positive number, got {raw!r}")
    return value


# -- the runner ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FiredSchedule:
    name: str
    time: str
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class _Entry:
    spec: ScheduleSpec
    schedule: RateSchedule | CronSchedule
    rule_arn: str


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ScheduleRunner:
    """Fires the Schedule events of `functions` through `invokers`
    ({function logical id: invoke(event)}, e.g. FunctionRuntime.invoke)."""

    def __init__(
        self,
        functions: Iterable[FunctionSpec],
        invokers: Mapping[str, Invoke],
        *,
        stack_name: str = "billing-local",
        speedup: float | None = None,
        max_concurrency: int = 4,
    ) -> None:
        self.speedup = speedup if speedup is not None else speedup_from_env()
        if not self.speedup > 0:
            raise ScheduleError("the schedule speedup must be positive")
        self.invokers = dict(invokers)
        self.entries: dict[str, _Entry] = {}
        for spec in functions:
            for schedule in spec.schedules:
                if schedule.function not in self.invokers:
                    raise ValueError(f"{schedule.name}: no invoker for function {schedule.function}")
                event_name = schedule.name.split(".", 1)[-1]
                # SAM names the rule <Function><Event> inside the stack.
                rule = f"{stack_name}-{schedule.function}{event_name}"
                try:
                    parsed = parse_expression(schedule.expression)
                    parsed.next_after(datetime.now(UTC))  # one that never fires fails here, not in the timer
                except ScheduleError as exc:
                    raise ScheduleError(f"{schedule.name}: {exc}") from None
                self.entries[schedule.name] = _Entry(
                    schedule, parsed, f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}")
        self.max_concurrency = max_concurrency
        self._lock = threading.Lock()
        self._history: list[FiredSchedule] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    # -- inspection ------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self.entries)

    def history(self) -> list[FiredSchedule]:
        with self._lock:
            return list(self._history)

    def fired(self, name: str) -> int:
        name = self._resolve(name)
        with self._lock:
            return sum(1 for h in self._history if h.name == name)

    def _resolve(self, name: str) -> str:
        """`Function.Event`, or the bare event name when only one function uses it."""
        if name in self.entries:
            return name
        candidates = [n for n in self.entries if n.split(".", 1)[-1] == name]
        if len(candidates) == 1:
            return candidates[0]
        raise KeyError(f"no schedule named {name!r} (known: {', '.join(self.entries) or 'none'})")

    def event(self, name: str, moment: datetime | None = None) -> Any:
        """What the function receives: EventBridge's scheduled event, or the
        event's Input, which EventBridge sends instead of it."""
        entry = self.entries[self._resolve(name)]
        if entry.spec.input is not None:
            return copy.deepcopy(entry.spec.input)
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT,
            "time": _iso(moment or datetime.now(UTC)),
            "region": REGION,
            "resources": [entry.rule_arn],
            "detail": {},
        }

    # -- firing ----------------------------------------------------------------------

    def trigger(self, name: str) -> Any:
        """Fire one schedule now, whether or not it is enabled, and return the
        function's result (FunctionError if it failed)."""
        name = self._resolve(name)
        return self._fire(name, datetime.now(UTC), raise_errors=True)

    def _fire(self, name: str, moment: datetime, raise_errors: bool = False) -> Any:
        entry = self.entries[name]
        try:
            result = self.invokers[entry.spec.function](self.event(name, moment))
        except Exception as exc:  # a timer firing has nobody to raise to: record and log it
            if isinstance(exc, FunctionError):
                error = f"{exc.error_type}: {exc.message}"
            else:
                error = f"{type(exc).__name__}: {exc}"
            self._record(FiredSchedule(name, _iso(moment), ok=False, error=error))
            # EventBridge invokes asynchronously and Lambda would retry twice
            # over minutes; locally the failure is logged and the next firing
            # comes on schedule.
            log.warning("schedule %s: %s failed: %s", name, entry.spec.function, error)
            if raise_errors:
                raise
            return None
        self._record(FiredSchedule(name, _iso(moment), ok=True))
        log.info("schedule %s: invoked %s", name, entry.spec.function)
        return result

    def _record(self, fired: FiredSchedule) -> None:
        with self._lock:
            self._history.append(fired)

    def start(self) -> ScheduleRunner:
        if self._thread is not None:
            return self
        self._stop.clear()
        self._pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="schedule")
        self._thread = threading.Thread(target=self._run, name="schedules", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(10)
        pool, self._pool = self._pool, None
        if pool is not None:
            # Invocations under way finish (they are bounded by the function's
            # timeout); firings not yet started are dropped.
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ScheduleRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        # Each schedule runs on its own "schedule clock": it starts at the
        # wall-clock time of start() and advances by the expression's steps,
        # while real waits are those steps divided by the speedup.
        origin = time.monotonic()
        now = datetime.now(UTC)
        heap: list[tuple[float, int, str, datetime]] = []
        for seq, (name, entry) in enumerate(self.entries.items()):
            if not entry.spec.enabled:
                log.info("schedule %s is disabled; not started", name)
                continue
            nxt = entry.schedule.next_after(now)
            heapq.heappush(heap, (origin + (nxt - now).total_seconds() / self.speedup, seq, name, nxt))
        while heap and not self._stop.is_set():
            due, seq, name, scheduled = heap[0]
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            heapq.heappop(heap)
            # With a speedup the schedule clock runs ahead of the wall clock;
            # handlers get the wall-clock time, as they would in AWS.
            moment = scheduled if self.speedup == 1 else datetime.now(UTC)
            pool = self._pool
            if pool is not None:
                pool.submit(self._fire, name, moment)
            nxt = self.entries[name].schedule.next_after(scheduled)
            heapq.heappush(heap, (due + (nxt - scheduled).total_seconds() / self.speedup, seq, name, nxt))
