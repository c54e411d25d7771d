"""The fault matrix (issue 6), runtime rows: each test breaks one thing around real runs.

1. Disk full under the state file (a tmpfs filled to the last block) while disk: is CRITICAL.
2. Twilio unreachable for 5 runs, then back.
3. Twilio answering slower than its timeout.
4. Twilio answering 429, 500 or an HTML error page.
5. One recipient permanently invalid (Twilio 21211) over a whole incident.
6. kill -9 during a state write: 50 times at random points of a run, 50 inside the write.
7. 20 concurrent runs.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from check_status.alerting.rules import alert_state_from_json
from check_status.config import load
from check_status.runner import run_once
from check_status.state import SCHEMA_VERSION, load_state
from tests.conftest import remount
from tests.standins import NodeosStandIn, TwilioStandIn, free_port

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
GOOD = "+14155550101"
OTHER = "+14155550102"
BAD = "+15005550001"
BAD_REASON = "Twilio 21211: The 'To' number +15***0001 is not a valid phone number."
SENDER = "+15005550006"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def twilio():
    with TwilioStandIn(auth_token=TOKEN) as standin:
        yield standin


def sms_settings(twilio: TwilioStandIn, recipients: tuple[str, ...] = (GOOD, OTHER)) -> dict:
    return {
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM": SENDER,
        "ALERT_TO": ",".join(recipients),
        "ALERT_AFTER": "1",
        "TWILIO_API_BASE_URL": twilio.url,
    }


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def command(env_file: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "check_status", "--env-file", str(env_file), *args]


def run_process(env_file: Path, *args: str, timeout: float = 60) -> tuple[int, str, float]:
    """One real `python -m check_status` process: (exit code, stdout, wall seconds)."""
    started = time.monotonic()
    done = subprocess.run(
        command(env_file, *args), cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    return done.returncode, done.stdout, time.monotonic() - started


def run_cli(cli, env_file: Path) -> tuple[int, dict]:
    result = cli("--env-file", str(env_file), "--json")
    return result.exit_code, json.loads(result.output)


def deliveries(report: dict) -> dict[str, tuple[str, str]]:
    return {d["to"]: (d["result"], d["detail"]) for d in report["alerts"]["deliveries"]}


def saved_state(path: Path) -> dict:
    """The state file as the next run reads it: whole, valid JSON, this schema."""
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA_VERSION
    loaded = load_state(str(path), datetime.now(UTC))
    assert loaded.warning is None, loaded.warning
    return data


def queued(state: dict) -> dict[str, int]:
    return {recipient: len(items) for recipient, items in (state.get("outbox") or {}).items()}


def bodies_to(twilio: TwilioStandIn, recipient: str) -> list[str]:
    return [m["body"] for m in twilio.messages if m["to"] == recipient]


# --------------------------------------------------------------------------------------
# 1. Disk full under the state file
# --------------------------------------------------------------------------------------


def write_until_full(fd: int, chunk: int) -> None:
    while True:
        try:
            if os.write(fd, b"\0" * chunk) == 0:
                return
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            return


def fill_to_the_last_block(directory: Path, leave: int = 0) -> Path:
    """A filler file that leaves `leave` bytes free; with 0, topped up to ENOSPC."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        stat = os.statvfs(directory)
        bulk = stat.f_bavail * stat.f_frsize - max(leave, 64 * 1024)
        os.write(fd, b"\0" * bulk)
        if not leave:
            write_until_full(fd, 4096)  # block by block,
            write_until_full(fd, 1)  # then byte by byte into the last block
    finally:
        os.close(fd)
    if not leave:
        assert os.statvfs(directory).f_bavail == 0
        with pytest.raises(OSError) as full:  # not even one byte fits in a new file
            (directory / "probe").write_bytes(b"x")
        assert full.value.errno == errno.ENOSPC
        (directory / "probe").unlink(missing_ok=True)
    return filler


@pytest.mark.parametrize("then", ["space freed, disk OK", "some space freed, disk still CRITICAL"])
def test_disk_full_under_the_state_file(write_env, nodeos, twilio, tmpfs, then):
    """The SMS goes out, the state is still saved (in the room kept for it beside
    the state file) and says so, and the next run goes on from it: no repeated
    text while the disk stays CRITICAL, and the recovery once it is OK again."""
    state_file = tmpfs / "state.json"
    disk = f"disk:{tmpfs}"
    in_sms = f"disk {tmpfs}"  # the text says "disk /path": no colon after a check name
    env_file = write_env(
        NODEOS_URL=nodeos.url, STATE_FILE=state_file, DISK_PATHS=tmpfs, **sms_settings(twilio)
    )
    code, out, _ = run_process(env_file)
    assert code == 0, out
    assert (tmpfs / ".state.json.reserve").exists()

    filler = fill_to_the_last_block(tmpfs)
    code, out, _ = run_process(env_file)
    assert code == 2, out
    assert out.startswith(f"CHECK-STATUS CRITICAL - {disk}: 100% used"), out
    # Reported: the disk was full and the state needed its reserve.
    assert f"disk full: state file {state_file} saved in the room kept for it" in out
    # Sent: the problem, to every operator, naming the disk.
    assert sorted(m["to"] for m in twilio.messages) == [GOOD, OTHER]
    for body in (bodies_to(twilio, GOOD)[0], bodies_to(twilio, OTHER)[0]):
        assert body.startswith(f"[eu2] CRITICAL {in_sms}: 100% used, 0 B left"), body
    # Kept: the incident, as texted, in a whole state file; no temp file left behind.
    state = saved_state(state_file)
    assert (
        alert_state_from_json(state["alerts"]).checks[disk].incident.notified_status.name
        == "CRITICAL"
    )
    assert sorted(p.name for p in tmpfs.iterdir()) == ["filler", "state.json", "state.json.lock"]

    filler.unlink()
    if then == "space freed, disk OK":
        code, out, _ = run_process(env_file)
        assert code == 0, out
        # The recovery of the problem the operators were told about.
        for recipient in (GOOD, OTHER):
            assert bodies_to(twilio, recipient)[-1].startswith(f"[eu2] RECOVERED {in_sms} after")
        assert (tmpfs / ".state.json.reserve").exists()  # taken again once there is room
    else:
        fill_to_the_last_block(tmpfs, leave=64 * 1024)  # about 94% used
        code, out, _ = run_process(env_file)
        assert code == 2, out
        assert "cannot write state file" not in out
        assert len(twilio.messages) == 2  # no second text for the same incident
    state = saved_state(state_file)
    assert not queued(state)


def test_disk_full_before_the_first_save_still_texts_and_reports(write_env, nodeos, twilio, tmpfs):
    """No reserve yet (the disk filled before check-status ever saved there): the SMS
    still goes out, the failed state write is reported, and once space frees up the
    next run is consistent (a valid state from a first run)."""
    state_file = tmpfs / "state.json"
    env_file = write_env(
        NODEOS_URL=nodeos.url, STATE_FILE=state_file, DISK_PATHS=tmpfs, **sms_settings(twilio)
    )
    filler = fill_to_the_last_block(tmpfs)
    code, out, _ = run_process(env_file)
    assert code == 2, out
    assert f"cannot write state file {state_file}: No space left on device" in out
    assert sorted(m["to"] for m in twilio.messages) == [GOOD, OTHER]
    assert not state_file.exists()

    filler.unlink()
    code, out, _ = run_process(env_file)
    assert code == 0, out
    state = saved_state(state_file)
    assert state["schema"] == 1 and state["checks"][f"disk:{tmpfs}"]["status"] == "OK"


# --------------------------------------------------------------------------------------
# 2-4. Twilio down, slow, or answering errors
# --------------------------------------------------------------------------------------


def test_twilio_unreachable_for_five_runs_then_back(cli, write_env, twilio, state_file):
    env_file = write_env(NODEOS_URL=dead_url(), **sms_settings(twilio))
    twilio.stop()
    for _ in range(5):
        code, report = run_cli(cli, env_file)
        assert code == 2
        assert deliveries(report) == {
            GOOD: ("pending", "Twilio unreachable: connection refused"),
            OTHER: ("pending", "Twilio unreachable: connection refused"),
        }
        # Kept: the one notification, queued once per recipient, not once per run.
        assert queued(saved_state(state_file)) == {GOOD: 1, OTHER: 1}
    assert twilio.requests == []

    twilio.start()  # the same port again
    code, report = run_cli(cli, env_file)
    assert {result for result, _ in deliveries(report).values()} == {"sent"}
    for recipient in (GOOD, OTHER):
        (body,) = bodies_to(twilio, recipient)
        assert body.startswith("[eu2] CRITICAL nodeos: connection refused (127.0.0.1:")
    assert not queued(saved_state(state_file))
    for _ in range(3):
        code, report = run_cli(cli, env_file)
        assert code == 2
        assert report["alerts"]["sms"] == "no SMS due"
    assert sorted(m["to"] for m in twilio.messages) == [GOOD, OTHER]


def test_twilio_slower_than_the_timeout(write_env, twilio, state_file):
    twilio.configure(mode="slow", delay_seconds=30)
    env_file = write_env(NODEOS_URL=dead_url(), **sms_settings(twilio))
    code, out, seconds = run_process(env_file, "--json", timeout=40)
    assert seconds < 13  # the 10 s Twilio timeout, the probes, the start-up
    report = json.loads(out)
    assert code == 2
    assert deliveries(report) == {
        GOOD: ("pending", "Twilio timed out after 10s"),
        OTHER: ("pending", "Twilio timed out after 10s"),
    }
    assert twilio.messages == []
    assert queued(saved_state(state_file)) == {GOOD: 1, OTHER: 1}
    # Twilio answers in time again: the pending alert goes out, once.
    twilio.mode = "ok"
    code, out, _ = run_process(env_file)
    assert code == 2
    assert sorted(m["to"] for m in twilio.messages) == [GOOD, OTHER]
    assert not queued(saved_state(state_file))


@pytest.mark.parametrize(
    ("mode", "http_status", "detail"),
    [
        ("error429", 429, "Twilio 20429: Too Many Requests"),
        ("error500", 500, "Twilio 20500: Internal Server Error"),
        ("html", 502, "Twilio HTTP 502: not JSON (HTML page)"),
    ],
)
def test_twilio_error_answers_are_retried_next_run(
    cli, write_env, twilio, state_file, mode, http_status, detail
):
    twilio.mode = mode
    env_file = write_env(NODEOS_URL=dead_url(), **sms_settings(twilio))
    for _ in range(2):
        code, report = run_cli(cli, env_file)
        assert code == 2
        assert deliveries(report) == {GOOD: ("pending", detail), OTHER: ("pending", detail)}
        assert queued(saved_state(state_file)) == {GOOD: 1, OTHER: 1}
    assert sorted(a["to"] for a in twilio.attempts) == [GOOD, GOOD, OTHER, OTHER]
    assert {a["status"] for a in twilio.attempts} == {http_status}
    assert twilio.messages == []

    twilio.mode = "ok"
    _code, report = run_cli(cli, env_file)
    assert {result for result, _ in deliveries(report).values()} == {"sent"}
    for _ in range(2):
        run_cli(cli, env_file)
    for recipient in (GOOD, OTHER):
        (body,) = bodies_to(twilio, recipient)
        assert body.startswith("[eu2] CRITICAL nodeos: connection refused")
    assert not queued(saved_state(state_file))


# --------------------------------------------------------------------------------------
# 5. One recipient permanently invalid
# --------------------------------------------------------------------------------------


def test_one_permanently_invalid_recipient_over_a_whole_incident(cli, write_env, nodeos, twilio):
    """Healthy, nodeos down from minute 2 to 22 (a reminder at 17), healthy again."""
    twilio.invalid_numbers = {BAD}
    env_file = write_env(
        NODEOS_URL=nodeos.url, REMIND_EVERY_MINUTES=15, **sms_settings(twilio, (GOOD, BAD))
    )
    config = load(str(env_file))
    down = dataclasses.replace(config, nodeos_url=dead_url())
    start = datetime(2026, 11, 26, 1, 55, tzinfo=UTC)
    to_good: dict[int, list[str]] = {}
    bad_attempts: dict[int, int] = {}
    for minute in range(26):
        now = start + timedelta(minutes=minute)
        nodeos.configure(
            head_block_num=400_000_000 + minute * 120, head_block_time=now - timedelta(seconds=0.5)
        )
        seen_messages, seen_attempts = len(twilio.messages), len(twilio.attempts)
        report = run_once(down if 2 <= minute < 22 else config, now)
        if got := [m["body"] for m in twilio.messages[seen_messages:] if m["to"] == GOOD]:
            to_good[minute] = got
        tried = [a for a in twilio.attempts[seen_attempts:] if a["to"] == BAD]
        if tried:
            bad_attempts[minute] = len(tried)
            assert {a["status"] for a in tried} == {400}
            assert f"SMS to {BAD} failed for good: {BAD_REASON}" in report.notes
    # The good recipient gets every text: problem, reminder, recovery.
    assert sorted(to_good) == [2, 17, 22]
    assert [len(got) for got in to_good.values()] == [1, 1, 1]
    assert to_good[2][0].startswith("[eu2] CRITICAL nodeos: connection refused")
    assert to_good[17][0].startswith("[eu2] STILL CRITICAL nodeos: connection refused")
    assert to_good[22][0] == "[eu2] RECOVERED nodeos after 20m"
    # The bad one: tried with the problem and again with the reminder (a late
    # PROBLEM, in case the number works by then); never between, and no
    # recovery of a problem it never heard of.
    assert bad_attempts == {2: 1, 17: 1}
    assert BAD not in [m["to"] for m in twilio.messages]
    status = cli("--env-file", str(env_file), "status")
    assert status.exit_code == 0
    assert "permanent delivery failures (fix ALERT_TO):" in status.output
    assert f"{BAD}: {BAD_REASON} at 2026-11-26T02:12:00Z" in status.output  # minute 17
    assert GOOD not in status.output.split("permanent delivery failures")[1]


# --------------------------------------------------------------------------------------
# 6. kill -9 during state writes
# --------------------------------------------------------------------------------------


def temp_files(directory: Path) -> set[str]:
    return {name for name in os.listdir(directory) if name.endswith(".tmp")}


def kill_inside_the_write(process: subprocess.Popen, directory: Path, rng: random.Random) -> None:
    """Wait for the run's temp state file to appear, then kill -9 within 2 ms (a write,
    fsyncs included, takes about 1 ms here). A run whose write was missed is left be."""
    before = temp_files(directory)
    give_up = time.monotonic() + 10
    while not temp_files(directory) - before:
        if process.poll() is not None or time.monotonic() > give_up:
            return
    target = time.perf_counter() + rng.uniform(0, 0.002)
    while time.perf_counter() < target:
        pass
    process.send_signal(signal.SIGKILL)


def test_kill_9_at_random_points_never_leaves_an_unloadable_state(write_env, nodeos, state_file):
    """50 kills at random points of a run, and 50 more inside its state write.

    A write takes about a millisecond of a run's ~150 ms, so random points alone
    seldom land in it: the second round finds the write by its temp file appearing.
    """
    # 40 endpoint checks (the same stand-in, de-duplicated as #2, #3, ...) give a state
    # of about 16 KB.
    env_file = write_env(NODEOS_URL=nodeos.url, ENDPOINTS=",".join([nodeos.url] * 40))
    directory = state_file.parent
    head = 400_000_000

    def start_run() -> subprocess.Popen:
        nonlocal head
        head += 1
        nodeos.head_block_num = head
        return subprocess.Popen(
            command(env_file), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    durations = []
    for _ in range(3):
        started = time.monotonic()
        assert start_run().wait(timeout=30) == 0
        durations.append(time.monotonic() - started)
    typical = statistics.median(durations)
    assert len(saved_state(state_file)["checks"]) > 40

    seed = random.randrange(2**32)
    rng = random.Random(seed)
    killed = {"at random points": 0, "inside the write": 0}
    for kill in range(100):
        process = start_run()
        if kill < 50:
            how = "at random points"
            time.sleep(rng.uniform(0, typical))
            process.send_signal(signal.SIGKILL)
        else:
            how = "inside the write"
            kill_inside_the_write(process, directory, rng)
        killed[how] += process.wait(timeout=30) == -signal.SIGKILL
        loaded = load_state(str(state_file), datetime.now(UTC))  # must never raise
        assert loaded.data["schema"] == SCHEMA_VERSION
        # Atomic writes: a kill leaves the old file or the new one, never a torn one.
        assert loaded.warning is None, f"kill {kill} (seed {seed}): {loaded.warning}"
    assert not list(directory.glob("state.json.corrupt-*"))
    # Here about 35 of the first 50 runs and all 50 of the others die by the kill; the
    # bounds leave room for a faster disk, where the write is harder to catch.
    assert killed["at random points"] >= 20, (killed, seed)
    assert killed["inside the write"] >= 10, (killed, seed)

    # A kill between the temp file's creation and os.replace leaves that temp file;
    # the next save removes them all (it holds the lock, so none is in use).
    leftovers = temp_files(directory)
    assert len(leftovers) <= 1  # each run cleared those of the runs before it

    code, out, _ = run_process(env_file)
    assert code == 0, out
    assert out.startswith("CHECK-STATUS OK - ")
    assert len(saved_state(state_file)["checks"]) > 40
    assert temp_files(directory) == set()


# --------------------------------------------------------------------------------------
# 7. 20 concurrent runs
# --------------------------------------------------------------------------------------


def test_twenty_concurrent_runs_one_proceeds(write_env, nodeos, state_file):
    # The run holding the lock takes over 5 s: longer than 19 others take to start
    # beside it on 2 busy cores (about 2 s), so "each ends while the holder still
    # runs" holds even on a loaded machine.
    nodeos.delay_seconds = 5
    env_file = write_env(NODEOS_URL=nodeos.url, HTTP_TIMEOUT_SECONDS=10)
    processes, started = [], []
    for _ in range(20):
        started.append(time.monotonic())
        processes.append(
            subprocess.Popen(
                command(env_file), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    ended: list[float | None] = [None] * 20
    give_up = time.monotonic() + 60
    while None in ended and time.monotonic() < give_up:
        for i, process in enumerate(processes):
            if ended[i] is None and process.poll() is not None:
                ended[i] = time.monotonic()
        time.sleep(0.005)
    assert None not in ended, "a run did not end within 60 s"
    outputs = [process.communicate(timeout=5)[0].decode() for process in processes]
    walls = [end - begin for begin, end in zip(started, ended, strict=True)]

    ran = [i for i, process in enumerate(processes) if process.returncode != 3]
    assert len(ran) == 1, [(p.returncode, out) for p, out in zip(processes, outputs, strict=True)]
    (holder,) = ran
    assert processes[holder].returncode == 0
    assert outputs[holder].startswith("CHECK-STATUS OK - ")
    assert walls[holder] > 1
    lock = f"{state_file}.lock"
    for i, (process, out) in enumerate(zip(processes, outputs, strict=True)):
        if i == holder:
            continue
        assert process.returncode == 3
        assert out.startswith(
            f"CHECK-STATUS UNKNOWN - another check-status run holds {lock} "
            f"(pid {processes[holder].pid} since "
        ), out
        assert out.rstrip().endswith("; this run did nothing")
        # At once: each ends while the holder still runs, so none waited for the lock.
        # Its wall time is its own start-up, slowed by 19 others starting beside it
        # (about 1.2 s each on an idle 2-core machine): measured alone below.
        assert ended[i] < ended[holder], (i, walls, holder)
        assert walls[i] < walls[holder], (i, walls, holder)
    state = saved_state(state_file)
    assert state["checks"]["nodeos"]["status"] == "OK"

    # One run holds the lock; one more, started alone, exits UNKNOWN within a second.
    holder_process = subprocess.Popen(command(env_file), cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        give_up = time.monotonic() + 10
        while f"pid {holder_process.pid} " not in Path(lock).read_text():
            assert time.monotonic() < give_up and holder_process.poll() is None
            time.sleep(0.005)
        code, out, seconds = run_process(env_file)
        assert holder_process.poll() is None  # still holding it
    finally:
        assert holder_process.wait(timeout=30) == 0
    assert code == 3
    assert out.startswith(f"CHECK-STATUS UNKNOWN - another check-status run holds {lock} ")
    assert seconds < 1, seconds


def test_a_read_only_state_filesystem_with_no_lock_yet_still_locks_by_default(
    tmpfs: Path, nodeos: NodeosStandIn, tmp_path: Path
):
    """With STATE_FALLBACK_DIR left at its default, the lock too goes to the
    default fallback directory (/run/check-status as root) when the state's
    filesystem is read-only and holds no lock file yet: the run may text."""
    from check_status.state import _file_name_of, fallback_dir

    state = tmpfs / "state.json"
    remount(tmpfs, "ro")
    spare_lock = fallback_dir(None) / _file_name_of(str(state) + ".lock")
    spare_copy = fallback_dir(None) / _file_name_of(str(state))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "STATE_FILE": str(state),
        "NODEOS_URL": nodeos.url,
        "DISK_PATHS": str(tmp_path),
    }
    try:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("check-status")), "run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        locked_there = spare_lock.exists()
    finally:
        for leftover in (spare_lock, spare_copy):
            leftover.unlink(missing_ok=True)
    assert done.returncode == 1, done.stdout  # WARNING: state only in the copy
    assert "cannot open the run lock" not in done.stdout
    assert f"locked {spare_lock}" in done.stdout
    assert locked_there
