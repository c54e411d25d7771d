"""CORE: `lib`: is finality keeping up with the head?

Head minus the last irreversible block is normally about 330 on Leap (DPoS)
and about 2 on Spring (Savanna). A LIB that stops while the head moves on is
a finality problem even before the gap reaches the thresholds.

Memory: {"num": last LIB number, "seen_at": when it was first seen, "head": head then}.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from check_status.checks import consequence
from check_status.config import Config
from check_status.model import (
    CheckResult,
    Metric,
    ProbeFailure,
    Status,
    format_time,
    human_duration,
)
from check_status.model import parse_time as parse_state_time
from check_status.probes.nodeos import ChainInfo


def judge_lib(
    info: ChainInfo | ProbeFailure, memory: dict[str, Any] | None, now: datetime, config: Config
) -> tuple[CheckResult, dict[str, Any] | None]:
    if isinstance(info, ProbeFailure):
        return consequence("lib", "nodeos"), memory
    head, lib = info.head_block_num, info.last_irreversible_block_num
    lag = head - lib
    metric = Metric(
        "lib_lag_blocks",
        lag,
        "",
        config.lib_lag_warn_blocks,
        config.lib_lag_crit_blocks,
        minimum=0,
    )
    new_memory = {"num": lib, "seen_at": format_time(now), "head": head}
    stuck_for = _stuck_for(memory, lib, head, now)
    if stuck_for is not None:
        new_memory["seen_at"] = memory["seen_at"]  # type: ignore[index]

    if lag < 0:
        status, summary = (
            Status.WARNING,
            f"LIB #{lib} is ahead of head #{head}: inconsistent get_info",
        )
    elif lag > config.lib_lag_crit_blocks:
        status, summary = Status.CRITICAL, f"LIB {lag} blocks behind head (LIB #{lib})"
    elif lag > config.lib_lag_warn_blocks:
        status, summary = Status.WARNING, f"LIB {lag} blocks behind head (LIB #{lib})"
    elif stuck_for is not None and stuck_for >= config.head_stall_seconds:
        status = Status.WARNING
        summary = f"LIB stuck at #{lib} for {human_duration(stuck_for)} while head moved to #{head}"
    else:
        status, summary = Status.OK, f"LIB #{lib}, {lag} blocks behind head"
    return CheckResult("lib", status, summary, (metric,)), new_memory


def _stuck_for(memory: dict[str, Any] | None, lib: int, head: int, now: datetime) -> float | None:
    """Seconds the LIB has stood still while the head advanced, or None if it moved."""
    if not isinstance(memory, dict):
        return None
    try:
        previous_lib = int(memory["num"])
        previous_head = int(memory["head"])
        seen_at = parse_state_time(str(memory["seen_at"]))
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    if lib != previous_lib or head <= previous_head:
        return None
    stuck_for = (now - seen_at).total_seconds()
    return stuck_for if stuck_for >= 0 else None
