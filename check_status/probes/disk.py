"""SHELL: how full the filesystem holding a path is, in space and in inodes."""

from __future__ import annotations

import os
from dataclasses import dataclass

from check_status.model import ProbeFailure


@dataclass(frozen=True)
class DiskUsage:
    path: str
    total_bytes: int
    available_bytes: int
    used_percent: float
    inodes_total: int
    inodes_available: int
    inodes_used_percent: float | None  # None where the filesystem has no inode limit
    # The exact counts behind the percentages, for Prometheus (None: not measured).
    used_bytes: int | None = None
    inodes_used: int | None = None


def probe_disk(path: str) -> DiskUsage | ProbeFailure:
    try:
        stats = os.statvfs(path)
    except FileNotFoundError:
        return ProbeFailure(f"{path} does not exist")
    except OSError as error:
        return ProbeFailure(f"cannot stat {path}: {error.strerror or error}")
    # Like df: "used" is measured against what unprivileged users can use, so
    # the root-reserved blocks count as used. nodeos does not run as root
    # everywhere, and df's percentage is the number operators compare.
    used_blocks = stats.f_blocks - stats.f_bfree
    usable_blocks = used_blocks + stats.f_bavail
    used_percent = 100.0 * used_blocks / usable_blocks if usable_blocks else 0.0
    inodes_used_percent = None
    if stats.f_files:
        inodes_used_percent = 100.0 * (stats.f_files - stats.f_ffree) / stats.f_files
    return DiskUsage(
        path=path,
        total_bytes=stats.f_blocks * stats.f_frsize,
        available_bytes=stats.f_bavail * stats.f_frsize,
        used_percent=used_percent,
        inodes_total=stats.f_files,
        inodes_available=stats.f_favail,
        inodes_used_percent=inodes_used_percent,
        used_bytes=used_blocks * stats.f_frsize,
        inodes_used=stats.f_files - stats.f_ffree,
    )
