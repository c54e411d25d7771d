"""SHELL: the JSON state file kept between runs, and the lock that guards it.

Each cron run is a new process, so everything the rules must remember (how
long a check has failed, the last head number, the log offset, what was
texted) lives here. The file is:
- versioned (`schema`), so a future format is recognised, not misread;
- written atomically: temp file in the same directory, fsync, os.replace,
  fsync of the directory; a crash mid-write leaves the old file whole;
- never fatal: a corrupt file is moved aside and the run starts afresh.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
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


@dataclass(frozen=True)
class LoadedState:
    data: dict[str, Any]
    warning: str | None = None  # set when the file was unusable and moved aside


def empty_state() -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "checks": {}, "memory": {}}


def load_state(path: str, now: datetime, *, move_aside: bool = True) -> LoadedState:
    """Read the state; a missing file is a first run, a bad one is moved aside.

    `move_aside=False` (a dry run) leaves a bad file where it is and only says so.
    """
    target = Path(path)
    if not move_aside:
        return _left_in_place(load_state_readonly(path), target)
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        return LoadedState(empty_state())
    except IsADirectoryError:
        # Moved aside like a corrupt file: left in place, every save would fail,
        # every run would be a first run, and no problem would ever be texted.
        return _move_aside(target, now, "a directory")
    except OSError as error:
        return _move_aside(target, now, f"unreadable ({error.strerror or error})")
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _move_aside(target, now, "not valid JSON (truncated or corrupt)")
    if not isinstance(data, dict):
        return _move_aside(target, now, "not a JSON object")
    schema = data.get("schema")
    if schema != SCHEMA_VERSION:
        if isinstance(schema, int) and schema > SCHEMA_VERSION:
            return _move_aside(target, now, f"written by a newer check-status (schema {schema})")
        return _move_aside(target, now, f"unknown schema {schema!r}")
    if not _has_its_shape(data):
        return _move_aside(target, now, "wrong shape (checks/memory missing)")
    return LoadedState(data)


def _has_its_shape(data: dict[str, Any]) -> bool:
    return isinstance(data.get("checks"), dict) and isinstance(data.get("memory"), dict)


def _left_in_place(loaded: tuple[dict[str, Any], str | None], target: Path) -> LoadedState:
    data, problem = loaded
    if problem is None or not target.exists():
        return LoadedState(data)
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
RESERVE_BYTES = 128 * 1024


def save_state(path: str, data: dict[str, Any]) -> str | None:
    """Replace the state file atomically. Raises StateError with a one-line reason.

    Returns a note when the reserve had to be used (the disk is full).
    """
    target = Path(path)
    payload = json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"
    reserve = target.with_name(f".{target.name}.reserve")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temp_files(target)
        _write_atomically(target, payload)
    except OSError as error:
        if error.errno != errno.ENOSPC or not reserve.exists():
            raise StateError(f"cannot write state file {path}: {error.strerror or error}") from None
        reserve.unlink()
        try:
            _write_atomically(target, payload)
        except OSError as again:
            raise StateError(f"cannot write state file {path}: {again.strerror or again}") from None
        return f"disk full: state file {path} saved in the room kept for it"
    _keep_reserve(reserve)
    return None


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
    any temp file here is a leftover."""
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def _keep_reserve(reserve: Path) -> None:
    if reserve.exists():
        return
    try:
        fd = os.open(reserve, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return
    try:
        # Really allocated, not sparse: the blocks must be ours to give back.
        os.posix_fallocate(fd, 0, RESERVE_BYTES)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            reserve.unlink()  # no room for it yet; try again next run
        return
    os.close(fd)


def load_state_readonly(path: str) -> tuple[dict[str, Any], str | None]:
    """For `status`: read without moving anything aside. Returns (state, problem)."""
    try:
        data = json.loads(Path(path).read_bytes(), parse_constant=_refuse_constant)
    except FileNotFoundError:
        return empty_state(), f"no state file at {path} yet: check-status has not run here"
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as error:
        return empty_state(), f"state file {path} is unreadable ({type(error).__name__})"
    if (
        not isinstance(data, dict)
        or data.get("schema") != SCHEMA_VERSION
        or not _has_its_shape(data)
    ):
        return empty_state(), f"state file {path} has an unknown format"
    return data, None


@contextlib.contextmanager
def run_lock(lock_path: str, now: datetime, wait_seconds: float = 0) -> Iterator[str | None]:
    """Hold an exclusive, non-blocking flock for one run.

    The holder writes its pid and start time into the lock file, so a second
    run can say who holds it and since when: a lock held for minutes is a hung
    checker, which is worth knowing.

    If the lock file cannot even be created (a full disk, a read-only or
    missing directory), the run goes on unlocked and yields a note saying so:
    the disk filling up is exactly what must still be reported and texted.
    """
    path = Path(lock_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        yield f"ran without a lock: cannot open {lock_path} ({error.strerror or error})"
        return
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
        yield None
    finally:
        os.close(fd)
