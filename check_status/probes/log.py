"""SHELL: scan what a log file gained since the last run for fatal signs, surviving rotation.

The position (inode, offset and a fingerprint of the file's first bytes) is
kept in the state file between runs. A file with another inode was rotated or
replaced; a file shorter than the offset, or whose first bytes changed, was
truncated (copytruncate) and rewritten. In both cases reading starts again at
the top, after the rest of the old file is read from `<log>.1`.

Every byte written since the last run is scanned: a fatal line followed by
gigabytes of noise within a minute is still found, since `bad_alloc` is the
line this check exists for. The bytes are read in READ_CHUNK_BYTES pieces and
only the last fatal line is kept (cleaned, at most LOG_LINE_LIMIT characters),
with a count of the lines, so memory stays small however much was written. A
line is held in memory up to MAX_LINE_BYTES; a longer one (a 3 MiB line, a
crash's run of NUL bytes) is scanned piece by piece, each piece joined to the
last few bytes of the one before, so no sign is lost at a boundary.

A run scans at most MAX_SCAN_BYTES_PER_RUN or for MAX_SCAN_SECONDS, whichever
comes first (the probe must answer within the run's probe deadline, or its
position would never be saved), and the next run goes on from where it
stopped: nothing is ever skipped.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

from check_status.model import ProbeFailure
from check_status.remote_text import LOG_LINE_LIMIT, clean

# Written by nodeos (and the chain plugin) when the node is broken for good.
# Our words: the summary, which may be texted, names the sign, never the line.
FATAL_SIGNS = (
    "bad_alloc",
    "database dirty flag set",
    "Database has reached an unsafe level of usage",
    "replay required",
)

READ_CHUNK_BYTES = 1024 * 1024
MAX_LINE_BYTES = 64 * 1024
MAX_SCAN_BYTES_PER_RUN = 256 * 1024 * 1024
# The probe phase's deadline is HTTP_TIMEOUT_SECONDS (at least 1) plus 1 s.
MAX_SCAN_SECONDS = 1.5
# Enough bytes for LOG_LINE_LIMIT characters of UTF-8 around a sign.
_EXCERPT_BYTES = 4 * LOG_LINE_LIMIT
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
            position = cls(int(data["inode"]), int(data["offset"]), str(data["fingerprint"]))
        except (TypeError, KeyError, ValueError, OverflowError):
            return None
        return position if position.offset >= 0 else None


@dataclass(frozen=True)
class FatalLine:
    sign: str  # one of FATAL_SIGNS: safe to text
    text: str  # the line, cleaned, at most LOG_LINE_LIMIT characters, the sign in it


@dataclass(frozen=True)
class LogChunk:
    """What the log gained since the last run: how many lines, and the last line
    showing a fatal sign (the most recent state of the node). The lines
    themselves are scanned and dropped: memory stays bounded."""

    position: LogPosition
    notes: tuple[str, ...] = ()
    line_count: int = 0
    fatal: FatalLine | None = None


def sign_in(text: str) -> str | None:
    """The first of FATAL_SIGNS (in their order) that `text` shows."""
    return next((sign for sign in FATAL_SIGNS if sign in text), None)


def fatal_in(line: str) -> FatalLine | None:
    """`line` as a FatalLine if it shows a fatal sign: whitespace runs made one
    space, NUL runs one mark, cut to LOG_LINE_LIMIT with the sign kept in view."""
    sign = sign_in(line)
    if sign is None:
        return None
    text = " ".join(_collapse_nuls(line).split())
    at = text.find(sign)
    if at + len(sign) > LOG_LINE_LIMIT - 2:
        # Timestamps and thread ids come first; the sign is what matters.
        text = "..." + text[max(0, at - 40) :]
    return FatalLine(sign, clean(text, LOG_LINE_LIMIT))


def _collapse_nuls(text: str) -> str:
    """A run of NULs (what a crash leaves where the last writes were) is one NUL,
    which `clean` then shows as one mark: line noise, never a line's worth."""
    return _NUL_RUN.sub("\0", text) if "\0\0" in text else text


_NUL_RUN = re.compile("\0{2,}")


def _fingerprint(handle: BinaryIO, size: int) -> str:
    handle.seek(0)
    return hashlib.sha1(
        handle.read(min(size, _FINGERPRINT_BYTES)), usedforsecurity=False
    ).hexdigest()


class _Budget:
    """What is left of this run's scan: bytes and time.

    At least MAX_LINE_BYTES + 1 bytes: a run always gets past one line, or one
    capped piece of it, so a scan stopped at the budget always moves on.
    """

    def __init__(self, max_bytes: int, max_seconds: float) -> None:
        self.bytes_left = max(max_bytes, MAX_LINE_BYTES + 1)
        self.give_up = time.monotonic() + max_seconds

    def spent(self) -> bool:
        return self.bytes_left <= 0 or time.monotonic() >= self.give_up


@dataclass
class _Scan:
    """The bytes from `start` scanned so far: where it stopped, lines, last fatal line."""

    offset: int
    lines: int = 0
    fatal: FatalLine | None = None
    finished: bool = True  # False: stopped at the budget, the rest is for the next run


_SIGN_BYTES = tuple(sign.encode() for sign in FATAL_SIGNS)
# Carried from one piece of an over-long line to the next, so that a sign cut
# in two by the boundary is whole again.
_OVERLAP = max(len(sign) for sign in _SIGN_BYTES) - 1


def _scan(handle: BinaryIO, start: int, end: int, budget: _Budget, *, final: bool = False) -> _Scan:
    """Scan the bytes [start, end) of `handle` for fatal lines, in bounded pieces.

    A last line without its newline is left for the next run (nodeos may be
    writing it), unless it already shows a sign (a crashed nodeos never
    finishes it) or `final` says the file is done growing (a rotated file).
    """
    scan = _Scan(start)
    carry = b""  # the unfinished line: whole up to MAX_LINE_BYTES, else its last bytes
    cut = False  # the unfinished line lost its start to the cap
    seen = 0  # bytes of `carry` already searched for signs (the overlap of a cut line)
    position = start  # file offset of carry[0]
    handle.seek(start)
    first = True
    while position + len(carry) < end:
        if not first and budget.spent():
            scan.finished = False
            scan.offset = position  # the unfinished line is read again next run
            return scan
        first = False
        want = min(READ_CHUNK_BYTES, end - position - len(carry))
        if budget.bytes_left > 0:
            want = min(want, budget.bytes_left)
        piece = handle.read(want)
        if not piece:
            break  # the file shrank while read: the next run sees why
        budget.bytes_left -= len(piece)
        buffer = carry + piece if carry else piece
        last_newline = buffer.rfind(b"\n")
        if last_newline >= 0:
            scan.lines += buffer.count(b"\n", 0, last_newline + 1)
            _look(buffer, last_newline + 1, cut, seen, scan)
            position += last_newline + 1
            buffer = buffer[last_newline + 1 :]
            cut, seen = False, 0
        if len(buffer) > MAX_LINE_BYTES:
            # An over-long line: search what there is, keep only its last bytes.
            _look(buffer, len(buffer), cut, seen, scan)
            position += len(buffer) - _OVERLAP
            buffer = buffer[-_OVERLAP:]
            cut, seen = True, _OVERLAP
        carry = buffer
    scan.offset = position
    if carry:
        before = scan.fatal
        _look(carry, len(carry), cut, seen, scan)
        if final or scan.fatal is not before:
            scan.lines += 1
            scan.offset = position + len(carry)
    return scan


def _look(buffer: bytes, end: int, cut: bool, seen: int, scan: _Scan) -> None:
    """Record the last line in buffer[:end] showing a fatal sign, if any.

    `cut`: the first line in `buffer` lost its start. `seen`: its first bytes
    were searched already (a sign wholly within them was recorded then).
    """
    found = [
        at
        for sign in _SIGN_BYTES
        if (at := buffer.rfind(sign, 0, end)) >= 0 and at + len(sign) > seen
    ]
    if not found:
        return
    at = max(found)
    line_start = buffer.rfind(b"\n", 0, at) + 1
    line_end = buffer.find(b"\n", at, end)
    line_end = end if line_end < 0 else line_end
    cut = cut and line_start == 0
    if line_end - line_start <= _EXCERPT_BYTES:
        excerpt = buffer[line_start:line_end]
    else:
        # Only the bytes around the sign: the line may be megabytes long.
        begin = max(line_start, at - _EXCERPT_BYTES // 4)
        excerpt = buffer[begin : min(begin + _EXCERPT_BYTES, line_end)]
        cut = cut or begin > line_start
    fatal = fatal_in(("..." if cut else "") + excerpt.decode("utf-8", "replace"))
    if fatal is not None:
        scan.fatal = fatal


def read_new_lines(
    path: str,
    previous: LogPosition | None,
    max_bytes: int = MAX_SCAN_BYTES_PER_RUN,
    max_seconds: float = MAX_SCAN_SECONDS,
) -> LogChunk | ProbeFailure:
    """Scan what `path` gained since `previous`; on the first run, only note where it ends."""
    try:
        handle = _open_regular(path)
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
            return LogChunk(position, ("started watching",))
        budget = _Budget(max_bytes, max_seconds)
        notes: list[str] = []
        old = _Scan(0)
        start = previous.offset
        change = None
        if stats.st_ino != previous.inode:
            change = "log rotated"
        elif size < previous.offset:
            change = "log truncated"
        elif _fingerprint(handle, min(previous.offset, _FINGERPRINT_BYTES)) != previous.fingerprint:
            change = "log replaced"
        if change is not None:
            notes.append(change)
            old = _finish_rotated(path, previous, budget)
            if not old.finished:
                # The old file is not done: go on with it next run, from here.
                notes.append(f"the rest of {path}.1 next run")
                position = LogPosition(previous.inode, old.offset, previous.fingerprint)
                return LogChunk(position, tuple(notes), old.lines, old.fatal)
            start = 0
        new = _scan(handle, start, size, budget)
        if not new.finished:
            notes.append(f"{_mib(size - new.offset)} left for the next run")
        position = LogPosition(
            stats.st_ino, new.offset, _fingerprint(handle, min(new.offset, _FINGERPRINT_BYTES))
        )
        return LogChunk(position, tuple(notes), old.lines + new.lines, new.fatal or old.fatal)


def _mib(count: int) -> str:
    return f"{count / (1024 * 1024):.1f} MiB"


def _open_regular(path: str) -> BinaryIO:
    """`path` opened for reading, if a regular file. O_NONBLOCK: a FIFO there
    must not hang the probe; a device (/dev/zero) is never read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise OSError(errno.EINVAL, f"it is {kind}")
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def _finish_rotated(path: str, previous: LogPosition, budget: _Budget) -> _Scan:
    """Scan what the old file gained after our last look, if logrotate left it as
    `path.1`: renamed (same inode) or, with copytruncate, copied (same first bytes)."""
    rotated = path + ".1"
    try:
        with _open_regular(rotated) as handle:
            stats = os.fstat(handle.fileno())
            if stats.st_size <= previous.offset:
                return _Scan(previous.offset)
            same_file = stats.st_ino == previous.inode
            fingerprint = _fingerprint(handle, min(previous.offset, _FINGERPRINT_BYTES))
            if not same_file and fingerprint != previous.fingerprint:
                return _Scan(previous.offset)
            return _scan(handle, previous.offset, stats.st_size, budget, final=True)
    except OSError:
        return _Scan(previous.offset)
