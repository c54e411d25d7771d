"""CORE: `state_db`: how full chain-state-db-size-mb is.

When it fills, nodeos dies with bad_alloc and may leave a dirty database that
needs a replay: the failure that started this project. db_size_api_plugin is
often not loaded; that is reported as OK "not enabled", not as a failure.
"""

from __future__ import annotations

from check_status.checks import consequence
from check_status.config import Config
from check_status.model import CheckResult, Metric, ProbeFailure, Status, human_bytes
from check_status.probes.nodeos import DbSize, DbSizeNotEnabled


def judge_state_db(
    db: DbSize | DbSizeNotEnabled | ProbeFailure, nodeos_reachable: bool, config: Config
) -> CheckResult:
    if not nodeos_reachable:
        return consequence("state_db", "nodeos")
    if isinstance(db, DbSizeNotEnabled):
        return CheckResult("state_db", Status.OK, "not enabled (db_size_api_plugin not loaded)")
    if isinstance(db, ProbeFailure):
        return CheckResult("state_db", Status.UNKNOWN, f"db_size: {db.reason}", detail=db.detail)
    percent = 100.0 * db.used_bytes / db.size
    warn, crit = config.state_db_warn_percent, config.state_db_crit_percent
    status = Status.OK if percent <= warn else Status.CRITICAL if percent > crit else Status.WARNING
    summary = f"{percent:.0f}% used ({human_bytes(db.used_bytes)} of {human_bytes(db.size)})"
    if status is not Status.OK:
        summary += ": raise chain-state-db-size-mb"
    metric = Metric("used_percent", round(percent, 1), "%", warn, crit, 0, 100)
    exact = (
        Metric("used_bytes", db.used_bytes, "B", minimum=0),
        Metric("size_bytes", db.size, "B", minimum=0),
    )
    return CheckResult("state_db", status, summary, (metric, *exact))
