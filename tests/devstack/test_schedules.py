"""Schedule expressions and the schedule timer (devstack.schedules), with an
in-process function."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack.schedules import (
    CronSchedule,
    RateSchedule,
    ScheduleError,
    ScheduleRunner,
    parse_expression,
    speedup_from_env,
)
from devstack.template import FunctionSpec, ScheduleSpec


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("expression", "seconds"), [
    ("rate(1 minute)", 60),
    ("rate(5 minutes)", 300),
    ("rate(1 hour)", 3600),
    ("rate(2 hours)", 7200),
    ("rate(1 day)", 86400),
    ("rate( 3 days )", 3 * 86400),
])
def test_rate(expression: str, seconds: int) -> None:
    schedule = parse_expression(expression)
    assert schedule == RateSchedule(float(seconds))
    assert schedule.next_after(at("2026-03-01T00:00:00")) == at("2026-03-01T00:00:00") + timedelta(seconds=seconds)


@pytest.mark.parametrize(("expression", "after", "expected"), [
    ("cron(0 3 * * ? *)", "2026-03-01T02:59:00", "2026-03-01T03:00:00"),
    ("cron(0 3 * * ? *)", "2026-03-01T03:00:00", "2026-03-02T03:00:00"),
    ("cron(*/15 * * * ? *)", "2026-03-01T10:07:30", "2026-03-01T10:15:00"),
    ("cron(5/20 * * * ? *)", "2026-03-01T10:26:00", "2026-03-01T10:45:00"),
    ("cron(0,30 9-17 * * ? *)", "2026-03-01T17:30:00", "2026-03-02T09:00:00"),
    ("cron(0 */6 * * ? *)", "2026-03-01T13:00:00", "2026-03-01T18:00:00"),
    ("cron(15 10 ? * MON-FRI *)", "2026-03-06T11:00:00", "2026-03-09T10:15:00"),  # Fri -> Mon
    ("cron(0 8 ? * 1 *)", "2026-03-01T09:00:00", "2026-03-08T08:00:00"),  # 1 is Sunday
    ("cron(0 0 1 * ? *)", "2026-03-15T00:00:00", "2026-04-01T00:00:00"),
    ("cron(0 12 25 DEC ? *)", "2026-03-01T00:00:00", "2026-12-25T12:00:00"),
    ("cron(0 0 1 1 ? 2028)", "2026-03-01T00:00:00", "2028-01-01T00:00:00"),
])
def test_cron_next_firing(expression: str, after: str, expected: str) -> None:
    schedule = parse_expression(expression)
    assert isinstance(schedule, CronSchedule)
    assert schedule.next_after(at(after)) == at(expected)


def test_unsupported_day_markers_run_daily() -> None:
    schedule = parse_expression("cron(0 10 L * ? *)")
    assert isinstance(schedule, CronSchedule)
    assert schedule.next_after(at("2026-03-01T11:00:00")) == at("2026-03-02T10:00:00")
    # WED is a day name, not the W marker.
    wed = parse_expression("cron(0 10 ? * WED *)")
    assert wed.next_after(at("2026-03-01T00:00:00")) == at("2026-03-04T10:00:00")


@pytest.mark.parametrize("expression", [
    "rate(0 minutes)",
    "rate(5 weeks)",
    "every 5 minutes",
    "cron(0 3 * * ?)",
    "cron(60 3 * * ? *)",
    "cron(0 24 * * ? *)",
    "cron(0 3 * 13 ? *)",
    "cron(5-1 * * * ? *)",
])
def test_invalid_expressions(expression: str) -> None:
    with pytest.raises(ScheduleError):
        parse_expression(expression)


def test_a_cron_that_never_fires() -> None:
    schedule = parse_expression("cron(0 0 31 2 ? 2027)")  # 31 February
    with pytest.raises(ScheduleError, match="does not fire"):
        schedule.next_after(at("2026-01-01T00:00:00"))


def test_speedup_from_env() -> None:
    assert speedup_from_env({}) == 1.0
    assert speedup_from_env({"LOCAL_SCHEDULE_SPEEDUP": "60"}) == 60.0
    for bad in ("0", "-2", "fast", "inf"):
        with pytest.raises(ScheduleError):
            speedup_from_env({"LOCAL_SCHEDULE_SPEEDUP": bad})


def spec_with(*schedules: ScheduleSpec) -> FunctionSpec:
    return FunctionSpec(logical_id="Worker", code_dir=Path("."), handler="app.handler", environment={},
                        timeout=3, memory=128, layer_dirs=[], schedules=list(schedules))


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> Any:
        with self.lock:
            self.events.append(event)
        return {"ok": True}


def test_timer_fires_enabled_schedules_with_the_speedup() -> None:
    fn = Recorder()
    spec = spec_with(
        ScheduleSpec("Worker.Fast", "Worker", "rate(1 hour)", True, None),
        ScheduleSpec("Worker.Off", "Worker", "rate(1 minute)", False, {"never": True}),
    )
    # An hour becomes 0.1 s.
    with ScheduleRunner([spec], {"Worker": fn}, speedup=36000) as runner:
        deadline = time.monotonic() + 5
        while runner.fired("Fast") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert runner.fired("Worker.Fast") >= 3
    assert runner.fired("Worker.Off") == 0
    assert all(e["detail-type"] == "Scheduled Event" for e in fn.events)
    assert {e["resources"][0] for e in fn.events} == {
        "arn:aws:events:us-east-1:123456789012:rule/billing-local-WorkerFast"}
    assert len({e["id"] for e in fn.events}) == len(fn.events)


def test_stopped_timer_fires_no_more() -> None:
    fn = Recorder()
    runner = ScheduleRunner([spec_with(ScheduleSpec("Worker.Fast", "Worker", "rate(1 minute)", True, None))],
                            {"Worker": fn}, speedup=600).start()
    time.sleep(0.35)
    runner.stop()
    count = len(fn.events)
    time.sleep(0.3)
    assert count >= 2
    assert len(fn.events) == count


def test_unknown_schedule_and_missing_invoker() -> None:
    spec = spec_with(ScheduleSpec("Worker.Fast", "Worker", "rate(1 minute)", True, None))
    runner = ScheduleRunner([spec], {"Worker": Recorder()}, speedup=1)
    with pytest.raises(KeyError):
        runner.trigger("Nope")
    with pytest.raises(ValueError, match="no invoker"):
        ScheduleRunner([spec], {}, speedup=1)
    with pytest.raises(ScheduleError, match=r"Worker\.Bad"):
        ScheduleRunner([spec_with(ScheduleSpec("Worker.Bad", "Worker", "rate(1 fortnight)", True, None))],
                       {"Worker": Recorder()}, speedup=1)


def test_a_failing_trigger_raises_and_is_recorded() -> None:
    from devstack.runtime import FunctionError

    def boom(event: dict[str, Any]) -> Any:
        raise FunctionError("RuntimeError", "boom")

    runner = ScheduleRunner([spec_with(ScheduleSpec("Worker.Fast", "Worker", "rate(1 minute)", True, None))],
                            {"Worker": boom}, speedup=1)
    with pytest.raises(FunctionError):
        runner.trigger("Worker.Fast")
    (fired,) = runner.history()
    assert (fired.ok, fired.error) == (False, "RuntimeError: boom")
