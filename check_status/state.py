"""SHELL: the JSON state file kept between runs, and the lock that guards it.

Each cron run is a new process, so everything the rules must remember (how
long a check has failed, the last head number, the log offset, what was
texted) lives here. The file is:
- versioned (`schema`), so a future format is recognised, not misread;
- written atomically: temp file in the same directory, fsync, os.replace,
  fsync of the directory; a crash mid-write leaves the old file whole;
- never fatal: a corrupt file is moved aside and the run starts afresh;
- bounded: at most MAX_STATE_BYTES, read and written, whatever the checks
  saw, so a run never reads a huge file whole every minute;
- only ever a regular file: a FIFO, a device or a socket at STATE_FILE is
  refused with one line, never read, replaced, truncated or written.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from check_status.model import format_time

SCHEMA_VERSION = 1


class StateError(Exception):
    """The state could not be written. The run still reports its results."""


class LockBusy(Exception):
    """Another run holds the lock."""


class LockUnavailable(Exception):
    """The lock cannot be opened at all: the run may judge, but must not send or save."""


@dataclass(frozen=True)
class LoadedState:
    data: dict[str, Any]
    warning: str | None = None  # set when the file was unusable (moved aside) or refused


def empty_state() -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "checks": {}, "memory": {}}


# The most a state file may hold. A healthy node's is a few KiB; 40 checks all
# failing and flapping, each with an open incident told to 5 phones, with
# 60-character summaries, take 34 KB (39 KB with 100 characters, 37 KB with
# 3 texts queued per phone: tests/test_state_bounds.py). A bigger file was
# written by something else, or by a version without this bound: loading reads
# at most MAX_READ_BYTES, and saving shrinks the state to fit (see `serialise`),
# so every cron run reads and writes a small file, whatever nodeos logged or a
# peer sent.
MAX_STATE_BYTES = 64 * 1024


class StateRefused(StateError):
    """STATE_FILE is not a regular file (a FIFO, a device, a socket): it is not ours
    to read, replace or write. The fallback copy keeps the state meanwhile."""


class _NotAFile(Exception):
    """The path is a FIFO, a device or a socket: refused, left exactly as it is."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class _Unusable(Exception):
    """The path is ours but cannot be used (too big, a directory, unreadable): moved aside."""


def _special_kind(mode: int) -> str | None:
    """What a non-regular, non-directory file is, in words; None for a file or a directory."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
        return None
    return "not a file"


def _not_a_file_problem(path: str, kind: str) -> str:
    return f"state file {path} is {kind}, not a regular file: set STATE_FILE to a file path"


# What is read, at most. A state written before MAX_STATE_BYTES existed (with
# 1,000-character strings and the whole fatal log line) may be larger: it is
# read once, and its next save shrinks it within MAX_STATE_BYTES, so upgrading
# loses no open incident (which would text problems again and recoveries never).
# Anything larger is no state of ours and is never read whole.
MAX_READ_BYTES = 1024 * 1024


def _too_big(size: int) -> str:
    return f"{size} bytes, over the limit of {MAX_STATE_BYTES} (and of {MAX_READ_BYTES} to read)"


def _read_bounded(
    path: str | Path, *, follow: bool = True, limit: int = MAX_READ_BYTES
) -> tuple[bytes, os.stat_result] | None:
    """The bytes of the regular file at `path`, at most `limit`; None if missing.

    Raises _NotAFile for a FIFO, device or socket, without opening a device
    (opening some has effects: a watchdog starts counting) and without ever
    blocking: O_NONBLOCK, so a FIFO swapped in after the stat cannot hang the
    run. Raises _Unusable for a directory, a file too big or one that cannot
    be read.
    """
    try:
        info = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise _Unusable(f"unreadable ({error.strerror or error})") from None
    kind = _special_kind(info.st_mode)
    if kind is not None:
        raise _NotAFile(kind)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags if follow else flags | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise _Unusable(f"unreadable ({error.strerror or error})") from None
    try:
        info = os.fstat(fd)
        kind = _special_kind(info.st_mode)
        if kind is not None:
            raise _NotAFile(kind)
        if stat.S_ISDIR(info.st_mode):
            raise _Unusable("a directory")
        if info.st_size > limit:
            raise _Unusable(_too_big(info.st_size))
        try:
            data = _read_at_most(fd, limit + 1)
        except OSError as error:
            raise _Unusable(f"unreadable ({error.strerror or error})") from None
        if len(data) > limit:  # it grew between the fstat and the read
            raise _Unusable(_too_big(len(data)))
        return data, info
    finally:
        os.close(fd)


def _read_at_most(fd: int, limit: int) -> bytes:
    parts: list[bytes] = []
    left = limit
    while left > 0:
        part = os.read(fd, left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(state, None), or (None, why it is not a state)."""
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, "not valid JSON (truncated or corrupt)"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    schema = data.get("schema")
    if schema != SCHEMA_VERSION:
        if isinstance(schema, int) and schema > SCHEMA_VERSION:
            return None, f"written by a newer check-status (schema {schema})"
        return None, f"unknown schema {schema!r}"
    if not _has_its_shape(data):
        return None, "wrong shape (checks/memory missing)"
    return data, None


def load_state(path: str, now: datetime, *, move_aside: bool = True) -> LoadedState:
    """Read the state; a missing file is a first run, a bad one is moved aside.

    A FIFO, device or socket at `path` is refused and left untouched: it is not
    a file this program made, and renaming /dev/zero as root would break the
    machine. `move_aside=False` (a dry run) leaves a bad file where it is and
    only says so.
    """
    target = Path(path)
    if not move_aside:
        return _left_in_place(load_state_readonly(path), target)
    try:
        read = _read_bounded(target)
    except _NotAFile as refused:
        return LoadedState(empty_state(), _not_a_file_problem(path, refused.kind))
    except _Unusable as unusable:
        # A directory is moved aside like a corrupt file: left in place, every
        # save would fail and every run would start afresh.
        return _move_aside(target, now, str(unusable))
    if read is None:
        return LoadedState(empty_state())
    data, why = _parse(read[0])
    if data is None:
        return _move_aside(target, now, str(why))
    return LoadedState(data)


def _has_its_shape(data: dict[str, Any]) -> bool:
    return isinstance(data.get("checks"), dict) and isinstance(data.get("memory"), dict)


def _left_in_place(loaded: tuple[dict[str, Any], str | None], target: Path) -> LoadedState:
    data, problem = loaded
    if problem is None or not target.exists():
        return LoadedState(data)
    with contextlib.suppress(OSError):
        if _special_kind(target.stat().st_mode) is not None:
            return LoadedState(data, problem)  # never moved, dry run or not
    return LoadedState(data, f"{problem}; left in place (dry run), judged as a first run")


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON, and never written here: the file was edited or damaged."""
    raise ValueError(f"{name} in the state file")


def _move_aside(target: Path, now: datetime, why: str) -> LoadedState:
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    aside = target.with_name(f"{target.name}.corrupt-{stamp}")
    extra = 1
    while aside.exists():  # two bad files within one second keep both copies
        extra += 1
        aside = target.with_name(f"{target.name}.corrupt-{stamp}-{extra}")
    try:
        kind = _special_kind(os.lstat(target).st_mode)
        if kind is not None:  # swapped for a device since it was read: never renamed
            raise OSError(errno.EPERM, f"it is now {kind}")
        os.replace(target, aside)
        where = f"moved to {aside}"
    except OSError as error:
        where = f"could not be moved aside ({error.strerror or error})"
    return LoadedState(
        empty_state(), f"state file {target} was {why}; {where}; running as a first run"
    )


# Room kept beside the state file for the day its disk fills up, which is
# exactly when the state matters most: without it the run could not record
# that it texted the operators, and would text them again, or never send the
# recovery. Given back to save the state, taken again once there is room.
# Sized to the state: at least this, and at least twice the state's own size
# (which MAX_STATE_BYTES caps, so this is always enough).
RESERVE_BYTES = 128 * 1024

# Every string kept is bounded (a peer's status text, a log excerpt, a
# summary), so the state stays well under MAX_STATE_BYTES. 320 characters is
# the most an SMS ever carries (alerting/sms.py): a longer summary is never
# texted whole, and -v shows the run's own results, not the stored ones.
MAX_KEPT_STRING = 320


def bounded(value: Any) -> Any:
    """`value` with every string longer than MAX_KEPT_STRING cut to it (a fresh copy)."""
    if isinstance(value, str):
        return _cut(value, MAX_KEPT_STRING)
    if isinstance(value, dict):
        return {k: bounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [bounded(v) for v in value]
    return value


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 2] + ".."


def _cut_fields(value: Any, limit: int, fields: frozenset[str]) -> Any:
    """A copy of `value` with the strings stored under the keys `fields` cut to
    `limit`; every other string (a check name, a time, a number) is left whole."""
    if isinstance(value, dict):
        return {
            k: _cut(v, limit)
            if k in fields and isinstance(v, str)
            else _cut_fields(v, limit, fields)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_cut_fields(v, limit, fields) for v in value]
    return value


def reserve_size(payload_bytes: int) -> int:
    return max(RESERVE_BYTES, -(-2 * payload_bytes // 4096) * 4096)


# --- fitting the state in MAX_STATE_BYTES ----------------------------------------
#
# A state that would serialise larger than MAX_STATE_BYTES is shrunk, step by
# step, least important first, until it fits. Open incidents (and whom they
# were told to), silences and the queued texts are never dropped: losing them
# would text a recovery nobody heard of, or never text a problem. Only their
# free text is shortened, as an SMS shortens it anyway.

# The keys whose values are free text (summaries, reasons, the log line).
_FREE_TEXT = frozenset({"summary", "last_problem", "reason", "fatal_line"})


def _alert_records(state: dict[str, Any]) -> dict[str, Any]:
    alerts = state.get("alerts")
    checks = alerts.get("checks") if isinstance(alerts, dict) else None
    return checks if isinstance(checks, dict) else {}


def _drop_flapping_histories(state: dict[str, Any]) -> None:
    # Flapping is judged again from the next 10 runs; the flag itself is kept.
    for record in _alert_records(state).values():
        if isinstance(record, dict) and record.get("history"):
            record["history"] = ""


def _drop_summaries_of_ok_checks(state: dict[str, Any]) -> None:
    checks = state.get("checks")
    for record in (checks if isinstance(checks, dict) else {}).values():
        if isinstance(record, dict) and record.get("status") == "OK":
            record.pop("summary", None)
    for record in _alert_records(state).values():
        if isinstance(record, dict) and not record.get("incident"):
            record["last_problem"] = ""


def _drop_records_of_healthy_checks(state: dict[str, Any]) -> None:
    # A check with no incident and no failing run has nothing the rules need:
    # its record is made afresh the next run.
    records = _alert_records(state)
    for name in [
        name
        for name, record in records.items()
        if isinstance(record, dict)
        and not record.get("incident")
        and not record.get("problem_runs")
    ]:
        del records[name]


def _shorten_free_text(limit: int) -> Callable[[dict[str, Any]], None]:
    def shorten(state: dict[str, Any]) -> None:
        shortened = _cut_fields(state, limit, _FREE_TEXT)
        state.clear()
        state.update(shortened)

    return shorten


def _drop_delivery_bookkeeping(state: dict[str, Any]) -> None:
    # How often an unknown Twilio refusal was retried (it gets a few more
    # tries), and the last summary of every check (shown by `status`; the
    # incidents and queued texts keep their own).
    state.pop("delivery_retries", None)
    checks = state.get("checks")
    for record in (checks if isinstance(checks, dict) else {}).values():
        if isinstance(record, dict):
            record.pop("summary", None)


_SHRINK_STEPS: tuple[tuple[str, Callable[[dict[str, Any]], None]], ...] = (
    ("flapping histories", _drop_flapping_histories),
    ("summaries of OK checks", _drop_summaries_of_ok_checks),
    ("alert records of healthy checks", _drop_records_of_healthy_checks),
    ("text beyond 160 characters", _shorten_free_text(160)),
    ("retry counts and check summaries", _drop_delivery_bookkeeping),
    ("text beyond 60 characters", _shorten_free_text(60)),
)


# Fields that alert_state_from_json and Notification.from_json read as these
# defaults when missing: leaving them out of a big state loses nothing.
# (An incident's `told` is never left out: missing, it means "all were told".)
_RECORD_DEFAULTS: dict[str, Any] = {
    "problem_runs": 0,
    "ok_runs": 0,
    "problem_since": None,
    "ok_since": None,
    "failing_since": None,
    "incident": None,
    "history": "",
    "flapping": False,
    "last_problem": "",
}
_INCIDENT_DEFAULTS: dict[str, Any] = {
    "notified_status": None,
    "last_notified_at": None,
    "silenced": False,
    "told_at": {},
    "escalated_at": None,
    "called": {},
    "acked_by": None,
    "acked_at": None,
}  # (nor `paged_at`: missing, it means a state from before the on-call steps)
_NOTIFICATION_DEFAULTS: dict[str, Any] = {"ended": None, "late": False, "escalated": False}
_SILENCE_DEFAULTS: dict[str, Any] = {"end_seen": False}


def _without_defaults(record: Any, defaults: dict[str, Any]) -> None:
    if not isinstance(record, dict):
        return
    for key, default in defaults.items():
        # `type() is`: 0 == False in Python, and a count of 0 is not a flag.
        if key in record and type(record[key]) is type(default) and record[key] == default:
            del record[key]


def _drop_defaults(state: dict[str, Any]) -> None:
    for record in _alert_records(state).values():
        _without_defaults(record, _RECORD_DEFAULTS)
        if isinstance(record, dict):
            _without_defaults(record.get("incident"), _INCIDENT_DEFAULTS)
    alerts = state.get("alerts")
    silences = alerts.get("silences") if isinstance(alerts, dict) else None
    for silence in silences if isinstance(silences, list) else []:
        _without_defaults(silence, _SILENCE_DEFAULTS)
    outbox = state.get("outbox")
    for queue in (outbox if isinstance(outbox, dict) else {}).values():
        for note in queue if isinstance(queue, list) else []:
            _without_defaults(note, _NOTIFICATION_DEFAULTS)


# Up to this size the state is written indented, for an operator to read; a
# bigger one (many checks failing at once) is written compact, and without
# the fields that are at their defaults: the same state, in fewer bytes.
PRETTY_UP_TO_BYTES = 16 * 1024


def _pretty(data: dict[str, Any]) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"


def _compact(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def serialise(data: dict[str, Any]) -> tuple[bytes, str | None]:
    """The bytes to write for `data`, at most MAX_STATE_BYTES, and a note if it was shrunk.

    Deterministic: the same state always gives the same bytes. Raises
    StateError when even the shrunk state does not fit (hundreds of open
    incidents): writing it would only have it moved aside by the next run.
    """
    kept = bounded(data)
    payload = _pretty(kept)
    if len(payload) <= PRETTY_UP_TO_BYTES:
        return payload, None
    _drop_defaults(kept)
    payload = _compact(kept)
    if len(payload) <= MAX_STATE_BYTES:
        return payload, None
    dropped: list[str] = []
    for what, shrink in _SHRINK_STEPS:
        shrink(kept)
        _drop_defaults(kept)
        dropped.append(what)
        payload = _compact(kept)
        if len(payload) <= MAX_STATE_BYTES:
            return payload, (
                f"state shrunk to {len(payload)} bytes to fit its limit of {MAX_STATE_BYTES}:"
                f" dropped {', '.join(dropped)}"
            )
    raise StateError(
        f"state is {len(payload)} bytes even shrunk, over the limit of {MAX_STATE_BYTES}"
        " (too many open incidents or queued texts): not saved"
    )


def _refuse_special(path: str | Path) -> None:
    """Raise StateRefused if `path` is (or links to) a FIFO, a device or a socket.

    Checked before anything is written: the save writes a temp file beside
    `path` and renames it over `path`, which, as root, would replace /dev/zero
    with a regular file. A missing path, a file or a directory passes (a
    directory fails the rename, as before).
    """
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            info = os.stat(path)
    except OSError:
        return  # missing, or a dangling link: the write creates or reports it
    kind = _special_kind(info.st_mode)
    if kind is not None:
        raise StateRefused(f"state file {path} not written ({kind})")


def save_state(path: str, data: dict[str, Any]) -> str | None:
    """Replace the state file atomically. Raises StateError with a one-line reason,
    StateRefused (touching nothing) when `path` is not a regular file.

    Returns a note when the state had to be shrunk, or the reserve had to be
    used (the disk is full).
    """
    payload, shrunk = serialise(data)
    return _notes(shrunk, _save_payload(path, payload))


def _save_payload(path: str, payload: bytes) -> str | None:
    target = Path(path)
    _refuse_special(target)
    reserve = target.with_name(f".{target.name}.reserve")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temp_files(target)
        _write_atomically(target, payload)
    except OSError as error:
        if error.errno != errno.ENOSPC or not _is_regular(reserve):
            raise StateError(f"cannot write state file {path}: {error.strerror or error}") from None
        reserve.unlink()
        try:
            _write_atomically(target, payload)
        except OSError as again:
            raise StateError(f"cannot write state file {path}: {again.strerror or again}") from None
        return f"disk full: state file {path} saved in the room kept for it"
    _keep_reserve(reserve, reserve_size(len(payload)))
    return None


def _notes(*notes: str | None) -> str | None:
    return "; ".join(note for note in notes if note) or None


def _kind_at(path: Path) -> str | None:
    """What `path` itself is (a link is not followed), if a FIFO, a device or a socket."""
    try:
        return _special_kind(os.lstat(path).st_mode)
    except OSError:
        return None


def _special_path_kind(path: str | Path) -> str | None:
    """What `path` is, following links, if a FIFO, a device or a socket."""
    try:
        return _special_kind(os.stat(path).st_mode)
    except OSError:
        return None


def state_path_problem(state_file: str, env_file: str | None = None) -> str | None:
    """Why STATE_FILE must not be read, renamed or written, checked before anything
    touches it; None when it may be.

    As root, a state path pointing at the wrong thing destroys it: a save renames
    a temp file over the path, and a bad file is moved aside. So the path must
    name a regular file or nothing, never the env file (texts would go silently
    off with it), and live in a directory no other user can write to, where
    nobody can plant a symlink or a lock of their own (sshd's StrictModes rule).
    """
    if not Path(state_file).name or state_file.endswith("/"):
        return f"STATE_FILE {state_file} names a directory: set it to a file path such as {state_file.rstrip('/')}/state.json"
    try:
        info = os.stat(state_file)
    except OSError:
        info = None
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            return (
                f"state file {state_file} is a directory, not a file: set STATE_FILE to a file path"
            )
        kind = _special_kind(info.st_mode)
        if kind is not None:
            return _not_a_file_problem(state_file, kind)
        if env_file and _same_file(state_file, env_file):
            return f"STATE_FILE {state_file} is the env file itself: set STATE_FILE to a file of its own"
        if not _could_be_ours(state_file):
            return (
                f"state file {state_file} is not a check-status state (it is not JSON):"
                " not touched; set STATE_FILE to a path of its own"
            )
    return directory_problem(Path(state_file).parent, "state")


def _same_file(one: str, other: str) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False


def _could_be_ours(path: str) -> bool:
    """A file this program could have written: empty, or JSON that starts an object.
    Anything else (an env file, a binary, a nodeos file) is someone else's."""
    try:
        with open(path, "rb", buffering=0) as handle:
            start = handle.read(64).lstrip()
    except OSError:
        return True  # unreadable: the load says why, and nothing is moved
    return not start or start.startswith(b"{")


def directory_problem(directory: Path, what: str, owner_may_differ: bool = False) -> str | None:
    """Why a directory where we create files is unsafe: writable by other users
    (they could plant a symlink where we write as root), or owned by one (unless
    `owner_may_differ`: node_exporter's textfile directory is often its own)."""
    try:
        info = os.stat(directory)
    except OSError:
        return None  # not there yet: made by us, private, when first needed
    # A textfile directory is often node_exporter's, group-writable by its group:
    # our file there is set through its descriptor, so only others' write counts.
    group_write = info.st_mode & 0o020 and info.st_gid != os.getegid() and not owner_may_differ
    others_write = info.st_mode & 0o002 or group_write
    if others_write:
        return (
            f"the {what} directory {directory} is writable by other users"
            f" (mode {stat.S_IMODE(info.st_mode):o}): run `chmod go-w {directory}`"
            " or use a directory of your own"
        )
    if info.st_uid not in (0, os.geteuid()) and not owner_may_differ:
        return (
            f"the {what} directory {directory} belongs to another user (uid {info.st_uid}):"
            " use a directory of your own"
        )
    return None


def _is_regular(path: Path) -> bool:
    """A regular file, not a link: the only kind this module deletes or fills."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _write_atomically(target: Path, payload: bytes) -> None:
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _remove_stale_temp_files(target: Path) -> None:
    """A run killed mid-write leaves its temp file; the caller holds the lock, so
    any regular temp file here is a leftover."""
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        if _is_regular(leftover):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _keep_reserve(reserve: Path, size: int) -> None:
    """Hold `size` bytes beside the state file; grow a reserve the state outgrew."""
    try:
        if not _is_regular(reserve):
            raise FileNotFoundError  # none yet; anything else there is left alone below
        if reserve.stat().st_size >= size:
            return
        # O_NONBLOCK: a FIFO swapped in would otherwise block this open forever.
        fd = os.open(reserve, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        try:
            fd = os.open(reserve, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError:
            return  # exists as something else (O_EXCL), or no room yet
    except OSError:
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        # Really allocated, not sparse: the blocks must be ours to give back.
        os.posix_fallocate(fd, 0, size)
    except OSError:
        os.close(fd)
        fd = -1
        with contextlib.suppress(OSError):
            if _is_regular(reserve) and reserve.stat().st_size < RESERVE_BYTES:
                reserve.unlink()  # no room for it yet; try again next run
        return
    finally:
        if fd >= 0:
            os.close(fd)


# --- the fallback copy --------------------------------------------------------


def fallback_dir(configured: str | None) -> Path:
    """Where the state goes while STATE_FILE cannot be written: a tmpfs if we can.

    /run is a tmpfs on every systemd machine: a read-only remount, a full disk
    or `chattr +i` of the state's filesystem leaves it writable. It is gone
    after a reboot, which is the lesser loss.
    """
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/run/check-status")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "check-status"
    return Path(tempfile.gettempdir()) / f"check-status-{os.geteuid()}"


def _private_dir(directory: Path) -> Path:
    """`directory`, made 0700 if new; refused unless it is ours alone (it may be in /tmp)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(errno.ENOTDIR, "not a directory (a symlink?)")
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise OSError(errno.EPERM, "owned by another user or writable by others")
    return directory


def _file_name_of(path: str) -> str:
    """A file name for `path` in the fallback directory, one per path.

    Spelled out rather than hashed: hashlib costs every cron run 3 ms to import.
    """
    spelled = os.path.abspath(path).replace("%", "%25").replace("/", "%2F")
    if len(spelled) <= 160:
        return spelled
    import hashlib

    return hashlib.sha256(spelled.encode()).hexdigest()[:32]


class StateStore:
    """The state file, and its fallback copy for the runs that cannot write it.

    Each save carries a generation number, one more than the state it was
    loaded from; a load takes whichever of the two is newer. So a run that
    could only write the copy is remembered by the next, and the copy is
    dropped as soon as the state file can be written again.
    """

    def __init__(
        self,
        state_file: str,
        configured_fallback_dir: str | None = None,
        env_file: str | None = None,
    ) -> None:
        self.path = state_file
        self.copy = fallback_dir(configured_fallback_dir) / _file_name_of(state_file)
        # Set when STATE_FILE must not be touched at all (see state_path_problem):
        # the state then lives in the copy, and the run says so and exits UNKNOWN.
        self.refused = state_path_problem(state_file, env_file)
        self.generation = 0
        self.problems: list[str] = []  # why saves this run did not reach the state file
        self.where: str | None = None  # where the last save went: "file", "copy" or None

    def load(self, now: datetime, *, move_aside: bool = True) -> LoadedState:
        if self.refused:
            loaded = LoadedState(empty_state(), self.refused)
        else:
            loaded = load_state(self.path, now, move_aside=move_aside)
        copy = self._read_copy()
        chosen = loaded
        if copy is not None and _generation(copy) > _generation(loaded.data):
            chosen = LoadedState(copy, loaded.warning)
        self.generation = _generation(chosen.data)
        return chosen

    def read_only(self) -> tuple[dict[str, Any], str | None]:
        """For `status`, serve and self-test: the newer of the two, moving nothing."""
        if self.refused:
            return self._read_copy() or empty_state(), self.refused
        data, problem = load_state_readonly(self.path)
        copy = self._read_copy()
        if copy is not None and _generation(copy) > _generation(data):
            # A FIFO or a device at STATE_FILE stays a problem to show: unlike a
            # read-only disk, it will not mend itself.
            return copy, problem if _special_path_kind(self.path) else None
        return data, problem

    def _read_copy(self) -> dict[str, Any] | None:
        """The copy, if it is a regular file of ours within MAX_STATE_BYTES; never blocks."""
        try:
            # Only this version writes the copy, always within MAX_STATE_BYTES.
            read = _read_bounded(self.copy, follow=False, limit=MAX_STATE_BYTES)
        except (_NotAFile, _Unusable):
            return None
        if read is None:
            return None
        raw, info = read
        if info.st_uid != os.geteuid():
            return None  # not ours: never trust it
        data, _why = _parse(raw)
        return data

    def save(self, data: dict[str, Any]) -> None:
        """Save to the state file, else to the copy. Sets `where`; adds to `problems`."""
        data["generation"] = self.generation + 1
        try:
            payload, shrunk = serialise(data)
        except StateError as error:
            # Too big even shrunk: the copy has the same limit, so neither is written.
            self.where = None
            self._problem(f"{error}; alerts may repeat or be missed")
            return
        self._problem(shrunk)
        try:
            if self.refused:
                raise StateRefused(self.refused)
            self._problem(_save_payload(self.path, payload))
        except StateError as error:
            try:
                _private_dir(self.copy.parent)
                kind = _kind_at(self.copy)
                if kind is not None:  # never replaced, even in our own directory
                    raise OSError(errno.EEXIST, f"it is {kind}")
                _write_atomically(self.copy, payload)
            except OSError as again:
                self.where = None
                until = "names a regular file" if isinstance(error, StateRefused) else "is writable"
                self._problem(
                    f"{error}, nor its copy {self.copy} ({again.strerror or again}): "
                    f"state not saved, alerts may repeat or be missed until {self.path} {until}"
                )
                return
            if self.refused:
                self._problem(f"the state is kept in {self.copy}, its lock beside it")
            elif isinstance(error, StateRefused):
                self._problem(f"{error}: kept a copy in {self.copy}")
            else:
                self._problem(f"{error}: kept a copy in {self.copy} until it is writable")
            self.where = "copy"
        else:
            with contextlib.suppress(OSError):
                if _is_regular(self.copy):
                    self.copy.unlink()
            self.where = "file"
        self.generation += 1

    def _problem(self, problem: str | None) -> None:
        if problem and problem not in self.problems:
            self.problems.append(problem)


def _generation(data: dict[str, Any]) -> int:
    value = data.get("generation")
    return value if isinstance(value, int) and value >= 0 else 0


def load_state_readonly(path: str) -> tuple[dict[str, Any], str | None]:
    """For `status`, serve's /status and dry runs: read without moving anything aside,
    never blocking (a FIFO) nor reading past MAX_STATE_BYTES. Returns (state, problem)."""
    try:
        read = _read_bounded(path)
    except _NotAFile as refused:
        return empty_state(), _not_a_file_problem(path, refused.kind)
    except _Unusable as unusable:
        return empty_state(), f"state file {path} is {unusable}"
    if read is None:
        return empty_state(), f"no state file at {path} yet: check-status has not run here"
    try:
        data = json.loads(read[0], parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        return empty_state(), f"state file {path} is unreadable ({type(error).__name__})"
    if (
        not isinstance(data, dict)
        or data.get("schema") != SCHEMA_VERSION
        or not _has_its_shape(data)
    ):
        return empty_state(), f"state file {path} has an unknown format"
    return data, None


@contextlib.contextmanager
def run_lock(
    lock_path: str,
    now: datetime,
    wait_seconds: float = 0,
    fallback: str | None = None,
    state_file: str | None = None,
    env_file: str | None = None,
) -> Iterator[str | None]:
    """Hold an exclusive, non-blocking flock for one run.

    The holder writes its pid and start time into the lock file, so a second
    run can say who holds it and since when: a lock held for minutes is a hung
    checker, which is worth knowing.

    A lock file that can only be opened read-only (a read-only filesystem)
    still locks: flock needs no write access. One that does not exist and
    cannot be created there (read-only, or a full disk) is taken in the
    fallback directory instead, with a note, so the full disk is still texted.
    So is the lock of a `state_file` that is a FIFO or a device: its lock would
    otherwise be made in /dev. A lock path that is itself a FIFO or a device is
    never opened (pid and time are written at offset 0: a disk would lose its
    partition table). Anything else (the path is a directory, permission
    denied) raises LockUnavailable: without a lock, overlapping runs would each
    text everyone.
    """
    path = Path(lock_path)
    note = None
    beside = state_path_problem(state_file, env_file) if state_file else None
    try:
        if beside is not None and fallback is not None:
            raise OSError(errno.EROFS, beside)
        kind = _kind_at(path)  # a symlink is refused below, by O_NOFOLLOW
        if kind is not None:
            raise LockUnavailable(
                f"cannot use the run lock {lock_path}: it is {kind}, not a regular file;"
                " set STATE_FILE to a file path. Nothing was texted or saved"
            )
        fd = _open_lock(path)
    except OSError as error:
        if error.errno not in (errno.EROFS, errno.ENOSPC, errno.EDQUOT) or fallback is None:
            raise LockUnavailable(_lock_problem(lock_path, error)) from None
        spare = fallback_dir(fallback) / _file_name_of(lock_path)
        try:
            _private_dir(spare.parent)
            fd = os.open(spare, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise OSError(errno.EEXIST, "not a regular file")
        except OSError as again:
            raise LockUnavailable(
                f"{_lock_problem(lock_path, error)}; nor in {spare} ({again.strerror or again})"
            ) from None
        if beside is not None:
            note = None  # the store says where the state went, and why: the lock is beside it
        else:
            note = f"cannot create the lock {lock_path} ({error.strerror or error}): locked {spare}"
    try:
        give_up = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < give_up:
                    time.sleep(0.2)
                    continue
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
                raise LockBusy(f"another check-status run holds {lock_path} ({holder})") from None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} since {format_time(now)}\n".encode(), 0)
        yield note
    finally:
        os.close(fd)


def _open_lock(path: Path) -> int:
    """The lock file's descriptor: read-write, or read-only where it cannot be written."""
    # O_NONBLOCK: a FIFO put there after the check in run_lock must not hang the run.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # 0600: any user who can open the lock can flock it, and hold every run off.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
    except OSError as error:
        if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM) and path.is_file():
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        else:
            raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise OSError(errno.EISDIR, "not a regular file")
    if info.st_uid != os.geteuid():
        os.close(fd)
        raise OSError(errno.EPERM, f"it belongs to another user (uid {info.st_uid})")
    if stat.S_IMODE(info.st_mode) & 0o077:
        # An older version made it 0644: through the descriptor, never by name.
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)
    return fd


def _lock_problem(lock_path: str, error: OSError) -> str:
    if os.path.isdir(lock_path):
        fix = f"it is a directory: remove it (rmdir {lock_path})"
    elif os.path.islink(lock_path):
        fix = f"it is a symlink: remove it (rm {lock_path})"
    elif error.errno == errno.EPERM and "another user" in str(error.strerror):
        fix = f"{error.strerror}: remove it (rm {lock_path}), only our own lock is trusted"
    elif os.path.exists(os.path.dirname(lock_path)) and not os.path.isdir(
        os.path.dirname(lock_path)
    ):
        fix = f"{os.path.dirname(lock_path)} is not a directory: fix STATE_FILE"
    else:
        fix = (
            f"make {os.path.dirname(lock_path) or '.'} writable by this user,"
            " or set STATE_FILE to a path of yours"
        )
    return (
        f"cannot open the run lock {lock_path} ({error.strerror or error}); {fix}. "
        "Nothing was texted or saved"
    )
