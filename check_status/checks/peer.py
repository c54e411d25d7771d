"""CORE: `peer:<name>`: is another node's checker still running?

A checker that is not running cannot report itself. Each node reads its
peers' `/status` (served by `check-status serve`); a peer that cannot be
reached, or whose last run is older than PEER_STALE_SECONDS, is CRITICAL here,
so a node whose cron entry broke is texted about by its neighbours.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from check_status.model import (
    CheckResult,
    Metric,
    ProbeFailure,
    Status,
    human_duration,
    recorded_at,
)

# cron runs every minute: three missed runs in a row is no accident.
PEER_STALE_SECONDS = 180


def judge_peer(name: str, status: Any, now: datetime) -> CheckResult:
    check = f"peer:{name}"
    if isinstance(status, ProbeFailure):
        return CheckResult(
            check, Status.CRITICAL, f"unreachable: {status.reason}", detail=status.detail
        )
    status = status if isinstance(status, dict) else {}
    last_run = status.get("last_run") if isinstance(status.get("last_run"), dict) else {}
    # Only a scheduled run proves the peer's cron works; a peer of an older
    # version reports just its last run.
    at = recorded_at(status.get("last_scheduled_run", last_run))
    if at is None:
        return CheckResult(
            check, Status.CRITICAL, "its checker has never run by cron (no last run in /status)"
        )
    # Measured on the peer's own clock when it says what time it is, so clocks
    # that disagree between nodes raise no false alarm.
    peer_now = recorded_at({"at": status.get("time")}) or now
    age = (peer_now - at).total_seconds()
    metrics = (Metric("last_run_age_seconds", round(age, 1), "s", crit=PEER_STALE_SECONDS),)
    if age > PEER_STALE_SECONDS:
        return CheckResult(
            check,
            Status.CRITICAL,
            f"its checker stopped: last cron run {human_duration(age)} ago",
            metrics,
        )
    # The peer's own words are not repeated: only a status name it could have sent.
    peer_status = str(last_run.get("status") or "?")
    if peer_status not in Status.__members__:
        peer_status = "?"
    return CheckResult(
        check, Status.OK, f"checker ran {human_duration(max(age, 0))} ago ({peer_status})", metrics
    )
