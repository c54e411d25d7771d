"""Value types shared by every part of check-status.

Probes produce facts, checks turn facts into a `CheckResult`, the alerting core
turns results into notifications. Everything here is an immutable value.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class Status(enum.IntEnum):
    """A check's verdict. The value is the Nagios exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def severity(self) -> int:
        """Rank for "the worst of these".

        UNKNOWN ranks between WARNING and CRITICAL, as in Icinga: a check that
        could not judge is worse than a warning, but a known outage (CRITICAL)
        is what the operator must hear about first.
        """
        return _SEVERITY[self]

    @classmethod
    def parse(cls, word: str) -> Status:
        return cls[word.strip().upper()]


_SEVERITY = {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.CRITICAL: 3}


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=lambda s: s.severity, default=Status.OK)


@dataclass(frozen=True)
class Metric:
    """One number a check measured.

    `warn` and `crit` are the thresholds it was judged against. Which metrics
    are Nagios perfdata, under which label, is output.py's (`_perf_slots`).
    """

    name: str
    value: float
    uom: str = ""
    warn: float | None = None
    crit: float | None = None
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check in one run.

    `caused_by` names another check whose failure made this one impossible to
    judge (head_block is UNKNOWN because nodeos is unreachable). Such results
    are consequences: they are shown but never page on their own.

    `summary` may be texted, so the only remote words in it are ones that
    identify the failure (an HTTP status, an error name such as
    NODEOS_UNREACHABLE, a fatal sign such as bad_alloc). Remote free text (an
    error body's message, the log line itself) goes in `detail`, which `-v`
    and `--json` show and no SMS ever carries.
    """

    name: str
    status: Status
    summary: str
    metrics: tuple[Metric, ...] = ()
    caused_by: str | None = None
    detail: str = ""

    def metric(self, name: str) -> float | None:
        for m in self.metrics:
            if m.name == name:
                return m.value
        return None


@dataclass(frozen=True)
class ProbeFailure:
    """A probe could not get the fact it went for.

    `reason` is one short line for an operator: "connection refused",
    "timeout after 3s", "HTTP 503 NODEOS_UNREACHABLE". Like a summary, it may
    be texted; the remote body's free text, cleaned, is in `detail`.
    """

    reason: str
    http_status: int | None = None
    body: object = field(default=None, compare=False, repr=False)
    detail: str = ""


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, to the second: what the state file and output use."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Read back a time written by `format_time` (or any ISO 8601 with a zone)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time without a zone: {text!r}")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # "0001-01-01T00:00:00+01:00" has no UTC form
        raise ValueError(f"time out of range: {text!r}") from None


def recorded_at(record: Any) -> datetime | None:
    """The time of a `{"at": ...}` record (a run, in the state or a peer's /status).

    None for anything else: a record that is missing, damaged or from a bad clock.
    """
    try:
        return parse_time(str(record["at"])) if isinstance(record, dict) else None
    except (KeyError, ValueError, OverflowError):
        return None


def human_duration(seconds: float) -> str:
    """`45s`, `12m`, `3h05m`, `2d4h`: short enough for an SMS."""
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 10:
        # Seconds still matter this close to the thresholds (60s, 2m...).
        return f"{minutes}m{rest:02d}s" if rest else f"{minutes}m"
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def human_bytes(count: float) -> str:
    """`512 B`, `3.4 GiB`: what df -h would say."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
