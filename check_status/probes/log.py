"""SHELL: the lines a log file gained since the last run, surviving rotation.

The position (inode, offset and a fingerprint of the file's first bytes) is
kept in the state file between runs. A file with another inode was rotated or
replaced; a file shorter than the offset, or whose first bytes changed, was
truncated (copytruncate) and rewritten. In both cases reading starts again at
the top. At most `max_bytes` are read per run, the newest ones.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from check_status.model import ProbeFailure

MAX_LOG_BYTES_PER_RUN = 4 * 1024 * 1024
_FINGERPRINT_BYTES = 128


@dataclass(frozen=True)
class LogPosition:
    inode: int
    offset: int
    fingerprint: str

    def to_json(self) -> dict[str, Any]:
        return {"inode": self.inode, "offset": self.offset, "fingerprint": self.fingerprint}

    @classmethod
    def from_json(cls, data: Any) -> LogPosition | None:
        try:
            return cls(int(data["inode"]), int(data["offset"]), str(data["fingerprint"]))
        except (TypeError, KeyError, ValueError, OverflowError):
            return None


@dataclass(frozen=True)
class LogChunk:
    lines: tuple[str, ...]
    position: LogPosition
    notes: tuple[str, ...] = ()


def _fingerprint(handle: Any, size: int) -> str:
    handle.seek(0)
    return hashlib.sha1(
        handle.read(min(size, _FINGERPRINT_BYTES)), usedforsecurity=False
    ).hexdigest()


def read_new_lines(
    path: str, previous: LogPosition | None, max_bytes: int = MAX_LOG_BYTES_PER_RUN
) -> LogChunk | ProbeFailure:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after fstat
    except FileNotFoundError:
        return ProbeFailure(f"log file {path} not found")
    except OSError as error:
        return ProbeFailure(f"cannot read log file {path}: {error.strerror or error}")
    with handle:
        stats = os.fstat(handle.fileno())
        size = stats.st_size
        if previous is None:
            # First run: what is already in the file is history, not news.
            position = LogPosition(stats.st_ino, size, _fingerprint(handle, size))
            return LogChunk((), position, ("started watching",))
        notes: list[str] = []
        old_lines: list[str] = []
        start = previous.offset
        if stats.st_ino != previous.inode:
            notes.append("log rotated")
            old_lines = _finish_rotated(path, previous, max_bytes)
            start = 0
        elif size < previous.offset:
            notes.append("log truncated")
            old_lines = _finish_rotated(path, previous, max_bytes)  # copytruncate's copy
            start = 0
        elif _fingerprint(handle, min(previous.offset, _FINGERPRINT_BYTES)) != previous.fingerprint:
            notes.append("log replaced")
            old_lines = _finish_rotated(path, previous, max_bytes)
            start = 0
        if size - start > max_bytes:
            notes.append(f"skipped {size - start - max_bytes} bytes")
            start = size - max_bytes
        handle.seek(start)
        data = handle.read(size - start)
        # Leave a half-written last line for the next run, unless it alone
        # fills the budget (then it will never complete within it).
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) < max_bytes:
            cut = 0
        elif cut == 0:
            cut = len(data)
        lines = data[:cut].decode("utf-8", "replace").splitlines()
        offset = start + cut
        position = LogPosition(
            stats.st_ino, offset, _fingerprint(handle, min(offset, _FINGERPRINT_BYTES))
        )
        return LogChunk(tuple(old_lines + lines), position, tuple(notes))


def _finish_rotated(path: str, previous: LogPosition, max_bytes: int) -> list[str]:
    """Read what the old file gained after our last look, if logrotate left it as
    `path.1`: renamed (same inode) or, with copytruncate, copied (same first bytes)."""
    rotated = path + ".1"
    try:
        with open(rotated, "rb") as handle:
            stats = os.fstat(handle.fileno())
            if stats.st_size <= previous.offset:
                return []
            same_file = stats.st_ino == previous.inode
            fingerprint = _fingerprint(handle, min(previous.offset, _FINGERPRINT_BYTES))
            if not same_file and fingerprint != previous.fingerprint:
                return []
            handle.seek(max(previous.offset, stats.st_size - max_bytes))
            return handle.read(max_bytes).decode("utf-8", "replace").splitlines()
    except OSError:
        return []
