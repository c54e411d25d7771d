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
# The probe keeps no lines, only how many there were and the last fatal one:
# each test puts a fatal line where it must (or must not) be found.

FATAL = "error 2024-05-01T12:00:00.000 nodeos main.cpp:176 main ] std::bad_alloc"


def start_watching(path: Path, content: str = "") -> LogPosition:
    path.write_text(content)
    first = read_new_lines(str(path), None)
    assert isinstance(first, LogChunk)
    return first.position


def read(path: Path, position: LogPosition | None, max_bytes: int = 1 << 20) -> LogChunk:
    chunk = read_new_lines(str(path), position, max_bytes)
    assert isinstance(chunk, LogChunk), chunk
    return chunk


def fatal_text(chunk: LogChunk) -> str | None:
    return chunk.fatal.text if chunk.fatal else None


def append(path: Path, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(text)


def test_first_read_returns_nothing_and_points_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "nodeos.log"
    path.write_text("old line 1\nold bad_alloc line 2\n")
    chunk = read(path, None)
    assert chunk.line_count == 0
    assert chunk.fatal is None  # history, not news
    assert chunk.position.offset == path.stat().st_size
    assert chunk.position.inode == path.stat().st_ino


def test_appended_lines_are_counted_and_scanned(tmp_path: Path) -> None:
    path = tmp_path / "nodeos.log"
    position = start_watching(path, f"history {FATAL}\n")
    append(path, "info one\ninfo two\n")
    chunk = read(path, position)
    assert (chunk.line_count, chunk.fatal) == (2, None)
    assert chunk.notes == ()
    append(path, f"info three\n{FATAL}\ninfo four\n")
    again = read(path, chunk.position)
    assert again.line_count == 3
    assert again.fatal is not None
    assert (again.fatal.sign, again.fatal.text) == ("bad_alloc", FATAL)


def test_nothing_new_returns_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nodeos.log"
    position = start_watching(path, "history\n")
    chunk = read(path, position)
    assert chunk.line_count == 0
    assert chunk.position == position


def test_rotation_scans_the_old_files_tail_and_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "nodeos.log"
    position = start_watching(path, "history\n")
    append(path, f"old after last read 1\n{FATAL} in the old file\n")
    path.rename(tmp_path / "nodeos.log.1")
    path.write_text("new file 1\nnew file 2\n")
    chunk = read(path, position)
    assert chunk.line_count == 4
    assert fatal_text(chunk) == f"{FATAL} in the old file"
    assert "log rotated" in chunk.notes
    assert chunk.position.inode == path.stat().st_ino
    append(path, "new file 3\n")
    assert read(path, chunk.position).line_count == 1


def test_rotation_keeps_the_last_fatal_line_of_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "nodeos.log"
    position = start_watching(path, "history\n")
    append(path, f"{FATAL} old\n")
    path.rename(tmp_path / "nodeos.log.1")
    path.write_text(f"{FATAL} new\ninfo after\n")
    assert fatal_text(read(path, position)) == f"{FATAL} new"


def test_rotation_without_a_dot_1_file_reads_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "nodeos.log"
    position = start_watching(path, "history\n")
    path.rename(tmp_path / "nodeos.log.2024-05-01")
    path.write_text(f"{FATAL}\n")
    chunk = read(path, position)
    assert chunk.line_count == 1
    assert fatal_text(chunk) == FATAL
    assert "log rotated" in chunk.notes


@pytest.mark.parametrize(
    ("new_content", "note"),
    [
        (f"{FATAL}\n", "log truncated"),  # shorter than where we were
        (f"a different first line\n{FATAL}\n{'second ' * 30}\n", "log replaced"),
    ],
)
def test_copytruncate_scans_the_new_content(tmp_path: Path, new_content: str, note: str) -> None:
    path = tmp_path / "nodeos.log"
    position = start_watching(path, "history line one\n" + "history 2 " * 20 + "\n")
    inode = path.stat().st_ino
    with open(path, "r+") as handle:  # copytruncate: same inode, cut to 0, written again
        handle.truncate(0)
    append(path, new_content)
    assert path.stat().st_ino == inode
    chunk = read(path, position)
    assert chunk.line_count == len(new_content.splitlines())
    assert fatal_text(chunk) == FATAL
    assert note in chunk.notes
    assert chunk.position.offset == path.stat().st_size


@pytest.mark.parametrize(
    ("first", "then", "first_count", "then_count"),
    [
        ("complete line\npartial", " rest of it\n", 1, 1),
        ("only a partial", " line\n", 0, 1),
        ("a\nb\n", "c\n", 2, 1),
    ],
)
def test_partial_last_line_waits_for_the_next_read(
    tmp_path: Path, first: str, then: str, first_count: int, then_count: int
) -> None:
    path = tmp_path / "nodeos.log"
    position = start_watching(path)
    append(path, first)
    chunk = read(path, position)
    assert chunk.line_count == first_count
    assert chunk.position.offset == first.rfind("\n") + 1  # the partial line is not consumed
    append(path, then)
    again = read(path, chunk.position)
    assert again.line_count == then_count
    assert again.position.offset == path.stat().st_size


def test_a_fatal_sign_split_across_two_writes_is_found_once_whole(tmp_path: Path) -> None:
    path = tmp_path / "nodeos.log"
    position = start_watching(path)
    append(path, "error std::bad_al")  # nodeos is writing the line
    chunk = read(path, position)
    assert (chunk.line_count, chunk.fatal, chunk.position.offset) == (0, None, 0)
    append(path, "loc\n")
    again = read(path, chunk.position)
    assert fatal_text(again) == "error std::bad_alloc"


def test_a_half_written_fatal_line_is_reported_at_once(tmp_path: Path) -> None:
    """A crashed nodeos never finishes its last line: a sign in it is not left waiting."""
    path = tmp_path / "nodeos.log"
    position = start_watching(path)
    append(path, "info fine\nerror std::bad_alloc, then nothing")
    chunk = read(path, position)
    assert fatal_text(chunk) == "error std::bad_alloc, then nothing"
    assert chunk.position.offset == path.stat().st_size
    assert chunk.line_count == 2


def test_max_bytes_stops_the_scan_and_the_next_read_goes_on(tmp_path: Path) -> None:
    """A budget makes a run stop early; the next run resumes there: nothing skipped."""
    path = tmp_path / "nodeos.log"
    position = start_watching(path)
    lines = [f"info line number {n:06d}" for n in range(10_000)]  # 24 bytes + newline each
    lines[7_000] = FATAL  # beyond the first run's budget
    append(path, "".join(line + "\n" for line in lines))
    chunk = read(path, position, max_bytes=100)  # raised to one line's cap: 64 KiB + 1
    assert chunk.fatal is None
    assert 0 < chunk.position.offset < path.stat().st_size
    assert any("left for the next run" in note for note in chunk.notes)
    counted, found = chunk.line_count, []
    for _ in range(10):
        chunk = read(path, chunk.position, max_bytes=100)
        counted += chunk.line_count
        found += [chunk.fatal] if chunk.fatal else []
        if chunk.position.offset == path.stat().st_size:
            break
    assert counted == len(lines)  # every line scanned once, none skipped
    assert [f.text for f in found] == [FATAL]
    assert not any("skipped" in note for note in chunk.notes)


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
