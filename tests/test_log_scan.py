"""The log scan reads every new byte, in bounded memory, and never skips a fatal line
(hostile-input trial: a `bad_alloc` followed by more than 4 MiB within a minute was
skipped). Real files in tmp_path; a real FIFO; /dev/zero.

Memory is measured with tracemalloc (what Python allocated, peak) and printed with
the process's RSS; the assertions are on what was found and on the allocation peak,
never on time.
"""

from __future__ import annotations

import os
import threading
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from check_status.checks.nodeos_log import judge_nodeos_log
from check_status.config import load
from check_status.model import ProbeFailure, Status
from check_status.probes.log import (
    MAX_LINE_BYTES,
    READ_CHUNK_BYTES,
    LogChunk,
    LogPosition,
    fatal_in,
    read_new_lines,
)
from check_status.remote_text import LOG_LINE_LIMIT, MARK
from check_status.runner import run_once
from check_status.state import MAX_STATE_BYTES

NOW = datetime(2026, 11, 26, 6, 47, tzinfo=UTC)
FATAL = "error 2026-11-26T06:46:59.123 nodeos main.cpp:176 main ] std::bad_alloc"
MIB = 1024 * 1024
# Peak Python allocation of a scan: two 1 MiB pieces and a carried line at most.
# Reading 64 MiB whole would allocate 64 MiB, and splitting it into lines far more.
MAX_SCAN_ALLOCATION = 8 * MIB


def vm_rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def watch(path: Path) -> LogPosition:
    """The first run: notes where the file ends."""
    first = read_new_lines(str(path), None)
    assert isinstance(first, LogChunk)
    return first.position


def scan(path: Path, position: LogPosition, **budget: Any) -> LogChunk:
    chunk = read_new_lines(str(path), position, **budget)
    assert isinstance(chunk, LogChunk), chunk
    return chunk


def scan_to_the_end(path: Path, position: LogPosition, **budget: Any) -> list[LogChunk]:
    """Runs until the position reaches the end of the file (at most 200)."""
    chunks = []
    for _ in range(200):
        chunk = scan(path, position, **budget)
        chunks.append(chunk)
        position = chunk.position
        if position.offset >= path.stat().st_size and position.inode == path.stat().st_ino:
            return chunks
    pytest.fail("the scan never reached the end of the file")


def measured(call: Callable[[], Any]) -> tuple[Any, int, int]:
    """(what `call` returned, tracemalloc peak, RSS growth)."""
    rss_before = vm_rss()
    tracemalloc.start()
    try:
        value = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return value, peak, vm_rss() - rss_before


def append_lines(path: Path, total_bytes: int) -> int:
    """Append ~total_bytes of ordinary nodeos lines; returns how many lines."""
    line = b"info  2026-11-26T06:47:00.500 nodeos producer_plugin.cpp:694 on_incoming_block ] "
    line += b"Received block 9f3a... #333261268 @ 2026-11-26T06:47:00.500 signed by eoseouldotio\n"
    block = line * (MIB // len(line))
    count = 0
    with path.open("ab") as handle:
        while total_bytes > 0:
            handle.write(block)
            total_bytes -= len(block)
            count += MIB // len(line)
    return count


# --- never skipped -----------------------------------------------------------------


def test_a_fatal_line_followed_by_64_mib_in_a_minute_is_found(tmp_path: Path) -> None:
    log = tmp_path / "nodeos.log"
    log.write_text("info started\n")
    position = watch(log)
    with log.open("a") as handle:
        handle.write(FATAL + "\n")
    lines = 1 + append_lines(log, 64 * MIB)
    chunks, peak, rss = measured(lambda: scan_to_the_end(log, position))
    found = [c.fatal for c in chunks if c.fatal]
    assert [(f.sign, f.text) for f in found] == [("bad_alloc", FATAL)]
    assert sum(c.line_count for c in chunks) == lines  # every line scanned, once
    assert not any("skipped" in note for c in chunks for note in c.notes)
    assert peak < MAX_SCAN_ALLOCATION, peak
    print(
        f"64 MiB scanned in {len(chunks)} run(s): tracemalloc peak {peak / MIB:.2f} MiB,"
        f" RSS growth {rss / MIB:.2f} MiB"
    )


def test_the_run_reports_it_and_the_state_stays_small(write_env: Any, tmp_path: Path) -> None:
    """The trial itself: one cron run after a bad_alloc and 64 MiB of lines."""
    from tests.standins import NodeosStandIn

    log = tmp_path / "nodeos.log"
    log.write_text("info started\n")
    with NodeosStandIn() as nodeos:
        config = load(str(write_env(NODEOS_URL=nodeos.url, NODEOS_LOG=log)))
        nodeos.head_block_time = NOW - timedelta(seconds=0.5)
        run_once(config, NOW)
        with log.open("a") as handle:
            handle.write(FATAL + " " + "x" * (3 * MIB) + "\n")  # a 3 MiB fatal line
        append_lines(log, 64 * MIB)
        later = NOW + timedelta(minutes=1)
        nodeos.head_block_time = later - timedelta(seconds=0.5)
        report = run_once(config, later)
    (result,) = [r for r in report.results if r.name == "nodeos_log"]
    assert (result.status, result.summary) == (Status.CRITICAL, "fatal line just now: bad_alloc")
    assert "std::bad_alloc" in result.detail
    size = Path(config.state_file).stat().st_size
    assert size < MAX_STATE_BYTES // 4, size
    print(f"state after the 3 MiB fatal line and 64 MiB: {size} bytes")


@pytest.mark.parametrize("before_the_end", [1, 4, 8])
@pytest.mark.parametrize("line_bytes", [200, MAX_LINE_BYTES + 5000], ids=["short", "long"])
def test_a_sign_cut_by_a_read_boundary_is_found(
    tmp_path: Path, before_the_end: int, line_bytes: int
) -> None:
    """`bad_alloc` straddling the 1 MiB boundary, in a line carried whole or in pieces."""
    log = tmp_path / "nodeos.log"
    log.write_text("")
    position = watch(log)
    sign_at = READ_CHUNK_BYTES - before_the_end  # file offset of "bad_alloc"
    line = b"error " + b"y" * (line_bytes - 6 - len(b"std::")) + b"std::"
    head = sign_at - len(line)
    with log.open("ab") as handle:
        handle.write(b"z" * (head - 1) + b"\n" + line + b"bad_alloc after the boundary\n")
    chunks = scan_to_the_end(log, position)
    found = [c.fatal for c in chunks if c.fatal]
    assert len(found) == 1 and found[0].sign == "bad_alloc"
    assert "std::bad_alloc after the boundary" in found[0].text
    assert len(found[0].text) <= LOG_LINE_LIMIT


def test_a_3_mib_line_without_a_newline_is_scanned_in_pieces(tmp_path: Path) -> None:
    log = tmp_path / "nodeos.log"
    log.write_text("")
    position = watch(log)
    with log.open("a") as handle:
        handle.write("error std::bad_alloc " + "x" * (3 * MIB))  # and nodeos died
    chunk, peak, _rss = measured(lambda: scan(log, position))
    assert chunk.fatal is not None
    assert chunk.fatal.text.startswith("error std::bad_alloc xxx")
    assert len(chunk.fatal.text) == LOG_LINE_LIMIT
    assert peak < MAX_SCAN_ALLOCATION, peak
    # Consumed (but for the last few bytes): it is never scanned again in full.
    assert log.stat().st_size - chunk.position.offset < 100
    again = scan(log, chunk.position)
    assert again.fatal is None


def test_a_sign_at_the_end_of_a_3_mib_line_is_kept_in_view(tmp_path: Path) -> None:
    log = tmp_path / "nodeos.log"
    log.write_text("")
    position = watch(log)
    with log.open("a") as handle:
        handle.write("error " + "x" * (3 * MIB) + " std::bad_alloc at the end\n")
    chunks = scan_to_the_end(log, position)
    found = [c.fatal for c in chunks if c.fatal]
    assert len(found) == 1
    assert found[0].text.startswith("...")
    assert found[0].text.endswith("std::bad_alloc at the end")
    assert sum(c.line_count for c in chunks) == 1


@pytest.mark.parametrize("max_seconds", [0.0])
def test_a_scan_stopped_by_time_goes_on_next_run(tmp_path: Path, max_seconds: float) -> None:
    """With no time at all, each run reads one 1 MiB piece, and the next goes on."""
    log = tmp_path / "nodeos.log"
    log.write_text("")
    position = watch(log)
    lines = append_lines(log, 3 * MIB)
    with log.open("a") as handle:
        handle.write(FATAL + "\n")
    lines += 1 + append_lines(log, 2 * MIB)
    chunks = scan_to_the_end(log, position, max_seconds=max_seconds)
    assert len(chunks) >= 5  # one piece a run
    assert any("left for the next run" in note for note in chunks[0].notes)
    assert sum(c.line_count for c in chunks) == lines
    assert [c.fatal.text for c in chunks if c.fatal] == [FATAL]


def test_a_rotated_file_too_big_for_one_run_is_finished_before_the_new_one(
    tmp_path: Path,
) -> None:
    log = tmp_path / "nodeos.log"
    log.write_text("info started\n")
    position = watch(log)
    old_lines = append_lines(log, 3 * MIB)
    with log.open("a") as handle:
        handle.write(f"{FATAL} in the old file\n")
    old_lines += 1 + append_lines(log, 2 * MIB)  # the run that finds it ends in the old file
    log.rename(tmp_path / "nodeos.log.1")
    log.write_text(f"info new file\n{FATAL} in the new file\n")
    chunks = scan_to_the_end(log, position, max_seconds=0.0)
    assert chunks[0].notes == ("log rotated", f"the rest of {log}.1 next run")
    assert chunks[0].position.inode == position.inode  # still on the old file
    found = [c.fatal.text for c in chunks if c.fatal]
    assert found == [f"{FATAL} in the old file", f"{FATAL} in the new file"]
    assert sum(c.line_count for c in chunks) == old_lines + 2


# --- NUL padding ----------------------------------------------------------------------


def test_a_tail_of_nul_bytes_is_not_a_line_and_the_restart_is_read(tmp_path: Path) -> None:
    """A crash leaves NULs where the last writes were; nodeos then appends after them."""
    log = tmp_path / "nodeos.log"
    log.write_text("info started\n")
    position = watch(log)
    with log.open("a") as handle:
        handle.write(FATAL + "\n")
    os.truncate(log, log.stat().st_size + 64 * MIB)  # 64 MiB of NULs, no newline
    chunks, peak, _rss = measured(lambda: scan_to_the_end_or_stuck(log, position))
    assert [c.fatal.text for c in chunks if c.fatal] == [FATAL]
    assert sum(c.line_count for c in chunks) == 1  # the NULs are not a line
    assert peak < MAX_SCAN_ALLOCATION, peak
    last = chunks[-1].position
    with log.open("a") as handle:  # nodeos restarts
        handle.write(f"info restarted\n{FATAL} again\n")
    after = scan(log, last)
    assert after.line_count == 2
    assert after.fatal is not None and after.fatal.text == f"{FATAL} again"


def scan_to_the_end_or_stuck(path: Path, position: LogPosition) -> list[LogChunk]:
    """Runs until the position stops moving: a NUL tail waits like a half-written line."""
    chunks = []
    for _ in range(200):
        chunk = scan(path, position)
        chunks.append(chunk)
        if chunk.position == position:
            return chunks
        position = chunk.position
    pytest.fail("the scan kept moving")


def test_nuls_in_a_fatal_line_are_one_mark(tmp_path: Path) -> None:
    log = tmp_path / "nodeos.log"
    log.write_text("")
    position = watch(log)
    with log.open("ab") as handle:
        handle.write(b"\0" * 100_000 + FATAL.encode() + b"\0\0\0 tail\n")
    chunks = scan_to_the_end(log, position)
    (found,) = [c.fatal for c in chunks if c.fatal]
    assert "\0" not in found.text
    assert MARK * 2 not in found.text
    assert found.text.endswith(f"std::bad_alloc{MARK} tail")


# --- what is not a log file -----------------------------------------------------------


def promptly(call: Callable[[], Any]) -> Any:
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.setdefault("value", call()), daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        pytest.fail("hung")
    return box["value"]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_a_log_path_that_is_not_a_file_is_a_probe_failure_at_once(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "nodeos.log"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path = Path("/dev/zero")
    for position in (None, LogPosition(1, 0, "x")):
        failure = promptly(lambda position=position: read_new_lines(str(path), position))
        assert isinstance(failure, ProbeFailure)
        expected = "a directory" if kind == "directory" else "not a regular file"
        assert failure.reason == f"cannot read log file {path}: it is {expected}"


# --- what may be texted -----------------------------------------------------------------


def chunk_with(line: str) -> LogChunk:
    return LogChunk(LogPosition(1, 100, "f"), (), 1, fatal_in(line))


def test_the_summary_names_the_sign_and_the_line_goes_to_detail() -> None:
    line = "error 2026-11-26 nodeos ] std::bad_alloc: call +1 900 555 0100 \x1b]52;c;ZWNobw==\x07"
    result, memory = judge_nodeos_log(chunk_with(line), None, NOW)
    assert (result.status, result.summary) == (Status.CRITICAL, "fatal line just now: bad_alloc")
    assert "900" not in result.summary
    assert "900 555 0100" in result.detail and "std::bad_alloc" in result.detail
    assert "\x1b" not in result.detail and "\x07" not in result.detail
    assert memory["fatal_sign"] == "bad_alloc"
    assert len(memory["fatal_line"]) <= LOG_LINE_LIMIT
    # Held a minute later, from memory alone: still the sign only.
    later, _ = judge_nodeos_log(
        LogChunk(LogPosition(1, 100, "f")), memory, NOW + timedelta(minutes=1)
    )
    assert later.summary == "fatal line 1m ago: bad_alloc"
    assert later.detail == result.detail


def test_a_remembered_line_from_an_older_state_is_cleaned_and_its_sign_found() -> None:
    memory = {
        "fatal_line": "\x1b[2J" + "x" * 990 + " replay required",  # 1000 characters, raw
        "fatal_at": "2026-11-26T06:46:00Z",
        "fatal_sign": "call +1 900 555 0100",  # not one of ours: never texted
    }
    result, kept = judge_nodeos_log(LogChunk(LogPosition(1, 1, "f")), memory, NOW)
    assert result.status is Status.CRITICAL
    assert result.summary == "fatal line 1m ago"  # the sign was cut off with the line
    assert "900" not in result.summary
    assert len(kept["fatal_line"]) <= LOG_LINE_LIMIT and "\x1b" not in kept["fatal_line"]
    memory["fatal_line"] = "error ... std::bad_alloc"
    result, _ = judge_nodeos_log(LogChunk(LogPosition(1, 1, "f")), memory, NOW)
    assert result.summary == "fatal line 1m ago: bad_alloc"


def test_no_fatal_lines_counts_the_lines_scanned(tmp_path: Path) -> None:
    log = tmp_path / "nodeos.log"
    log.write_text("")
    position = watch(log)
    lines = append_lines(log, 2 * MIB)
    result, memory = judge_nodeos_log(scan(log, position), {}, NOW)
    assert (result.status, result.summary) == (Status.OK, f"no fatal lines in {lines} new lines")
    assert set(memory) == {"position"}
