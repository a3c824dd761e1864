"""The gc daemon's loop with a fake clock: when it runs the job, how it catches up after
downtime, what it remembers, and that it never sleeps past a fire time or `max_sleep`.

Real pieces throughout (croniter, the state file on disk); only time is injected.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelspec.retention.schedule import DaemonState, run_daemon

HOUR = 3600.0
DAY = 24 * HOUR
DAILY_AT_3 = "0 3 * * *"


def at(day: int, hour: int = 0, minute: int = 0) -> float:
    """A UTC timestamp in January 2026."""
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC).timestamp()


class FakeClock:
    """Time that moves only when the daemon sleeps; stops the loop at `until`."""

    def __init__(self, now: float, until: float) -> None:
        self.now = now
        self.until = until
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds

    def stop(self) -> bool:
        return self.now >= self.until


@pytest.fixture
def state(tmp_path: Path) -> DaemonState:
    return DaemonState(tmp_path / "schedule.json")


def run(state: DaemonState, clock: FakeClock, *, once: bool = False, max_sleep: float = 60.0,
        expression: str = DAILY_AT_3) -> list[tuple[float, float]]:
    """Run the daemon to the clock's end; returns each job call's (now, fire time)."""
    calls: list[tuple[float, float]] = []
    run_daemon(expression, state, lambda now, fire: calls.append((now, fire)), clock=clock.clock,
               sleep=clock.sleep, stop=clock.stop, max_sleep=max_sleep, once=once)
    return calls


def test_a_new_daemon_starts_counting_from_now_and_runs_at_each_fire_time(state: DaemonState) -> None:
    clock = FakeClock(at(1, 4), until=at(3, 12))  # started after the day's 03:00
    calls = run(state, clock, max_sleep=HOUR)
    assert [fire for _now, fire in calls] == [at(2, 3), at(3, 3)]
    assert all(now == fire for now, fire in calls)  # woken exactly at the fire time, never late
    assert state.last_run() == at(3, 3)


def test_sleeps_are_capped_by_max_sleep(state: DaemonState) -> None:
    clock = FakeClock(at(1, 1), until=at(1, 4))
    calls = run(state, clock)  # max_sleep: one minute
    assert [fire for _now, fire in calls] == [at(1, 3)]
    assert max(clock.sleeps) == 60.0
    assert len(clock.sleeps) == 180  # three hours of one-minute naps, no busy loop


def test_after_downtime_the_missed_fire_times_collapse_into_one_catch_up_run(state: DaemonState) -> None:
    state.record(at(1, 4))  # last ran on the 1st; the daemon was down for the 2nd, 3rd and 4th
    clock = FakeClock(at(5, 1), until=at(5, 2))
    calls = run(state, clock, max_sleep=HOUR)
    assert calls == [(at(5, 1), at(2, 3))]  # once, for the first missed fire time
    assert state.last_run() == at(5, 1)  # counted from the catch-up run: 03:00 today is next


def test_once_runs_what_is_due_and_returns(state: DaemonState) -> None:
    state.record(at(1, 4))
    clock = FakeClock(at(2, 5), until=at(31))
    assert run(state, clock, once=True) == [(at(2, 5), at(2, 3))]
    assert clock.sleeps == []
    assert run(state, clock, once=True) == []  # nothing due any more: returns without sleeping
    assert clock.sleeps == []


def test_once_on_a_new_daemon_runs_nothing_but_records_the_start(state: DaemonState) -> None:
    clock = FakeClock(at(1, 5), until=at(31))
    assert run(state, clock, once=True) == []
    assert json.loads(state.file.read_text()) == {"last_run": at(1, 5)}


def test_a_damaged_state_file_counts_as_a_new_daemon(state: DaemonState) -> None:
    state.file.write_text("{not json")
    clock = FakeClock(at(1, 5), until=at(31))
    assert run(state, clock, once=True) == []  # not a catch-up run from the epoch
    assert state.last_run() == at(1, 5)


def test_a_stop_request_ends_the_loop_before_the_next_run(state: DaemonState) -> None:
    clock = FakeClock(at(1, 1), until=at(1, 1))  # asked to stop at once
    assert run(state, clock) == []
    assert clock.sleeps == []


def test_a_failing_job_is_not_recorded_as_run(state: DaemonState) -> None:
    state.record(at(1, 4))
    clock = FakeClock(at(2, 5), until=at(31))

    def job(_now: float, _fire: float) -> None:
        raise RuntimeError("gc failed")

    with pytest.raises(RuntimeError):
        run_daemon(DAILY_AT_3, state, job, clock=clock.clock, sleep=clock.sleep, stop=clock.stop)
    assert state.last_run() == at(1, 4)  # still due: the next start tries again


def test_every_fifteen_minutes(state: DaemonState) -> None:
    clock = FakeClock(at(1, 2, 7), until=at(1, 3, 1))
    calls = run(state, clock, expression="*/15 * * * *")
    assert [fire for _now, fire in calls] == [at(1, 2, 15), at(1, 2, 30), at(1, 2, 45), at(1, 3, 0)]
