"""CORE: `endpoint:<host>`: a public or backend API answers like a healthy nodeos.

This is the check the original outage needed: the load-balanced URL answered
NODEOS_UNREACHABLE for half the requests while the local node looked fine.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from check_status.config import Config
from check_status.model import CheckResult, Metric, ProbeFailure, Status, human_duration
from check_status.probes.http import host_label
from check_status.probes.nodeos import ChainInfo


def endpoint_check_name(url: str) -> str:
    return f"endpoint:{host_label(url)}"


def judge_endpoint(
    url: str,
    answers: Sequence[ChainInfo | ProbeFailure],
    reference_chain_id: str | None,
    now: datetime,
    config: Config,
) -> CheckResult:
    """Judge the ENDPOINT_REQUESTS answers one endpoint gave in this run.

    Behind a load balancer each request may reach another backend, so one
    broken backend fails only some of them: any failure is CRITICAL, and the
    summary says how many ("1 of 3 requests failed: HTTP 503 NODEOS_UNREACHABLE").
    `reference_chain_id` is EXPECTED_CHAIN_ID, or else the local node's chain.
    """
    name = endpoint_check_name(url)
    failures = [a for a in answers if isinstance(a, ProbeFailure)]
    infos = [a for a in answers if isinstance(a, ChainInfo)]
    if failures:
        reason = failures[0].reason
        if infos:
            reason = f"{len(failures)} of {len(answers)} requests failed: {reason}"
        return CheckResult(name, Status.CRITICAL, reason, detail=failures[0].detail)
    # The stalest backend decides: it is the one serving old data to someone.
    info = max(infos, key=lambda i: (now - i.head_block_time).total_seconds())
    lag = (now - info.head_block_time).total_seconds()
    metrics = (
        Metric("response_ms", round(max(i.response_ms for i in infos), 1), "ms", minimum=0),
        Metric(
            "head_lag_seconds",
            round(lag, 3),
            "s",
            config.head_lag_warn_seconds,
            config.head_lag_crit_seconds,
        ),
    )
    other_chain = next(
        (i for i in infos if reference_chain_id and i.chain_id != reference_chain_id), None
    )
    if other_chain is not None:
        return CheckResult(
            name, Status.CRITICAL, f"on another chain ({other_chain.chain_id[:12]}...)", metrics
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
