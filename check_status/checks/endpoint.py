"""CORE: `endpoint:<host>`: a public or backend API answers like a healthy nodeos.

This is the check the original outage needed: the load-balanced URL answered
NODEOS_UNREACHABLE for half the requests while the local node looked fine.
"""

from __future__ import annotations

from datetime import datetime

from check_status.config import Config
from check_status.model import CheckResult, Metric, ProbeFailure, Status, human_duration
from check_status.probes.http import host_label
from check_status.probes.nodeos import ChainInfo


def endpoint_check_name(url: str) -> str:
    return f"endpoint:{host_label(url)}"


def judge_endpoint(
    url: str,
    info: ChainInfo | ProbeFailure,
    reference_chain_id: str | None,
    now: datetime,
    config: Config,
) -> CheckResult:
    """`reference_chain_id` is EXPECTED_CHAIN_ID, or else the local node's chain."""
    name = endpoint_check_name(url)
    if isinstance(info, ProbeFailure):
        return CheckResult(name, Status.CRITICAL, info.reason)
    lag = (now - info.head_block_time).total_seconds()
    metrics = (
        Metric("response_ms", round(info.response_ms, 1), "ms", minimum=0),
        Metric(
            "head_lag_seconds",
            round(lag, 3),
            "s",
            config.head_lag_warn_seconds,
            config.head_lag_crit_seconds,
        ),
    )
    if reference_chain_id and info.chain_id != reference_chain_id:
        return CheckResult(
            name, Status.CRITICAL, f"on another chain ({info.chain_id[:12]}...)", metrics
        )
    if lag > config.head_lag_crit_seconds:
        return CheckResult(name, Status.CRITICAL, f"head {human_duration(lag)} behind", metrics)
    if lag > config.head_lag_warn_seconds:
        return CheckResult(name, Status.WARNING, f"head {human_duration(lag)} behind", metrics)
    return CheckResult(
        name,
        Status.OK,
        f"head #{info.head_block_num}, {max(lag, 0):.1f}s behind, {info.response_ms:.0f} ms",
        metrics,
    )
