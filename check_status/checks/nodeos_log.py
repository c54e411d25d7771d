"""CORE: `nodeos_log`: fatal lines nodeos wrote since the last run.

A fatal line is written once, but the node stays broken. So a line found is
remembered and keeps the check CRITICAL for `fatal_hold_seconds(ALERT_AFTER)`:
at least FATAL_HOLD_SECONDS, and always long enough for the alerting rules
(which need ALERT_AFTER consecutive failing runs, a minute apart) to text it.

The summary, which may be texted, names the fatal sign found (`bad_alloc`:
our word); the line itself is remote free text and goes in `detail`, shown by
`-v` and `--json` only.

Memory: {"position": LogPosition, "fatal_line": str, "fatal_sign": str,
"fatal_at": time}; the line at most LOG_LINE_LIMIT characters.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from check_status.model import CheckResult, ProbeFailure, Status, format_time, human_duration
from check_status.model import parse_time as parse_state_time
from check_status.probes.log import FATAL_SIGNS, LogChunk, sign_in
from check_status.remote_text import LOG_LINE_LIMIT, clean

__all__ = ["FATAL_SIGNS", "fatal_hold_seconds", "judge_nodeos_log"]

FATAL_HOLD_SECONDS = 15 * 60
# Beyond ALERT_AFTER runs: a cron minute or two missed under load still texts.
SPARE_RUNS = 5


def fatal_hold_seconds(alert_after: int) -> int:
    return max(FATAL_HOLD_SECONDS, (alert_after + SPARE_RUNS) * 60)


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
    found = chunk.fatal
    if found is not None:
        memory["fatal_line"], memory["fatal_sign"] = found.text, found.sign
        memory["fatal_at"] = format_time(now)
    held = _held_fatal_line(memory, now, hold_seconds)
    notes = f" ({', '.join(chunk.notes)})" if chunk.notes else ""
    if held is not None:
        line, sign, age = held
        seen = "just now" if age < 1 else f"{human_duration(age)} ago"
        summary = f"fatal line {seen}: {sign}" if sign else f"fatal line {seen}"
        return CheckResult(
            "nodeos_log", Status.CRITICAL, summary, detail=_shorten(line, sign)
        ), memory
    for key in ("fatal_line", "fatal_sign", "fatal_at"):
        memory.pop(key, None)
    return CheckResult(
        "nodeos_log", Status.OK, f"no fatal lines in {chunk.line_count} new lines{notes}"
    ), memory


def _held_fatal_line(
    memory: dict[str, Any], now: datetime, hold_seconds: int
) -> tuple[str, str | None, float] | None:
    """(line, sign, age) of the remembered fatal line while it is held, else None.

    The memory comes from the state file, which anything may have edited: the
    line is cleaned again, and the sign is one of ours or none.
    """
    try:
        line = clean(str(memory["fatal_line"]), LOG_LINE_LIMIT)
        age = (now - parse_state_time(str(memory["fatal_at"]))).total_seconds()
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    if age < 0:
        # The clock went back since the line was seen: still held, from now on.
        memory["fatal_at"] = format_time(now)
        age = 0.0
    if age >= hold_seconds:
        return None
    sign = memory.get("fatal_sign")
    if sign not in FATAL_SIGNS:
        sign = sign_in(line)  # a state written before the sign was kept
    memory["fatal_line"] = line
    return line, sign, age


def _shorten(line: str, sign: str | None) -> str:
    """The line from just before the fatal sign on: timestamps and thread ids say little."""
    at = line.find(sign) if sign else -1
    if at >= 0:
        start = max(0, at - 20)
        return ("..." if start else "") + line[start : start + 100]
    return line[:100]
