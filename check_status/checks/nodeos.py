"""CORE: `nodeos`: the local API answered get_info correctly, or why not."""

from __future__ import annotations

from check_status.model import CheckResult, Metric, ProbeFailure, Status
from check_status.probes.http import host_label
from check_status.probes.nodeos import ChainInfo


def judge_nodeos(info: ChainInfo | ProbeFailure, url: str) -> CheckResult:
    if isinstance(info, ProbeFailure):
        return CheckResult(
            "nodeos", Status.CRITICAL, f"{info.reason} ({host_label(url)})", detail=info.detail
        )
    return CheckResult(
        "nodeos",
        Status.OK,
        f"{info.server_version} answering in {info.response_ms:.0f} ms",
        (
            Metric(
                "response_ms",
                round(info.response_ms, 1),
                "ms",
                minimum=0,
            ),
        ),
    )
