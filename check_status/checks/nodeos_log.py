"""CORE: `nodeos_log`: fatal lines nodeos wrote since the last run.

A fatal line is written once, but the node stays broken. So a line found is
remembered and keeps the check CRITICAL for `fatal_hold_seconds(ALERT_AFTER)`:
at least FATAL_HOLD_SECONDS, and always long enough for the alerting rules
(which need ALERT_AFTER consecutive failing runs, a minute apart) to text it.

Memory: {"position": LogPosition, "fatal_line": str, "fatal_at": time}.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from check_status.model import CheckResult, ProbeFailure, Status, format_time, human_duration
from check_status.model import parse_time as parse_state_time
from check_status.probes.log import LogChunk

FATAL_SIGNS = (
    "bad_alloc",
    "database dirty flag set",
    "Database has reached an unsafe level of usage",
    "replay required",
)
FATAL_HOLD_SECONDS = 15 * 60
# Beyond ALERT_AFTER runs: a cron minute or two missed under load still texts.
SPARE_RUNS = 5


def fatal_hold_seconds(alert_after: int) -> int:
    return max(FATAL_HOLD_SECONDS, (alert_after + SPARE_RUNS) * 60)


def find_fatal_line(lines: tuple[str, ...]) -> str | None:
    """The last line showing a fatal sign: the most recent state of the node."""
    for line in reversed(lines):
        if any(sign in line for sign in FATAL_SIGNS):
            return " ".join(line.split())
    return None


def judge_nodeos_log(
    chunk: LogChunk | ProbeFailure,
    memory: dict[str, Any] | None,
    now: datetime,
    hold_seconds: int = FATAL_HOLD_SECONDS,
) -> tuple[CheckResult, dict[str, Any]]:
    memory = dict(memory) if isinstance(memory, dict) else {}
    if isinstance(chunk, ProbeFailure):
        return CheckResult("nodeos_log", Status.UNKNOWN, chunk.reason), memory
    memory["position"] = chunk.position.to_json()
    found = find_fatal_line(chunk.lines)
    if found is not None:
        memory["fatal_line"], memory["fatal_at"] = found, format_time(now)
    line, age = _held_fatal_line(memory, now, hold_seconds)
    notes = f" ({', '.join(chunk.notes)})" if chunk.notes else ""
    if line is not None:
        seen = "just now" if age < 1 else f"{human_duration(age)} ago"
        return CheckResult(
            "nodeos_log", Status.CRITICAL, f"fatal line {seen}: {_shorten(line)}"
        ), memory
    memory.pop("fatal_line", None)
    memory.pop("fatal_at", None)
    return CheckResult(
        "nodeos_log", Status.OK, f"no fatal lines in {len(chunk.lines)} new lines{notes}"
    ), memory


def _held_fatal_line(
    memory: dict[str, Any], now: datetime, hold_seconds: int
) -> tuple[str | None, float]:
    try:
        line = str(memory["fatal_line"])
        age = (now - parse_state_time(str(memory["fatal_at"]))).total_seconds()
    except (KeyError, TypeError, ValueError, OverflowError):
        return None, 0.0
    if age < 0:
        # The clock went back since the line was seen: still held, from now on.
        memory["fatal_at"] = format_time(now)
        age = 0.0
    return (line, age) if age < hold_seconds else (None, 0.0)


def _shorten(line: str) -> str:
    """The line from just before the fatal sign on: timestamps and thread ids say little."""
    for sign in FATAL_SIGNS:
        at = line.find(sign)
        if at >= 0:
            start = max(0, at - 20)
            return ("..." if start else "") + line[start : start + 100]
    return line[:100]
