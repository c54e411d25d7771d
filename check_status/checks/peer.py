"""CORE: `peer:<name>`: is another node's checker still running?

A checker that is not running cannot report itself. Each node reads its
peers' `/status` (served by `check-status serve`); a peer that cannot be
reached, or whose last run is older than PEER_STALE_SECONDS, is CRITICAL here,
so a node whose cron entry broke is texted about by its neighbours.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from check_status.model import CheckResult, Metric, ProbeFailure, Status, human_duration, parse_time

# cron runs every minute: three missed runs in a row is no accident.
PEER_STALE_SECONDS = 180


def judge_peer(name: str, status: Any, now: datetime) -> CheckResult:
    check = f"peer:{name}"
    if isinstance(status, ProbeFailure):
        return CheckResult(check, Status.CRITICAL, f"unreachable: {status.reason}")
    try:
        last_run = status["last_run"]
        at = parse_time(str(last_run["at"]))
    except (KeyError, TypeError, ValueError, OverflowError):
        return CheckResult(
            check, Status.CRITICAL, "its checker has never run (no last run in /status)"
        )
    age = (now - at).total_seconds()
    metrics = (Metric("last_run_age_seconds", round(age, 1), "s", crit=PEER_STALE_SECONDS),)
    if age > PEER_STALE_SECONDS:
        return CheckResult(
            check,
            Status.CRITICAL,
            f"its checker stopped: last run {human_duration(age)} ago",
            metrics,
        )
    peer_status = str(last_run.get("status") or "?")
    return CheckResult(
        check, Status.OK, f"checker ran {human_duration(max(age, 0))} ago ({peer_status})", metrics
    )
