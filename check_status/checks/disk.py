"""CORE: `disk:<path>`: space and inodes on the filesystem holding a path.

nodeos's resource monitor shuts nodeos down at 90% used, so the default
critical threshold (88%) fires before that happens.
"""

from __future__ import annotations

from check_status.config import Config
from check_status.model import CheckResult, Metric, ProbeFailure, Status, human_bytes
from check_status.probes.disk import DiskUsage


def judge_disk(path: str, usage: DiskUsage | ProbeFailure, config: Config) -> CheckResult:
    name = f"disk:{path}"
    if isinstance(usage, ProbeFailure):
        return CheckResult(name, Status.UNKNOWN, usage.reason, detail=usage.detail)
    warn, crit = config.disk_warn_percent, config.disk_crit_percent

    def level(percent: float | None) -> Status:
        if percent is None or percent <= warn:
            return Status.OK
        return Status.CRITICAL if percent > crit else Status.WARNING

    space_status = level(usage.used_percent)
    inode_status = level(usage.inodes_used_percent)
    metrics = [
        Metric("used_percent", round(usage.used_percent, 1), "%", warn, crit, 0, 100),
        Metric("available_bytes", usage.available_bytes, "B", minimum=0),
    ]
    # Exact counts, so Prometheus ratios need not come from rounded percentages.
    # used / (used + available) is the used percent above, like df's.
    if usage.used_bytes is not None:
        metrics.append(Metric("used_bytes", usage.used_bytes, "B", minimum=0))
    metrics.append(Metric("size_bytes", usage.total_bytes, "B", minimum=0))
    if usage.inodes_used_percent is not None:
        metrics.append(
            Metric(
                "inodes_used_percent", round(usage.inodes_used_percent, 1), "%", warn, crit, 0, 100
            )
        )
        if usage.inodes_used is not None:
            metrics.append(Metric("inodes_used", usage.inodes_used, minimum=0))
        metrics.append(Metric("inodes_total", usage.inodes_total, minimum=0))
    space = f"{usage.used_percent:.0f}% used, {human_bytes(usage.available_bytes)} left"
    problems = []
    if space_status is not Status.OK:
        problems.append(space)
    if inode_status is not Status.OK:
        problems.append(
            f"inodes {usage.inodes_used_percent:.0f}% used, {usage.inodes_available} left"
        )
    status = max(space_status, inode_status)
    return CheckResult(name, status, "; ".join(problems) or space, tuple(metrics))
