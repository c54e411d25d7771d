"""CORE: `head_block`: is the head fresh, and still moving?

Three ways a head goes wrong, each caught here:
- lag: now minus head_block_time is past a threshold;
- stalled: the head number has not changed for HEAD_STALL_SECONDS across runs.
  A node in a "coma" still answers 200, and Spring answers get_info from a
  cache, so only the number not moving reveals it;
- went back: after a resync or a restore the head restarts far lower.

Memory: {"num": last head number, "seen_at": when that number was first seen}.
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

# Forks shorter than one producer round (12 blocks) happen in normal
# operation; a head that falls back further than that was resynced or restored.
RESYNC_BLOCKS = 12
# Head time ahead of our clock by more than this means one of the clocks is wrong.
FUTURE_TOLERANCE_SECONDS = 5


def head_lag_seconds(info: ChainInfo, now: datetime) -> float:
    return (now - info.head_block_time).total_seconds()


def judge_head_block(
    info: ChainInfo | ProbeFailure, memory: dict[str, Any] | None, now: datetime, config: Config
) -> tuple[CheckResult, dict[str, Any] | None]:
    if isinstance(info, ProbeFailure):
        return consequence("head_block", "nodeos"), memory
    lag = head_lag_seconds(info, now)
    num = info.head_block_num
    problems: list[tuple[Status, str]] = []

    if lag > config.head_lag_crit_seconds:
        problems.append((Status.CRITICAL, f"head #{num} is {human_duration(lag)} behind"))
    elif lag > config.head_lag_warn_seconds:
        problems.append((Status.WARNING, f"head #{num} is {human_duration(lag)} behind"))
    elif lag < -FUTURE_TOLERANCE_SECONDS:
        problems.append(
            (
                Status.WARNING,
                f"head time is {human_duration(-lag)} in the future: check the clocks (NTP)",
            )
        )

    previous_num, seen_at = _remembered(memory)
    new_memory = {"num": num, "seen_at": format_time(now)}
    if previous_num is not None and seen_at is not None:
        if num == previous_num:
            unchanged_for = (now - seen_at).total_seconds()
            if unchanged_for < 0:
                # The clock went back since that run: start the stall timer afresh
                # instead of trusting a negative age.
                pass
            else:
                new_memory["seen_at"] = format_time(seen_at)
                if unchanged_for >= config.head_stall_seconds:
                    problems.append(
                        (
                            Status.CRITICAL,
                            f"head stalled at #{num} for {human_duration(unchanged_for)}",
                        )
                    )
        elif num < previous_num - RESYNC_BLOCKS:
            problems.append(
                (
                    Status.WARNING,
                    f"head went back from #{previous_num} to #{num} (resync or restore?)",
                )
            )

    metrics = (
        Metric(
            "head_lag_seconds",
            round(lag, 3),
            "s",
            config.head_lag_warn_seconds,
            config.head_lag_crit_seconds,
        ),
        Metric("head_block_num", num),
    )
    if problems:
        problems.sort(key=lambda p: p[0].severity, reverse=True)
        status = problems[0][0]
        summary = "; ".join(text for _, text in problems)
    else:
        status = Status.OK
        summary = f"head #{num} by {info.head_block_producer}, {max(lag, 0):.1f}s behind"
    return CheckResult("head_block", status, summary, metrics), new_memory


def _remembered(memory: dict[str, Any] | None) -> tuple[int | None, datetime | None]:
    if not isinstance(memory, dict):
        return None, None
    try:
        return int(memory["num"]), parse_state_time(str(memory["seen_at"]))
    except (KeyError, TypeError, ValueError, OverflowError):
        return None, None
