"""The state file, the run lock and the log tail, on a real filesystem in tmp_path."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from check_status.model import ProbeFailure
from check_status.probes.log import LogChunk, LogPosition, read_new_lines
from check_status.state import (
    SCHEMA_VERSION,
    LockBusy,
    LockUnavailable,
    StateError,
    empty_state,
    load_state,
    run_lock,
    save_state,
)

NOW = datetime(2024, 5, 1, 12, 0, 7, tzinfo=UTC)
ASIDE_SUFFIX = ".corrupt-20240501T120007Z"


# --- state file --------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.json"  # the directory is created on first save
    data = {
        "schema": SCHEMA_VERSION,
        "checks": {"head_block": {"status": "CRITICAL", "since": "2024-05-01T11:59:00Z"}},
        "memory": {"head_block": {"num": 12, "seen_at": "2024-05-01T11:59:00Z"}},
    }
    save_state(str(path), data)
    loaded = load_state(str(path), NOW)
    assert loaded.warning is None
    assert loaded.data == data
    # Written atomically: no temp file is left beside it; the reserve for a full disk is.
    assert sorted(p.name for p in path.parent.iterdir()) == [".state.json.reserve", "state.json"]
    assert (path.parent / ".state.json.reserve").stat().st_blocks * 512 >= 128 * 1024


def test_save_replaces_the_previous_state(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(str(path), {**empty_state(), "memory": {"a": 1}})
    save_state(str(path), {**empty_state(), "memory": {"b": 2}})
    assert load_state(str(path), NOW).data["memory"] == {"b": 2}


def test_missing_file_is_a_first_run(tmp_path: Path) -> None:
    loaded = load_state(str(tmp_path / "state.json"), NOW)
    assert loaded.data == empty_state()
    assert loaded.warning is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\x00\xffgarbage\x13", "not valid JSON"),
        (b'{"schema": 1, "checks": {"head_block": {"sta', "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'"just a string"', "not a JSON object"),
        (b'{"schema": 99, "checks": {}, "memory": {}}', "newer check-status (schema 99)"),
        (b'{"checks": {}, "memory": {}}', "unknown schema None"),
        (b'{"schema": "1", "checks": {}, "memory": {}}', "unknown schema '1'"),
        (b'{"schema": 1, "checks": [], "memory": {}}', "wrong shape"),
        (b'{"schema": 1, "checks": {}}', "wrong shape"),
    ],
)
def test_bad_file_is_moved_aside(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    loaded = load_state(str(path), NOW)
    assert loaded.warning is not None
    assert reason in loaded.warning
    aside = tmp_path / ("state.json" + ASIDE_SUFFIX)
    assert str(aside) in loaded.warning
    assert aside.read_bytes() == content
    assert not path.exists()
    assert loaded.data == empty_state()
    # The returned state is a fresh one, safe to fill in.
    loaded.data["memory"]["x"] = 1
    assert empty_state()["memory"] == {}


def test_directory_in_place_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.mkdir()
    loaded = load_state(str(path), NOW)
    assert loaded.warning is not None
    assert "directory" in loaded.warning
    assert str(path) in loaded.warning
    assert loaded.data == empty_state()
    # Moved aside, so the next save can put a file there.
    assert not path.exists()
    assert [p.is_dir() for p in tmp_path.glob("state.json.corrupt-*")] == [True]


def test_save_where_the_directory_cannot_be_written(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # chmod does not stop root: make the parent a regular file instead.
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        path = blocker / "state.json"
    else:
        read_only = tmp_path / "read-only"
        read_only.mkdir()
        read_only.chmod(0o500)
        path = read_only / "state.json"
    try:
        with pytest.raises(StateError) as raised:
            save_state(str(path), empty_state())
    finally:
        if path.parent.is_dir():
            path.parent.chmod(0o700)
    message = str(raised.value)
    assert str(path) in message
    assert "\n" not in message
    assert not path.exists()


def test_save_onto_a_directory_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.mkdir()
    with pytest.raises(StateError, match=str(path)):
        save_state(str(path), empty_state())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


# --- run lock ----------------------------------------------------------------


def test_second_lock_is_busy_and_names_the_holder(tmp_path: Path) -> None:
    lock = str(tmp_path / "state.json.lock")
    with run_lock(lock, NOW) as note:
        assert note is None
        with pytest.raises(LockBusy) as raised, run_lock(lock, NOW):
            pytest.fail("a second run got the lock")  # pragma: no cover
        message = str(raised.value)
        assert f"pid {os.getpid()}" in message
        assert "2024-05-01T12:00:07Z" in message
        assert lock in message
    # Released: the next run gets it.
    with run_lock(lock, NOW) as note:
        assert note is None


@pytest.mark.parametrize("shape", ["parent is a file", "a directory", "a symlink"])
def test_a_lock_that_cannot_be_opened_is_refused_with_its_fix(tmp_path: Path, shape: str) -> None:
    """Without a lock, overlapping runs would each text everyone: never run unlocked."""
    lock = tmp_path / "state.json.lock"
    if shape == "parent is a file":
        (tmp_path / "file").write_text("")
        lock = tmp_path / "file" / "state.json.lock"
        fix = "is not a directory"
    elif shape == "a directory":
        lock.mkdir()
        fix = f"rmdir {lock}"
    else:
        lock.symlink_to(tmp_path / "elsewhere")
        fix = f"rm {lock}"
    with pytest.raises(LockUnavailable) as raised, run_lock(str(lock), NOW, fallback=None):
        pytest.fail("ran unlocked")  # pragma: no cover
    assert str(lock) in str(raised.value)
    assert fix in str(raised.value)
    assert not (tmp_path / "elsewhere").exists()  # a symlink is never followed


# --- log tail ----------------------------------------------------------------


def start_watching(path: Path, content: str = "") -> LogPosition:
    path.write_text(content)
    first = read_new_lines(str(path), None)
    assert isinstance(first, LogChunk)
    return first.position


def read(path: Path, position: LogPosition | None, max_bytes: int = 1 << 20) -> LogChunk:
    chunk = read_new_lines(str(path), position, max_bytes)
    assert isinstance(chunk, LogChunk), chunk
    return chunk


def append(path: Path, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(text)


def test_first_read_returns_nothing_and_points_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "nodeos.log"
    path.write_text("old line 1\nold bad_alloc line 2\n")
    chunk = read(path, None)
    assert chunk.lines == ()
    assert chunk.position.offset == path.stat().st_size
    assert chunk.position.inode == path.stat().st_ino


def test_appended_lines_are_returned(tmp_path: Path) -> None:
    path = tmp_path / "nodeos.log"
    position = start_watching(path, "history\n")
    append(path, "info one\ninfo two\n")
    chunk = read(path, position)
    assert chunk.lines == ("info one", "info two")
    assert chunk.notes == ()
    append(path, "info three\n")
    assert read(path, chunk.position).lines == ("info three",)


def test_nothing_new_returns_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nodeos.log"
    position = start_watching(path, "history\n")
    chunk = read(path, position)
    assert chunk.lines == ()
    assert chunk.position == position


def test_rotation_returns_the_old_files_tail_and_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "nodeos.log"
    position = start_watching(path, "history\n")
    append(path, "old after last read 1\nold after last read 2\n")
    path.rename(tmp_path / "nodeos.log.1")
    path.write_text("new file 1\nnew file 2\n")
    chunk = read(path, position)
    assert chunk.lines == (
        "old after last read 1",
        "old after last read 2",
        "new file 1",
        "new file 2",
    )
    assert "log rotated" in chunk.notes
    assert chunk.position.inode == path.stat().st_ino
    append(path, "new file 3\n")
    assert read(path, chunk.position).lines == ("new file 3",)


def test_rotation_without_a_dot_1_file_reads_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "nodeos.log"
    position = start_watching(path, "history\n")
    path.rename(tmp_path / "nodeos.log.2024-05-01")
    path.write_text("new file 1\n")
    chunk = read(path, position)
    assert chunk.lines == ("new file 1",)
    assert "log rotated" in chunk.notes


@pytest.mark.parametrize(
    ("new_content", "note"),
    [
        ("short\n", "log truncated"),  # shorter than where we were
        ("a different and much longer first line\nsecond\n", "log replaced"),
    ],
)
def test_copytruncate_returns_the_new_content(tmp_path: Path, new_content: str, note: str) -> None:
    path = tmp_path / "nodeos.log"
    position = start_watching(path, "history line one\nhistory 2\n")
    inode = path.stat().st_ino
    with open(path, "r+") as handle:  # copytruncate: same inode, cut to 0, written again
        handle.truncate(0)
    append(path, new_content)
    assert path.stat().st_ino == inode
    chunk = read(path, position)
    assert chunk.lines == tuple(new_content.splitlines())
    assert note in chunk.notes


@pytest.mark.parametrize(
    ("first", "then", "first_lines", "then_lines"),
    [
        ("complete line\npartial", " rest of it\n", ("complete line",), ("partial rest of it",)),
        ("only a partial", " line\n", (), ("only a partial line",)),
        ("a\nb\n", "c\n", ("a", "b"), ("c",)),
    ],
)
def test_partial_last_line_waits_for_the_next_read(
    tmp_path: Path,
    first: str,
    then: str,
    first_lines: tuple[str, ...],
    then_lines: tuple[str, ...],
) -> None:
    path = tmp_path / "nodeos.log"
    position = start_watching(path)
    append(path, first)
    chunk = read(path, position)
    assert chunk.lines == first_lines
    append(path, then)
    assert read(path, chunk.position).lines == then_lines


def test_max_bytes_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "nodeos.log"
    position = start_watching(path)
    lines = [f"info line number {n:04d}" for n in range(200)]  # 22 bytes + newline each
    append(path, "".join(line + "\n" for line in lines))
    max_bytes = 100
    chunk = read(path, position, max_bytes)
    assert sum(len(line) + 1 for line in chunk.lines) <= max_bytes
    assert chunk.lines, "the newest lines are read"
    assert chunk.lines[-1] == lines[-1]
    assert any("skipped" in note for note in chunk.notes)
    assert chunk.position.offset == path.stat().st_size


def test_missing_log_is_a_probe_failure(tmp_path: Path) -> None:
    result = read_new_lines(str(tmp_path / "nope.log"), None)
    assert isinstance(result, ProbeFailure)
    assert "not found" in result.reason


@pytest.mark.parametrize(
    "data",
    [None, {}, {"inode": 1, "offset": "x", "fingerprint": "f"}, [1, 2], {"inode": 1}],
)
def test_bad_position_in_the_state_file_is_ignored(data: object) -> None:
    assert LogPosition.from_json(data) is None


def test_position_survives_json(tmp_path: Path) -> None:
    path = tmp_path / "nodeos.log"
    position = start_watching(path, "history\n")
    again = LogPosition.from_json(json.loads(json.dumps(position.to_json())))
    assert again == position


def test_temp_files_left_by_killed_writes_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    for n in range(3):
        (tmp_path / f".state.json.killed{n}.tmp").write_text("half a state")
    save_state(str(path), empty_state())
    assert sorted(p.name for p in tmp_path.iterdir()) == [".state.json.reserve", "state.json"]
