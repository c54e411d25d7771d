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
import stat
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


class LockUnavailable(Exception):
    """The lock cannot be opened at all: the run may judge, but must not send or save."""


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
# Sized to the state: at least this, and at least twice the state's own size.
RESERVE_BYTES = 128 * 1024

# Every string kept is bounded (a peer's status text, a log excerpt, a
# summary), so the state stays small enough to save on a full disk.
MAX_KEPT_STRING = 1000


def bounded(value: Any) -> Any:
    """`value` with every string longer than MAX_KEPT_STRING cut to it."""
    if isinstance(value, str):
        return value if len(value) <= MAX_KEPT_STRING else value[: MAX_KEPT_STRING - 2] + ".."
    if isinstance(value, dict):
        return {k: bounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [bounded(v) for v in value]
    return value


def reserve_size(payload_bytes: int) -> int:
    return max(RESERVE_BYTES, -(-2 * payload_bytes // 4096) * 4096)


def save_state(path: str, data: dict[str, Any]) -> str | None:
    """Replace the state file atomically. Raises StateError with a one-line reason.

    Returns a note when the reserve had to be used (the disk is full).
    """
    target = Path(path)
    payload = json.dumps(bounded(data), indent=1, sort_keys=True).encode() + b"\n"
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
    _keep_reserve(reserve, reserve_size(len(payload)))
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


def _keep_reserve(reserve: Path, size: int) -> None:
    """Hold `size` bytes beside the state file; grow a reserve the state outgrew."""
    try:
        if reserve.stat().st_size >= size:
            return
        fd = os.open(reserve, os.O_WRONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        try:
            fd = os.open(reserve, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            return
    except OSError:
        return
    try:
        # Really allocated, not sparse: the blocks must be ours to give back.
        os.posix_fallocate(fd, 0, size)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            if reserve.stat().st_size < RESERVE_BYTES:
                reserve.unlink()  # no room for it yet; try again next run
        return
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

    def __init__(self, state_file: str, configured_fallback_dir: str | None = None) -> None:
        self.path = state_file
        self.copy = fallback_dir(configured_fallback_dir) / _file_name_of(state_file)
        self.generation = 0
        self.problems: list[str] = []  # why saves this run did not reach the state file
        self.where: str | None = None  # where the last save went: "file", "copy" or None

    def load(self, now: datetime, *, move_aside: bool = True) -> LoadedState:
        loaded = load_state(self.path, now, move_aside=move_aside)
        copy = self._read_copy()
        chosen = loaded
        if copy is not None and _generation(copy) > _generation(loaded.data):
            chosen = LoadedState(copy, loaded.warning)
        self.generation = _generation(chosen.data)
        return chosen

    def read_only(self) -> tuple[dict[str, Any], str | None]:
        """For `status`, serve and self-test: the newer of the two, moving nothing."""
        data, problem = load_state_readonly(self.path)
        copy = self._read_copy()
        if copy is not None and _generation(copy) > _generation(data):
            return copy, None
        return data, problem

    def _read_copy(self) -> dict[str, Any] | None:
        try:
            fd = os.open(self.copy, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                return None  # not ours: never trust it
            with os.fdopen(fd, "rb") as handle:
                fd = -1
                data = json.loads(handle.read(), parse_constant=_refuse_constant)
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            return None
        finally:
            if fd >= 0:
                os.close(fd)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
            return None
        return data if _has_its_shape(data) else None

    def save(self, data: dict[str, Any]) -> None:
        """Save to the state file, else to the copy. Sets `where`; adds to `problems`."""
        data["generation"] = self.generation + 1
        try:
            self._problem(save_state(self.path, data))
        except StateError as error:
            try:
                _private_dir(self.copy.parent)
                payload = json.dumps(bounded(data), indent=1, sort_keys=True).encode() + b"\n"
                _write_atomically(self.copy, payload)
            except OSError as again:
                self.where = None
                self._problem(
                    f"{error}, nor its copy {self.copy} ({again.strerror or again}): "
                    f"state not saved, alerts may repeat or be missed until {self.path} is writable"
                )
                return
            self._problem(f"{error}: kept a copy in {self.copy} until it is writable")
            self.where = "copy"
        else:
            with contextlib.suppress(OSError):
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
def run_lock(
    lock_path: str,
    now: datetime,
    wait_seconds: float = 0,
    fallback: str | None = None,
) -> Iterator[str | None]:
    """Hold an exclusive, non-blocking flock for one run.

    The holder writes its pid and start time into the lock file, so a second
    run can say who holds it and since when: a lock held for minutes is a hung
    checker, which is worth knowing.

    A lock file that can only be opened read-only (a read-only filesystem)
    still locks: flock needs no write access. One that does not exist and
    cannot be created there (read-only, or a full disk) is taken in the
    fallback directory instead, with a note, so the full disk is still texted.
    Anything else (the path is a directory, permission denied) raises
    LockUnavailable: without a lock, overlapping runs would each text everyone.
    """
    path = Path(lock_path)
    note = None
    try:
        fd = _open_lock(path)
    except OSError as error:
        if error.errno not in (errno.EROFS, errno.ENOSPC, errno.EDQUOT) or fallback is None:
            raise LockUnavailable(_lock_problem(lock_path, error)) from None
        spare = fallback_dir(fallback) / _file_name_of(lock_path)
        try:
            _private_dir(spare.parent)
            fd = os.open(spare, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as again:
            raise LockUnavailable(
                f"{_lock_problem(lock_path, error)}; nor in {spare} ({again.strerror or again})"
            ) from None
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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM) and path.is_file():
            return os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        raise


def _lock_problem(lock_path: str, error: OSError) -> str:
    if os.path.isdir(lock_path):
        fix = f"it is a directory: remove it (rmdir {lock_path})"
    elif os.path.islink(lock_path):
        fix = f"it is a symlink: remove it (rm {lock_path})"
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
