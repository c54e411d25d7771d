"""The runner's pure bookkeeping (track_statuses) and its probe deadline (run_concurrently)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from check_status.model import CheckResult, ProbeFailure, Status
from check_status.runner import run_concurrently, track_statuses

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
OK, WARN, CRIT, UNKNOWN = Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN


def stamp(minute: int) -> str:
    return (START + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")


# Each row: the status of one check in successive runs (a minute apart), and after the
# last run its expected (since-minute, failing_runs, ok_runs).
@pytest.mark.parametrize(
    ("sequence", "since_minute", "failing_runs", "ok_runs"),
    [
        ([OK], 0, 0, 1),
        ([OK, OK, OK], 0, 0, 3),
        ([WARN], 0, 1, 0),
        ([WARN, WARN, WARN], 0, 3, 0),
        ([OK, OK, WARN], 2, 1, 0),
        ([WARN, WARN, OK], 2, 0, 1),
        ([WARN, WARN, OK, OK], 2, 0, 2),
        ([WARN, CRIT], 1, 2, 0),  # worse, still failing: the count goes on, `since` restarts
        ([CRIT, UNKNOWN, CRIT], 2, 3, 0),
        ([OK, WARN, OK, WARN], 3, 1, 0),  # a flap resets both counts
    ],
)
def test_track_statuses_sequences(
    sequence: list[Status], since_minute: int, failing_runs: int, ok_runs: int
) -> None:
    tracked: dict[str, Any] = {}
    for minute, status in enumerate(sequence):
        result = CheckResult("head_block", status, f"run {minute}")
        tracked = track_statuses(tracked, [result], START + timedelta(minutes=minute))
    record = tracked["head_block"]
    assert record == {
        "status": sequence[-1].name,
        "since": stamp(since_minute),
        "failing_runs": failing_runs,
        "ok_runs": ok_runs,
        "summary": f"run {len(sequence) - 1}",
    }


def test_track_statuses_keeps_checks_apart() -> None:
    first = track_statuses({}, [CheckResult("a", WARN, "x"), CheckResult("b", OK, "y")], START)
    second = track_statuses(
        first,
        [CheckResult("a", WARN, "x"), CheckResult("b", CRIT, "z")],
        START + timedelta(minutes=1),
    )
    assert second["a"]["failing_runs"] == 2
    assert second["a"]["since"] == stamp(0)
    assert second["b"]["failing_runs"] == 1
    assert second["b"]["since"] == stamp(1)
    assert second["b"]["summary"] == "z"


@pytest.mark.parametrize(
    "previous_record",
    [
        "not a dict",
        {"status": "WARNING", "failing_runs": "seven", "ok_runs": -3},
        {"status": "WARNING", "failing_runs": None},
    ],
)
def test_track_statuses_with_a_damaged_record(previous_record: object) -> None:
    tracked = track_statuses({"a": previous_record}, [CheckResult("a", WARN, "x")], START)
    assert tracked["a"]["failing_runs"] == 1
    assert tracked["a"]["ok_runs"] == 0


def test_track_statuses_keeps_since_from_the_record() -> None:
    previous = {"a": {"status": "CRITICAL", "since": "2024-04-30T00:00:00Z", "failing_runs": 40}}
    tracked = track_statuses(previous, [CheckResult("a", CRIT, "x")], START)
    assert tracked["a"]["since"] == "2024-04-30T00:00:00Z"
    assert tracked["a"]["failing_runs"] == 41


# --- run_concurrently ----------------------------------------------------------


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Lets a deliberately hung task finish once the test is over."""
    event = threading.Event()
    yield event
    event.set()


def test_results_by_name() -> None:
    results = run_concurrently(
        {"one": lambda: 1, "two": lambda: "two", "failure": lambda: ProbeFailure("refused")},
        deadline_seconds=2,
    )
    assert results == {"one": 1, "two": "two", "failure": ProbeFailure("refused")}


def test_tasks_run_at_the_same_time() -> None:
    started = time.monotonic()
    results = run_concurrently(
        {f"t{n}": lambda n=n: time.sleep(0.3) or n for n in range(5)}, deadline_seconds=3
    )
    assert results == {f"t{n}": n for n in range(5)}
    assert time.monotonic() - started < 1.0  # not 5 x 0.3 s


def test_a_hung_task_is_no_answer_within_the_deadline(release: threading.Event) -> None:
    deadline = 0.5
    started = time.monotonic()
    results = run_concurrently(
        {"fast": lambda: "ok", "hung": lambda: release.wait(30)}, deadline_seconds=deadline
    )
    elapsed = time.monotonic() - started
    assert elapsed < deadline + 0.5
    assert elapsed >= deadline - 0.05
    assert results["fast"] == "ok"
    assert isinstance(results["hung"], ProbeFailure)
    assert "no answer" in results["hung"].reason
    assert "0.5s" in results["hung"].reason


def test_a_raising_task_becomes_a_probe_failure() -> None:
    def broken() -> None:
        raise KeyError("head_block_num")

    results = run_concurrently({"broken": broken, "fine": lambda: 7}, deadline_seconds=2)
    assert results["fine"] == 7
    failure = results["broken"]
    assert isinstance(failure, ProbeFailure)
    assert "KeyError" in failure.reason
    assert "head_block_num" in failure.reason


def test_no_tasks() -> None:
    assert run_concurrently({}, deadline_seconds=0.1) == {}
