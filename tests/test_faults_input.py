"""Fault matrix, rows 8 to 12 (issue 6): bad input from the state file, nodeos, the
config, the clock and the log. Real parts only: loopback stand-ins, real files, and
whole `python -m check_status` processes wherever a traceback could only show in one.

Each test asserts what was kept and what was sent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from check_status.config import KEYS, load
from check_status.runner import run_once
from tests.standins import (
    DEFAULT_GET_INFO_FIXTURE,
    NodeosStandIn,
    TwilioStandIn,
    format_block_time,
    free_port,
    load_fixture,
)

REPO = Path(__file__).resolve().parent.parent
SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
OPERATOR = "+14155550101"
START = datetime(2026, 11, 26, 1, 55, tzinfo=UTC)
HEAD = 400_000_000


def process_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CHECK_STATUS_DEBUG", None)  # a traceback must not be asked for
    return env


def run_process(env_file: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """One whole run, as cron starts it."""
    return subprocess.run(
        [sys.executable, "-m", "check_status", "--env-file", str(env_file), *args],
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def assert_no_traceback(done: subprocess.CompletedProcess) -> None:
    for stream in (done.stdout, done.stderr):
        assert "Traceback" not in stream, stream
        assert "internal error" not in stream, stream
    assert done.stderr == "", done.stderr


def sms_settings(twilio: TwilioStandIn) -> dict[str, str]:
    return {
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM": "+15005550006",
        "ALERT_TO": OPERATOR,
        "TWILIO_API_BASE_URL": twilio.url,
    }


def statuses(report) -> dict[str, tuple[str, str]]:
    return {r.name: (r.status.name, r.summary) for r in report.results}


# --- row 8: the state file damaged -------------------------------------------------

# Every section of the state, present with the wrong type.
DEEP_WRONG_TYPES = {
    "schema": 1,
    "checks": {"nodeos": "bad"},
    "memory": {"head_block": {"num": "x", "seen_at": 5}, "nodeos_log": [1]},
    "alerts": {"checks": {"nodeos": {"problem_runs": "many"}}, "silences": 5},
    "outbox": {OPERATOR: "x"},
    "delivery_failures": [],
}
# Either moved aside with a note or accepted with the bad parts dropped: only "no crash".
EITHER = "either"


def write_bytes(content: bytes) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.write_bytes(content)

    return make


def write_json(document: Any) -> Callable[[Path], None]:
    return write_bytes(json.dumps(document).encode())


def make_symlink_loop(path: Path) -> None:
    path.symlink_to(path.name)  # ELOOP on open, even for root


STATE_DAMAGE = [
    pytest.param(
        write_bytes(b'{"schema": 1, "checks": {"nodeos": {"status": "O'),
        "not valid JSON (truncated or corrupt)",
        id="truncated",
    ),
    pytest.param(
        write_json({"schema": 1, "checks": [], "memory": "x"}),
        "wrong shape (checks/memory missing)",
        id="wrong-types",
    ),
    pytest.param(write_json(DEEP_WRONG_TYPES), None, id="wrong-types-deep"),
    pytest.param(
        write_json({"schema": 99, "checks": {}, "memory": {}}),
        "written by a newer check-status (schema 99)",
        id="future-schema",
    ),
    pytest.param(
        make_symlink_loop,
        "unreadable (Too many levels of symbolic links)",
        id="unreadable",
    ),
    pytest.param(
        # Valid JSON: 1e400 is a number, which Python reads as float("inf").
        write_bytes(
            b'{"schema": 1, "checks": {}, "memory": {"head_block": '
            b'{"num": 1e400, "seen_at": "2026-11-26T01:00:00Z"}}}'
        ),
        EITHER,
        id="number-1e400",
    ),
    pytest.param(
        # Not JSON, but Python's json module reads it: refused, as state.py says.
        write_bytes(
            b'{"schema": 1, "checks": {}, "memory": {"lib": '
            b'{"num": Infinity, "head": NaN, "seen_at": "2026-11-26T01:00:00Z"}}}'
        ),
        "not valid JSON (truncated or corrupt)",
        id="infinity-and-nan",
    ),
    pytest.param(
        # 60 KB: under the 64 KiB size limit, so it is the parser that refuses it.
        write_bytes(b'{"x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"),
        "not valid JSON (truncated or corrupt)",
        id="nested-30000-deep",
    ),
    pytest.param(
        write_json(
            {
                "schema": 1,
                "checks": {},
                "memory": {"head_block": {"num": 1, "seen_at": "0001-01-01T00:00:00+01:00"}},
            }
        ),
        EITHER,
        id="time-out-of-range",
    ),
]


@pytest.mark.parametrize(("damage", "reason"), STATE_DAMAGE)
def test_damaged_state_file_is_a_first_run_without_a_traceback(
    nodeos, write_env, state_file, damage, reason
):
    state_file.parent.mkdir(parents=True)
    damage(state_file)
    with TwilioStandIn(auth_token=TOKEN) as twilio:
        env_file = write_env(NODEOS_URL=nodeos.url, **sms_settings(twilio))
        done = run_process(env_file)
        assert_no_traceback(done)
        lines = done.stdout.splitlines()
        assert len(lines) == 1, done.stdout
        line = lines[0]
        moved = ", moved to " in line
        if reason is EITHER:
            assert done.returncode == (1 if moved else 0), line
        elif reason is None:  # accepted: the damaged parts are dropped without a word
            assert (done.returncode, moved) == (0, False), line
            assert "state file" not in line
        else:
            assert done.returncode == 1, line  # the run's status: healthy, but memory lost
            assert re.match(r"CHECK-STATUS WARNING - \d+ checks OK / head #\d+ ", line), line
            assert line.count("state file") == 1, line  # one clear note
            note = f"state file {state_file} was {reason}, moved to "
            assert note in line
            aside = Path(line.split(note, 1)[1].split(", ", 1)[0])
            assert aside.parent == state_file.parent
            assert aside.name.startswith("state.json.corrupt-")
            assert os.path.lexists(aside)  # kept for a post-mortem
        if moved:
            assert "running as a first run" in line

        # The first-run fallback left a fresh, valid state file...
        state = json.loads(state_file.read_text())
        assert state["schema"] == 1
        assert state["checks"]["nodeos"]["status"] == "OK"
        assert state["alerts"]["silences"] == []
        assert state.get("outbox", {}) == {}
        # ...which the next run reads without a word.
        again = run_process(env_file)
        assert_no_traceback(again)
        assert again.returncode == 0, again.stdout
        assert again.stdout.startswith("CHECK-STATUS OK - ")
        assert "state file" not in again.stdout
        assert twilio.messages == []


def test_directory_in_place_of_the_state_file_still_texts_a_lasting_outage(
    write_env, state_file, tmp_path
):
    """A directory is not moved aside (it may be anything: nodeos's data/state): each
    run exits 3 naming it, and alerting goes on from the fallback copy."""
    state_file.mkdir(parents=True)
    (state_file / "shared_memory.bin").write_bytes(b"nodeos")
    with TwilioStandIn(auth_token=TOKEN) as twilio:
        env_file = write_env(
            NODEOS_URL=f"http://127.0.0.1:{free_port()}",
            ALERT_AFTER=2,
            STATE_FALLBACK_DIR=tmp_path / "fallback",
            **sms_settings(twilio),
        )
        for _ in range(3):
            done = run_process(env_file)
            assert_no_traceback(done)
            assert done.returncode == 3
            assert f"state file {state_file} is a directory, not a file" in done.stdout
        assert len(twilio.messages) == 1
    assert (state_file / "shared_memory.bin").read_bytes() == b"nodeos"


# --- row 9: nodeos misbehaving ---------------------------------------------------

# Runs the command from a minimal python (-S) and reports its wall time and peak RSS:
# wait4's ru_maxrss counts the child's image before exec, so forking from this test
# process (stand-in servers and all) would report pytest's size, not check-status's.
# The child's stdout comes first; the launcher's own figures are the last line.
LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stdout.flush()
print(time.perf_counter() - started, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""
MAX_WALL_SECONDS = 4.0  # HTTP_TIMEOUT_SECONDS=2, plus the run's grace, plus start-up
# A run peaks at about 25 MB here, whatever nodeos sends; reading the 10 MB body
# whole (bytes, then text, then JSON) would pass 45 MB.
MAX_RSS_BYTES = 36_000_000


def get_info_body(**changes: Any) -> bytes:
    body = load_fixture(DEFAULT_GET_INFO_FIXTURE)
    body["head_block_time"] = format_block_time(datetime.now(UTC) - timedelta(seconds=0.5))
    body.update(changes)
    return json.dumps(body).encode()


def raw(**changes: Any) -> dict[str, Any]:
    return {"mode": "raw", "raw_body": get_info_body(**changes)}


def raw_literal(field: str, literal: bytes) -> dict[str, Any]:
    """get_info with `field` set to a JSON literal json.dumps would not write (1e400)."""
    body = get_info_body(**{field: "__LITERAL__"}).replace(b'"__LITERAL__"', literal)
    return {"mode": "raw", "raw_body": body}


NODEOS_FAULTS = [
    pytest.param({"mode": "big"}, "nodeos", "response larger than 1024 KiB", id="10MB-body"),
    pytest.param(
        {"mode": "trickle"}, "nodeos", "timeout after 2s (body still arriving)", id="trickle"
    ),
    pytest.param({"mode": "invalid_utf8"}, "nodeos", "not JSON", id="invalid-utf8"),
    pytest.param(
        raw(head_block_num=[333261268]),
        "nodeos",
        "bad get_info: head_block_num is not a number",
        id="head-num-a-list",
    ),
    pytest.param(
        raw(chain_id=12345),
        "nodeos",
        "bad get_info: chain_id is not a string",
        id="chain-id-number",
    ),
    pytest.param(
        raw(head_block_time=1700000000),
        "nodeos",
        "bad get_info: head_block_time is not a time",
        id="head-time-a-number",
    ),
    pytest.param(
        raw(head_block_num=-5),
        "nodeos",
        "bad get_info: head_block_num is out of range",
        id="negative",
    ),
    pytest.param(
        raw(last_irreversible_block_num=-1),
        "nodeos",
        "bad get_info: last_irreversible_block_num is out of range",
        id="negative-lib",
    ),
    pytest.param(
        raw(head_block_num=10**30),
        "nodeos",
        "bad get_info: head_block_num is out of range",
        id="absurd",
    ),
    pytest.param(
        # Named "not a number" rather than "out of range": the string form is capped at
        # 20 digits before it is read. The value itself is only in -v: it may be texted.
        raw(head_block_num=str(10**30)),
        "nodeos",
        "bad get_info: head_block_num is not a number",
        id="absurd-as-string",
    ),
    pytest.param(
        raw_literal("head_block_num", b"1e400"),
        "nodeos",
        "bad get_info: head_block_num is not a number",
        id="1e400",
    ),
    pytest.param(
        {"head_block_time": datetime(2099, 1, 1, tzinfo=UTC)},
        "head_block",
        "head time is ",
        id="year-2099",
    ),
]


@pytest.mark.parametrize(("standin", "check", "summary"), NODEOS_FAULTS)
def test_misbehaving_nodeos_is_named_in_bounded_time_and_memory(
    write_env, state_file, standin, check, summary
):
    with NodeosStandIn(**standin) as nodeos:
        env_file = write_env(NODEOS_URL=nodeos.url, HTTP_TIMEOUT_SECONDS=2)
        done = subprocess.run(
            [
                sys.executable,
                "-S",
                "-c",
                LAUNCHER,
                sys.executable,
                "-m",
                "check_status",
                "--env-file",
                str(env_file),
                "--json",
            ],
            env=process_env(),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=REPO,
        )
    assert_no_traceback(done)
    *output, figures = done.stdout.splitlines()
    wall, rss_kib, code = figures.split()
    checks = {c["name"]: c for c in json.loads("\n".join(output))["checks"]}
    result = checks[check]
    assert result["summary"].startswith(summary), result
    if check == "nodeos":
        assert (int(code), result["status"]) == (2, "CRITICAL"), result
        assert checks["head_block"]["caused_by"] == "nodeos"
    else:
        assert checks["nodeos"]["status"] == "OK"
        assert (int(code), result["status"]) == (1, "WARNING"), result
        assert "in the future: check the clocks (NTP)" in result["summary"]
        assert "stalled" not in result["summary"]
    assert float(wall) < MAX_WALL_SECONDS
    assert int(rss_kib) * 1024 < MAX_RSS_BYTES
    assert json.loads(state_file.read_text())["schema"] == 1


# --- row 10: every config key given a bad value ---------------------------------

BAD_VALUES = {
    "TWILIO_AUTH_TOKEN_FILE": "relative/token",
    "HEARTBEAT_URL_FILE": "relative/url",
    "NODE_NAME": "eu 2!",
    "NODEOS_URL": "ftp://operator:n0d3pass@127.0.0.1:8888",
    "EXPECTED_CHAIN_ID": "aca376f2",
    "HEAD_LAG_WARN_SECONDS": "abc",
    "HEAD_LAG_CRIT_SECONDS": "0",
    "HEAD_STALL_SECONDS": "1",
    "LIB_LAG_WARN_BLOCKS": "-1",
    "LIB_LAG_CRIT_BLOCKS": "1.5k",
    "ENDPOINTS": "https://api:endp0intpass@eu.example.io,eu1.example.io",
    "ENDPOINT_REQUESTS": "11",
    "DISK_PATHS": "/,data",
    "DISK_WARN_PERCENT": "101",
    "DISK_CRIT_PERCENT": "88%",
    "STATE_DB_WARN_PERCENT": "0",
    "STATE_DB_CRIT_PERCENT": "ninety",
    "NODEOS_LOG": "nodeos.log",
    "HTTP_TIMEOUT_SECONDS": "60",
    "STATE_FILE": "state.json",
    "STATE_FALLBACK_DIR": "fallback",
    "TWILIO_ACCOUNT_SID": "AC123",
    "TWILIO_AUTH_TOKEN": "hunter2-secret with-a-space",
    "TWILIO_FROM": "415-555-0100",
    "TWILIO_MESSAGING_SERVICE_SID": "MGnotasid",
    "ALERT_TO": "+14155550101,14155550102",
    "ALERT_LEVEL": "INFO",
    "WAKING_HOURS": "07:00-07:00",
    "ESCALATE_AFTER_MINUTES": "ten",
    "CALL_ON": "ALWAYS",
    "TWILIO_WEBHOOK_URL": "ftp://eu2.example.io/twilio/sms",
    "ALERT_AFTER": "0",
    "REMIND_EVERY_MINUTES": "-5",
    "TWILIO_API_BASE_URL": "api.twilio.com",
    "HEARTBEAT_URL": "http://hc-ping.com:0/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278",
    "PEERS": "eu1=http://watch:p33rpass@10.0.0.1:0",
    "HEALTH_CACHE_SECONDS": "61",
    "PROMETHEUS_TEXTFILE": "check_status.prom",
    "CRON_FILE": "cron.d/check-status",
}
# Set in every case: a bad value elsewhere must not print it either.
GOOD_SECRET = "5ec2e75ec2e75ec2e75ec2e75ec2e700"
# What a bad value holds that is a secret: a URL's password, a heartbeat's ping token.
SECRETS_IN_BAD_VALUES = {
    "NODEOS_URL": "n0d3pass",
    "ENDPOINTS": "endp0intpass",
    "HEARTBEAT_URL": "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278",
    "PEERS": "p33rpass",
}


def test_every_config_key_has_a_bad_value():
    """A key added to KEYS without a bad value here fails this test."""
    assert sorted(BAD_VALUES) == sorted(key.name for key in KEYS)


@pytest.mark.parametrize("key", [key.name for key in KEYS])
def test_bad_config_value_exits_3_with_one_line_naming_the_key(write_env, key):
    bad = BAD_VALUES[key]
    settings = {"TWILIO_AUTH_TOKEN": GOOD_SECRET, key: bad}
    done = run_process(write_env(**settings))
    assert_no_traceback(done)
    assert done.returncode == 3, done.stdout
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    assert lines[0].startswith(f"CHECK-STATUS UNKNOWN - config: {key}="), lines[0]
    assert "is not valid: expected " in lines[0]
    assert GOOD_SECRET not in done.stdout
    if key == "TWILIO_AUTH_TOKEN":
        assert lines[0].startswith("CHECK-STATUS UNKNOWN - config: TWILIO_AUTH_TOKEN=(hidden) ")
        for word in (bad, *bad.split()):
            assert word not in done.stdout
    elif key in SECRETS_IN_BAD_VALUES:
        assert SECRETS_IN_BAD_VALUES[key] not in done.stdout
        assert f"{key}='" in lines[0] and "***" in lines[0]  # the rest is shown
    else:
        assert f"{key}='" in lines[0]  # the operator sees what was given


# --- row 11: the clock jumping back 1 h between runs -----------------------------

JUMP_AT = 5  # real minute of the first run after the clock went back
JUMP = timedelta(hours=1)


def clock(minute: int) -> datetime:
    """The wall clock at real minute `minute`: it goes back 1 h at JUMP_AT."""
    return START + timedelta(minutes=minute) - (JUMP if minute >= JUMP_AT else timedelta())


@pytest.fixture
def sms_config(write_env):
    def make(nodeos: NodeosStandIn, twilio: TwilioStandIn, **settings: Any):
        env_file = write_env(
            NODEOS_URL=nodeos.url,
            ALERT_AFTER=2,
            REMIND_EVERY_MINUTES=15,
            **sms_settings(twilio),
            **settings,
        )
        return load(str(env_file))

    return make


@pytest.mark.parametrize("same_head_across_the_jump", [False, True])
def test_clock_back_1h_healthy_node_no_stall_no_text(sms_config, same_head_across_the_jump):
    with NodeosStandIn() as nodeos, TwilioStandIn(auth_token=TOKEN) as twilio:
        config = sms_config(nodeos, twilio)
        seen: list[dict[str, tuple[str, str]]] = []
        for minute in range(JUMP_AT + 25):
            now = clock(minute)
            blocks = minute
            if same_head_across_the_jump and minute >= JUMP_AT:
                blocks -= 1  # the first run after the jump sees the head of the one before
            nodeos.configure(
                head_block_num=HEAD + blocks * 120,
                head_block_time=now - timedelta(seconds=0.5),
            )
            seen.append(statuses(run_once(config, now)))
    for minute, result in enumerate(seen):
        assert result["head_block"][0] == "OK", (minute, result["head_block"])
        assert result["lib"][0] == "OK", (minute, result["lib"])
    assert twilio.attempts == []


def test_clock_back_1h_real_stall_after_the_jump_is_still_caught(sms_config):
    with NodeosStandIn() as nodeos, TwilioStandIn(auth_token=TOKEN) as twilio:
        config = sms_config(nodeos, twilio)
        head_block = []
        for minute in range(JUMP_AT + 3):
            now = clock(minute)
            frozen = min(minute, JUMP_AT)  # the head stops moving from the jump on
            nodeos.configure(
                head_block_num=HEAD + frozen * 120, head_block_time=now - timedelta(seconds=0.5)
            )
            head_block.append(statuses(run_once(config, now))["head_block"])
    assert [status for status, _ in head_block[: JUMP_AT + 1]] == ["OK"] * (JUMP_AT + 1)
    assert head_block[JUMP_AT + 1][0] == "CRITICAL"
    assert "stalled" in head_block[JUMP_AT + 1][1]


def test_clock_back_1h_open_incident_no_reminder_storm_no_false_recovery(sms_config):
    """nodeos down from minute 0 to 30, texted at minute 1; the clock goes back 1 h at 5."""
    dead = f"http://127.0.0.1:{free_port()}"
    texts: dict[int, list[str]] = {}
    with NodeosStandIn() as nodeos, TwilioStandIn(auth_token=TOKEN) as twilio:
        config = sms_config(nodeos, twilio)
        for minute in range(40):
            now = clock(minute)
            nodeos.configure(
                head_block_num=HEAD + minute * 120, head_block_time=now - timedelta(seconds=0.5)
            )
            down = minute < 30
            before = len(twilio.messages)
            run_once(dataclasses.replace(config, nodeos_url=dead) if down else config, now)
            new = twilio.messages[before:]
            assert len(new) <= 1  # never more than one SMS per recipient per run
            if new:
                texts[minute] = [m["body"] for m in new]
    # A reminder 15 minutes after the jump (the timer restarts from the earlier time),
    # not one every run; one recovery, once it is over.
    assert sorted(texts) == [1, JUMP_AT + 15, 31], texts
    assert texts[1][0].startswith("[eu2] CRITICAL nodeos: connection refused")
    assert texts[JUMP_AT + 15][0].startswith("[eu2] STILL CRITICAL nodeos: connection refused")
    assert texts[31][0].startswith("[eu2] RECOVERED nodeos after ")
    assert not any("RECOVERED" in body for m in texts if m < 31 for body in texts[m])


def test_clock_back_1h_keeps_a_fatal_log_line_and_texts_it(sms_config, tmp_path):
    log = tmp_path / "nodeos.log"
    log.write_text("info start\n")
    with NodeosStandIn() as nodeos, TwilioStandIn(auth_token=TOKEN) as twilio:
        config = sms_config(nodeos, twilio, NODEOS_LOG=log)
        found = []
        for minute in range(JUMP_AT - 2, JUMP_AT + 2):
            now = clock(minute)
            nodeos.configure(
                head_block_num=HEAD + minute * 120, head_block_time=now - timedelta(seconds=0.5)
            )
            if minute == JUMP_AT - 1:
                with log.open("a") as handle:
                    handle.write(
                        "error 2026-11-26T02:00:00.000 nodeos main.cpp:176 std::bad_alloc\n"
                    )
            found.append(statuses(run_once(config, now))["nodeos_log"][0])
    assert found == ["OK", "CRITICAL", "CRITICAL", "CRITICAL"]
    assert len(twilio.messages) == 1
    assert twilio.messages[0]["body"].startswith("[eu2] CRITICAL nodeos_log: fatal line ")
    assert "bad_alloc" in twilio.messages[0]["body"]


# --- row 12: the log file rotated, truncated or replaced between runs ------------

OLD_CONTENT = "".join(f"info 2026-11-26T01:5{i % 10}:00.000 applied block {i}\n" for i in range(40))
DIRTY = "error 2026-11-26T02:00:00.000 database dirty flag set (likely due to unclean shutdown)"
BAD_ALLOC = "error 2026-11-26T02:00:01.000 nodeos main.cpp:176 main ] std::bad_alloc"


def rotate(log: Path) -> str:
    with log.open("a") as handle:
        handle.write(DIRTY + "\n")  # written just before logrotate renames it
    log.rename(log.with_name(log.name + ".1"))
    log.write_text("info new file\n" + BAD_ALLOC + "\n")
    return "std::bad_alloc"


def rotate_fatal_in_old_file_only(log: Path) -> str:
    with log.open("a") as handle:
        handle.write(DIRTY + "\n")
    log.rename(log.with_name(log.name + ".1"))
    log.write_text("info new file\ninfo applied block\n")
    return "database dirty flag set"


def truncate_then_write(log: Path) -> str:
    log.write_text("")
    with log.open("a") as handle:
        handle.write(BAD_ALLOC + "\n")
    return "std::bad_alloc"


def replace_with_bigger_file(log: Path) -> str:
    bigger = log.with_name("nodeos.log.new")
    # The fatal line sits before the old offset: found only if the scan starts at the top.
    bigger.write_text("info replaced\n" + BAD_ALLOC + "\n" + OLD_CONTENT + OLD_CONTENT)
    os.replace(bigger, log)
    return "std::bad_alloc"


def copytruncate_and_grow(log: Path) -> str:
    shutil.copyfile(log, log.with_name(log.name + ".1"))
    os.truncate(log, 0)
    with log.open("a") as handle:  # O_APPEND: nodeos writes from 0 again, and grows it
        handle.write("info after copytruncate\n" + BAD_ALLOC + "\n" + OLD_CONTENT + OLD_CONTENT)
    return "std::bad_alloc"


def copytruncate_fatal_just_before(log: Path) -> str:
    with log.open("a") as handle:
        handle.write(DIRTY + "\n")  # written after our last look, before the copy
    shutil.copyfile(log, log.with_name(log.name + ".1"))
    os.truncate(log, 0)
    with log.open("a") as handle:
        handle.write("info after copytruncate\n")
    return "database dirty flag set"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(rotate, id="rotated"),
        pytest.param(rotate_fatal_in_old_file_only, id="rotated-fatal-in-old-file"),
        pytest.param(truncate_then_write, id="truncated"),
        pytest.param(replace_with_bigger_file, id="replaced-by-bigger"),
        pytest.param(copytruncate_and_grow, id="copytruncate-grown-past-offset"),
        pytest.param(copytruncate_fatal_just_before, id="copytruncate-fatal-in-copied-tail"),
    ],
)
def test_log_scan_resumes_after_rotation_truncation_or_replacement(
    nodeos, write_env, tmp_path, change
):
    log = tmp_path / "nodeos.log"
    log.write_text(OLD_CONTENT)
    config = load(str(write_env(NODEOS_URL=nodeos.url, NODEOS_LOG=log)))

    def run(minute: int) -> tuple[tuple[str, str], dict[str, Any]]:
        now = START + timedelta(minutes=minute)
        nodeos.head_block_time = now - timedelta(seconds=0.5)
        nodeos.head_block_num = HEAD + minute * 120
        result = statuses(run_once(config, now))["nodeos_log"]
        memory = json.loads(Path(config.state_file).read_text())["memory"]["nodeos_log"]
        return result, memory

    first, _memory = run(0)
    assert first == ("OK", "no fatal lines in 0 new lines (started watching)")

    sign = change(log)
    second, memory = run(1)
    assert second[0] == "CRITICAL", second
    # The summary names the sign (our word); the line itself is only in detail.
    assert second[1].startswith("fatal line just now: ") and sign.removeprefix("std::") in second[1]
    assert memory["position"]["offset"] == log.stat().st_size
    assert memory["position"]["inode"] == log.stat().st_ino

    # One more normal line, after the 15-minute hold: only that line is read.
    with log.open("a") as handle:
        handle.write("info 2026-11-26T02:12:00.000 applied block 99\n")
    third, memory = run(17)
    assert third == ("OK", "no fatal lines in 1 new lines"), third
    position = memory["position"]
    assert (position["offset"], position["inode"]) == (log.stat().st_size, log.stat().st_ino)
