"""Prometheus: the run's facts in node_exporter's textfile-collector format.

`render` is pure; `write_textfile` writes atomically (a temp file in the same
directory, then a rename), so node_exporter never reads half a file.

Names follow Prometheus conventions: a `check_status_` prefix and base units
(seconds, ratios from 0 to 1, not percent or milliseconds).
`check_status_last_run_timestamp_seconds` lets an alert rule catch a checker
that stopped: `time() - check_status_last_run_timestamp_seconds > 180`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from check_status.runner import RunReport


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


class _Family:
    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]

    def add(self, value: float, **labels: str) -> None:
        if labels:
            inside = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
            self.lines.append(f"{self.name}{{{inside}}} {_number(value)}")
        else:
            self.lines.append(f"{self.name} {_number(value)}")


def render(report: RunReport, open_incidents: int) -> str:
    node = report.node
    families = {
        "status": _Family(
            "check_status_status",
            "Status of each check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        ),
        "head_lag": _Family(
            "check_status_head_lag_seconds", "Now minus the head block time of the local nodeos."
        ),
        "lib_lag": _Family(
            "check_status_lib_lag_blocks", "Head block number minus last irreversible block number."
        ),
        "disk": _Family(
            "check_status_disk_used_ratio", "Used space of the filesystem holding the path, 0 to 1."
        ),
        "inodes": _Family(
            "check_status_disk_inodes_used_ratio",
            "Used inodes of the filesystem holding the path, 0 to 1.",
        ),
        "state_db": _Family(
            "check_status_state_db_used_ratio", "Used part of the nodeos state database, 0 to 1."
        ),
        "response": _Family(
            "check_status_nodeos_response_seconds", "Time the local nodeos took to answer get_info."
        ),
        "last_run": _Family(
            "check_status_last_run_timestamp_seconds", "Unix time of the last check-status run."
        ),
        "incidents": _Family(
            "check_status_open_incidents", "Incidents open (texted or not) after the last run."
        ),
    }
    for result in report.results:
        families["status"].add(int(result.status), node=node, check=result.name)
        if result.name == "head_block" and result.metric("head_lag_seconds") is not None:
            families["head_lag"].add(result.metric("head_lag_seconds") or 0.0, node=node)
        elif result.name == "lib" and result.metric("lib_lag_blocks") is not None:
            families["lib_lag"].add(result.metric("lib_lag_blocks") or 0, node=node)
        elif result.name == "nodeos" and result.metric("response_ms") is not None:
            families["response"].add((result.metric("response_ms") or 0.0) / 1000, node=node)
        elif result.name == "state_db" and result.metric("used_percent") is not None:
            families["state_db"].add((result.metric("used_percent") or 0.0) / 100, node=node)
        elif result.name.startswith("disk:"):
            path = result.name.removeprefix("disk:")
            if result.metric("used_percent") is not None:
                families["disk"].add(
                    (result.metric("used_percent") or 0.0) / 100, node=node, path=path
                )
            if result.metric("inodes_used_percent") is not None:
                families["inodes"].add(
                    (result.metric("inodes_used_percent") or 0.0) / 100, node=node, path=path
                )
    families["last_run"].add(float(int(report.now.timestamp())), node=node)
    families["incidents"].add(open_incidents, node=node)
    lines: list[str] = []
    for family in families.values():
        if len(family.lines) > 2:  # only families with samples
            lines += family.lines
    return "\n".join(lines) + "\n"


def write_textfile(path: str, text: str) -> None:
    """Write atomically: node_exporter must never read a half-written file. Raises OSError.

    Run as root into a directory that may belong to node_exporter's user, so:
    a directory other users can write to is refused, the temp file is made
    with O_EXCL (mkstemp) and its mode set through its descriptor, never by
    name (a name can be swapped for a symlink between the write and a chmod),
    and os.replace renames over whatever is at the path without following it.
    """
    from check_status.state import directory_problem

    target = Path(path)
    problem = directory_problem(target.parent, "textfile", owner_may_differ=True)
    if problem:
        raise OSError(errno.EPERM, problem)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o644)  # node_exporter usually runs as another user
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temp_name, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
