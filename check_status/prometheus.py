"""Prometheus: the run's facts in node_exporter's textfile-collector format.

`render` is pure; `write_textfile` writes atomically (a temp file in the same
directory, then a rename), so node_exporter never reads half a file.

Names follow Prometheus conventions: a `check_status_` prefix and base units
(bytes, seconds, ratios from 0 to 1, not percent or milliseconds). Ratios are
computed from exact byte and inode counts, never from rounded percentages, and
the counts are exported too so rules can do their own arithmetic.
`check_status_last_run_timestamp_seconds` lets an alert rule catch a checker
that stopped; prometheus/check-status.rules.yml has that rule and the ones for
a file that never appeared (docs/prometheus.md).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from check_status.model import CheckResult
from check_status.runner import RunReport


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    # repr is the shortest text that reads back as the same float: a ratio of
    # two integers (232 / 1000) prints as 0.232, without noise.
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


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


# (key, metric name, HELP text), in the order they appear in the file.
FAMILIES = (
    (
        "status",
        "check_status_status",
        "Status of each check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
    ),
    (
        "head_lag",
        "check_status_head_lag_seconds",
        "Now minus the head block time of the local nodeos.",
    ),
    (
        "lib_lag",
        "check_status_lib_lag_blocks",
        "Head block number minus last irreversible block number.",
    ),
    (
        "response",
        "check_status_nodeos_response_seconds",
        "Time the local nodeos took to answer get_info.",
    ),
    (
        "disk",
        "check_status_disk_used_ratio",
        "Used space of the filesystem holding the path, 0 to 1: used / (used + available), like df.",
    ),
    ("disk_used", "check_status_disk_used_bytes", "Used space of the filesystem holding the path."),
    (
        "disk_available",
        "check_status_disk_available_bytes",
        "Space left for non-root users on the filesystem holding the path.",
    ),
    (
        "disk_size",
        "check_status_disk_size_bytes",
        "Size of the filesystem holding the path, root-reserved blocks included.",
    ),
    (
        "inodes",
        "check_status_disk_inodes_used_ratio",
        "Used inodes of the filesystem holding the path, 0 to 1.",
    ),
    (
        "inodes_used",
        "check_status_disk_inodes_used",
        "Used inodes of the filesystem holding the path.",
    ),
    ("inodes_count", "check_status_disk_inodes", "Inodes of the filesystem holding the path."),
    (
        "state_db",
        "check_status_state_db_used_ratio",
        "Used part of the nodeos state database, 0 to 1.",
    ),
    (
        "state_db_used",
        "check_status_state_db_used_bytes",
        "Used bytes of the nodeos state database.",
    ),
    (
        "state_db_size",
        "check_status_state_db_size_bytes",
        "Size of the nodeos state database (chain-state-db-size-mb).",
    ),
    (
        "endpoint_up",
        "check_status_endpoint_up",
        "1 if every request to the endpoint got a nodeos get_info answer, else 0.",
    ),
    (
        "endpoint_response",
        "check_status_endpoint_response_seconds",
        "Slowest answer of the endpoint to get_info in the last run.",
    ),
    (
        "endpoint_head_lag",
        "check_status_endpoint_head_lag_seconds",
        "Now minus the head block time the endpoint's stalest backend reported.",
    ),
    (
        "last_run",
        "check_status_last_run_timestamp_seconds",
        "Unix time of the last check-status run.",
    ),
    (
        "incidents",
        "check_status_open_incidents",
        "Incidents open (texted or not) after the last run.",
    ),
)


def _add_disk(families: dict[str, _Family], result: CheckResult, node: str) -> None:
    path = result.name.removeprefix("disk:")
    used = result.metric("used_bytes")
    available = result.metric("available_bytes")
    if used is not None and available is not None:
        families["disk"].add(_ratio(used, used + available), node=node, path=path)
        families["disk_used"].add(used, node=node, path=path)
    if available is not None:
        families["disk_available"].add(available, node=node, path=path)
    if (size := result.metric("size_bytes")) is not None:
        families["disk_size"].add(size, node=node, path=path)
    inodes_used, inodes = result.metric("inodes_used"), result.metric("inodes_total")
    if inodes_used is not None and inodes is not None:
        families["inodes"].add(_ratio(inodes_used, inodes), node=node, path=path)
        families["inodes_used"].add(inodes_used, node=node, path=path)
        families["inodes_count"].add(inodes, node=node, path=path)


def _add_endpoint(families: dict[str, _Family], result: CheckResult, node: str) -> None:
    endpoint = result.name.removeprefix("endpoint:")
    # A failed request leaves the check without numbers: that is "down". An
    # endpoint that answers but lags or serves another chain is up, and its
    # check_status_status says what is wrong with it.
    response_ms = result.metric("response_ms")
    families["endpoint_up"].add(int(response_ms is not None), node=node, endpoint=endpoint)
    if response_ms is not None:
        families["endpoint_response"].add(
            round(response_ms / 1000, 4), node=node, endpoint=endpoint
        )
    if (lag := result.metric("head_lag_seconds")) is not None:
        families["endpoint_head_lag"].add(lag, node=node, endpoint=endpoint)


def render(report: RunReport, open_incidents: int) -> str:
    node = report.node
    families = {key: _Family(name, help_text) for key, name, help_text in FAMILIES}
    for result in report.results:
        families["status"].add(int(result.status), node=node, check=result.name)
        if result.name == "head_block" and result.metric("head_lag_seconds") is not None:
            families["head_lag"].add(result.metric("head_lag_seconds") or 0.0, node=node)
        elif result.name == "lib" and result.metric("lib_lag_blocks") is not None:
            families["lib_lag"].add(result.metric("lib_lag_blocks") or 0, node=node)
        elif result.name == "nodeos" and result.metric("response_ms") is not None:
            families["response"].add(
                round((result.metric("response_ms") or 0.0) / 1000, 4), node=node
            )
        elif result.name == "state_db":
            used, size = result.metric("used_bytes"), result.metric("size_bytes")
            if used is not None and size is not None:
                families["state_db"].add(_ratio(used, size), node=node)
                families["state_db_used"].add(used, node=node)
                families["state_db_size"].add(size, node=node)
        elif result.name.startswith("disk:"):
            _add_disk(families, result, node)
        elif result.name.startswith("endpoint:"):
            _add_endpoint(families, result, node)
    families["last_run"].add(float(int(report.now.timestamp())), node=node)
    families["incidents"].add(open_incidents, node=node)
    lines: list[str] = []
    for family in families.values():
        if len(family.lines) > 2:  # only families with samples
            lines += family.lines
    return "\n".join(lines) + "\n"


def write_problem(path: str, error: OSError) -> str:
    """The run's note when the textfile could not be written: what failed, what to do."""
    what = f"cannot write the Prometheus textfile {path}"
    if isinstance(error, UnsafeDirectory):
        return f"{what}: {error.strerror}"
    reason = error.strerror or str(error)
    if error.errno == errno.ENOENT and not Path(path).parent.is_dir():
        return f"{what} ({reason}): create {Path(path).parent} or fix PROMETHEUS_TEXTFILE"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{what} ({reason}): free space on its filesystem"
    return f"{what} ({reason}): make its directory writable by this user or fix PROMETHEUS_TEXTFILE"


class UnsafeDirectory(OSError):
    """The textfile directory is one check-status must not write into."""


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
        raise UnsafeDirectory(errno.EPERM, problem)
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
