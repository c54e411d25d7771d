"""CORE: one module per check. Each is a pure function of facts, memory and `now`.

A check never touches the network, the disk or the clock; it gets what the
probes found, what earlier runs remembered (a plain dict from the state file)
and the thresholds, and returns a CheckResult, plus new memory where it keeps
any.
"""

from __future__ import annotations

from check_status.model import CheckResult, Status


def consequence(name: str, cause: str) -> CheckResult:
    """A check that cannot be judged because `cause` failed: shown, never paged on its own."""
    summary = f"not judged while {cause} is failing"
    return CheckResult(name, Status.UNKNOWN, summary, caused_by=cause)
