"""CORE: `chain_id`: the node is on the chain it should be (a wrong genesis shows here)."""

from __future__ import annotations

from check_status.checks import consequence
from check_status.model import CheckResult, ProbeFailure, Status
from check_status.probes.nodeos import ChainInfo


def judge_chain_id(info: ChainInfo | ProbeFailure, expected: str) -> CheckResult:
    if isinstance(info, ProbeFailure):
        return consequence("chain_id", "nodeos")
    if info.chain_id != expected:
        return CheckResult(
            "chain_id",
            Status.CRITICAL,
            f"wrong chain {info.chain_id[:12]}..., expected {expected[:12]}... (wrong genesis?)",
        )
    return CheckResult("chain_id", Status.OK, f"on chain {expected[:12]}...")
