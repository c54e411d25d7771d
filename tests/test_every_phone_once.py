"""Every incident reaches every operator exactly once, whatever breaks.

Each test drives whole runs (`run_once`, or the CLI in a process) on a
controlled clock against a nodeos stand-in and the Twilio stand-in reached by
the real twilio client, and counts the texts each phone received.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from check_status.config import Config, load
from check_status.runner import RunReport, run_once
from tests.conftest import remount
from tests.standins import HeartbeatStandIn, NodeosStandIn, TwilioStandIn, free_port

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
LUKE, MICHAEL, ROB = "+14155550101", "+821055550102", "+447700900123"
START = datetime(2026, 11, 26, 6, 51, tzinfo=UTC)
SMS_KEYS = {
    "TWILIO_ACCOUNT_SID": SID,
    "TWILIO_AUTH_TOKEN": TOKEN,
    "TWILIO_FROM": "+15005550006",
}


class Node:
    """One node, one run a minute on a controlled clock; nodeos up or down per run."""

    def __init__(self, write_env: Any, nodeos: NodeosStandIn, twilio: TwilioStandIn, **settings):
        self.nodeos, self.twilio = nodeos, twilio
        values = {
            "NODEOS_URL": nodeos.url,
            "ALERT_AFTER": 2,
            "REMIND_EVERY_MINUTES": 60,
            "TWILIO_API_BASE_URL": twilio.url,
            **settings,
        }
        self.config: Config = load(str(write_env(**values)))
        self.dead = f"http://127.0.0.1:{free_port()}"
        self.sent: list[tuple[int, str, str]] = []  # (minute, to, body)

    def run(self, minute: int, *, down: bool, lag: float = 0.5, **changes: Any) -> RunReport:
        """One run at START + `minute`; `lag`: how far the head is behind (WARNING at 15 s)."""
        now = START + timedelta(minutes=minute)
        self.nodeos.head_block_num = 400_000_000 + minute * 120  # always moving
        self.nodeos.head_block_time = now - timedelta(seconds=lag)
        config = dataclasses.replace(self.config, **changes)
        if down:
            config = dataclasses.replace(config, nodeos_url=self.dead)
        seen = len(self.twilio.messages)
        report = run_once(config, now)
        self.sent += [(minute, m["to"], m["body"]) for m in self.twilio.messages[seen:]]
        return report

    def texts(self, phone: str) -> list[str]:
        return [m["body"] for m in self.twilio.messages if m["to"] == phone]

    def timed_texts(self, phone: str) -> list[tuple[int, str]]:
        """(minute of the run that sent it, body) of each text `phone` got from `run`."""
        return [(minute, body) for minute, to, body in self.sent if to == phone]


@pytest.fixture
def twilio():
    with TwilioStandIn(auth_token=TOKEN) as standin:
        yield standin


@pytest.fixture
def node(write_env, nodeos, twilio, tmp_path):
    def make(**settings: Any) -> Node:
        settings.setdefault("STATE_FALLBACK_DIR", tmp_path / "fallback")
        return Node(write_env, nodeos, twilio, **settings)

    return make


# --- 1. who was told is per recipient --------------------------------------------------


def test_an_operator_whose_problem_text_failed_for_good_gets_no_recovery(node, twilio):
    n = node(**SMS_KEYS, ALERT_TO=f"{LUKE},{MICHAEL}", REMIND_EVERY_MINUTES=30)
    twilio.recipient_errors = {MICHAEL: 21610}  # he had replied STOP
    for minute in range(0, 3):
        n.run(minute, down=True)
    twilio.recipient_errors = {}  # he texted START again
    for minute in range(3, 10):
        n.run(minute, down=True)
    for minute in range(10, 13):
        n.run(minute, down=False)
    assert len(n.texts(LUKE)) == 2  # the problem, the recovery
    assert n.texts(LUKE)[1].startswith("[eu2] RECOVERED nodeos after 10m")
    assert n.texts(MICHAEL) == []  # never told, so no recovery either


def test_an_operator_refused_for_good_is_tried_again_with_the_reminder(node, twilio):
    n = node(**SMS_KEYS, ALERT_TO=f"{LUKE},{MICHAEL}", REMIND_EVERY_MINUTES=30)
    twilio.recipient_errors = {MICHAEL: 21608}  # unverified on a trial account
    for minute in range(0, 20):
        n.run(minute, down=True)
    twilio.recipient_errors = {}  # verified now
    for minute in range(20, 40):
        n.run(minute, down=True)
    assert [t.split(":")[0] for t in n.texts(LUKE)] == [
        "[eu2] CRITICAL nodeos",
        "[eu2] STILL CRITICAL nodeos",
    ]
    (late,) = n.texts(MICHAEL)  # minute 31: told late, as a problem, not "STILL"
    assert late.startswith("[eu2] CRITICAL nodeos: connection refused")
    assert "(since 06:51 UTC, 31m)" in late
    for minute in range(40, 42):
        n.run(minute, down=False)
    assert n.texts(MICHAEL)[-1].startswith("[eu2] RECOVERED nodeos after 40m")
    assert len(n.texts(MICHAEL)) == 2 and len(n.texts(LUKE)) == 3


def test_an_operator_removed_from_alert_to_gets_nothing_more(node, twilio):
    n = node(**SMS_KEYS, ALERT_TO=f"{LUKE},{MICHAEL}")
    for minute in range(0, 5):
        n.run(minute, down=True)
    twilio.mode = "error500"  # the recovery is queued for both, then...
    n.run(5, down=False)
    n.run(6, down=False)
    twilio.mode = "ok"
    n.run(7, down=False, alert_to=(LUKE,))  # ...MICHAEL leaves the rota
    n.run(8, down=False, alert_to=(LUKE,))
    assert len(n.texts(LUKE)) == 2
    assert len(n.texts(MICHAEL)) == 1  # the problem only: his queue went with him


# --- 2. the memory survives a state that cannot be saved -----------------------------


@pytest.mark.parametrize("last_save", ["healthy", "one failing run short of ALERT_AFTER"])
def test_a_read_only_state_filesystem_texts_each_phone_once(node, tmpfs, tmp_path, last_save, cli):
    n = node(**SMS_KEYS, ALERT_TO=f"{LUKE},{MICHAEL}", STATE_FILE=tmpfs / "state.json")
    n.run(0, down=False)
    if last_save != "healthy":
        n.run(1, down=True)
    remount(tmpfs, "ro")  # I/O errors: the kernel remounted it read-only
    reports = [n.run(minute, down=True) for minute in range(2, 8)]
    for phone in (LUKE, MICHAEL):
        (problem,) = n.texts(phone)
        assert problem.startswith("[eu2] CRITICAL nodeos: connection refused")
    for report in reports:
        assert int(report.status) == 2
        assert any(f"kept a copy in {tmp_path / 'fallback'}" in note for note in report.notes)
    # `status` reads the copy too: the last run it shows is the last one, not the last saved.
    status = json.loads(cli("--env-file", n.config.env_file, "status", "--json").output)
    assert status["last_run"]["at"] == "2026-11-26T06:58:00Z"
    assert status["incidents"][0]["check"] == "nodeos"
    for minute in range(8, 11):
        n.run(minute, down=False)
    for phone in (LUKE, MICHAEL):
        assert len(n.texts(phone)) == 2
        assert n.texts(phone)[1].startswith("[eu2] RECOVERED nodeos")
    remount(tmpfs, "rw")  # fixed: the state file takes over from the copy, which goes
    n.run(11, down=False)
    assert not list((tmp_path / "fallback").glob("*state.json"))
    assert len(n.texts(LUKE)) == 2


def test_with_nowhere_to_save_no_text_repeats_and_the_first_still_goes(
    node, tmpfs, write_env, tmp_path
):
    with HeartbeatStandIn() as heartbeat:
        n = node(
            **SMS_KEYS,
            ALERT_TO=f"{LUKE},{MICHAEL}",
            STATE_FILE=tmpfs / "state.json",
            STATE_FALLBACK_DIR=tmpfs / "fallback",
            HEARTBEAT_URL=f"{heartbeat.url}/ping/abc",
        )
        n.run(0, down=False)  # a healthy last save
        remount(tmpfs, "ro")
        reports = [n.run(minute, down=True) for minute in range(1, 30)]
        pings = heartbeat.pings
    for phone in (LUKE, MICHAEL):
        (problem,) = n.texts(phone)  # one PROBLEM, no repeat every minute
        assert problem.startswith("[eu2] CRITICAL nodeos: connection refused")
    assert any(m["body"] for m in n.twilio.messages)
    for report in reports:
        assert int(report.status) == 2
        assert any(
            f"alerts may repeat or be missed until {tmpfs / 'state.json'} is writable" in note
            for note in report.notes
        )
    assert all(p.endswith("/ping/abc/fail") for p in pings[1:]) and len(pings) == 30


def test_every_kept_string_is_bounded_so_the_state_stays_small(node, tmp_path):
    log = tmp_path / "nodeos.log"
    log.write_text("info  starting\n")
    n = node(NODEOS_LOG=log)
    n.run(0, down=False)
    with log.open("a") as handle:  # a fatal line of 300 KB, as a crash can write
        handle.write("error  std::bad_alloc " + "x" * 300_000 + "\n")
    n.run(1, down=False)
    state = Path(n.config.state_file).read_text()
    assert "std::bad_alloc" in state  # it is remembered...
    assert len(state) < 30_000, len(state)  # ...but not whole


# --- 4. no unlocked runs that send ------------------------------------------------------


def test_twenty_overlapping_runs_without_a_lock_send_nothing(write_env, twilio, state_file):
    state_file.parent.mkdir()
    lock = Path(f"{state_file}.lock")
    lock.mkdir()  # the lock's path is a directory
    env_file = write_env(
        NODEOS_URL=f"http://127.0.0.1:{free_port()}",
        ALERT_AFTER=1,
        ALERT_TO=f"{LUKE},{MICHAEL}",
        TWILIO_API_BASE_URL=twilio.url,
        **SMS_KEYS,
    )
    command = [sys.executable, "-m", "check_status", "run", "--env-file", str(env_file)]
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        for _ in range(20)
    ]
    outputs = [(run.communicate(timeout=60)[0], run.returncode) for run in runs]
    assert twilio.attempts == []
    for out, code in outputs:
        assert code == 3, out
        assert f"cannot open the run lock {lock}" in out
        assert f"rmdir {lock}" in out
    assert not state_file.exists()


# --- the environment a run in a process needs -------------------------------------------


@pytest.fixture(autouse=True)
def _a_run_in_a_process_imports_this_checkout(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    monkeypatch.setenv("PATH", os.environ.get("PATH", "/usr/bin:/bin"))


# --- 6. every Twilio answer is classified, and its words kept ---------------------------


def test_an_unknown_refusal_is_tried_three_times_then_given_up_for_that_number(
    node, twilio, cli, write_env
):
    n = node(**SMS_KEYS, ALERT_TO=f"{LUKE},{MICHAEL}", ALERT_AFTER=1)
    twilio.recipient_errors = {MICHAEL: 21999}  # a code no table of ours knows
    reports = [n.run(minute, down=True) for minute in range(0, 6)]
    tried = [a for a in twilio.attempts if a["to"] == MICHAEL]
    assert len(tried) == 3  # not every minute, forever
    assert len(n.texts(LUKE)) == 1
    assert any("Twilio 21999: " in note and "(try 1 of 3)" in note for note in reports[0].notes)
    assert any("failed for good" in note and "given up" in note for note in reports[2].notes)
    status = cli("--env-file", str(write_env()), "status").output
    assert f"{MICHAEL}: Twilio 21999: " in status  # the words stay visible


def test_a_sender_that_cannot_send_sms_is_one_held_configuration_problem(node, twilio):
    with HeartbeatStandIn() as heartbeat:
        n = node(
            **SMS_KEYS,
            ALERT_TO=f"{LUKE},{MICHAEL}",
            ALERT_AFTER=1,
            HEARTBEAT_URL=f"{heartbeat.url}/ping/abc",
        )
        twilio.sender_errors = {"+15005550006": 21606}
        first = n.run(0, down=True)
        later = [n.run(minute, down=True) for minute in range(1, 5)]
        pings = heartbeat.pings
    assert len(twilio.attempts) == 2  # one try per phone, then held: not every minute
    held = [note for note in first.notes if "21606" in note]
    assert len(held) == 1 and held[0].startswith("SMS held since ")
    assert "The From phone number +15005550006 is not a valid, SMS-capable" in held[0]
    assert "TWILIO_FROM" in held[0]
    assert all(any("SMS held since" in note for note in r.notes) for r in later)
    assert all(p.endswith("/fail") for p in pings)  # the heartbeat says it cannot page
    twilio.sender_errors = {}  # fixed in Twilio's console, settings unchanged
    n.run(11, down=True)  # retried after 10 minutes: the queued problem goes out, once
    assert len(n.texts(LUKE)) == 1 and len(n.texts(MICHAEL)) == 1


@pytest.mark.parametrize("mode", ["accepted_html", "accepted_no_sid"])
def test_a_2xx_that_cannot_be_read_is_still_an_acceptance(node, twilio, mode):
    """Twilio accepted it: never sent again, whatever its answer's body."""
    n = node(**SMS_KEYS, ALERT_TO=f"{LUKE},{MICHAEL}")
    twilio.mode = mode
    reports = [n.run(minute, down=True) for minute in range(0, 4)]
    reports += [n.run(minute, down=False) for minute in range(4, 8)]
    for phone in (LUKE, MICHAEL):  # the problem and the recovery, not one a run
        assert [body.split(" ")[1] for body in n.texts(phone)] == ["CRITICAL", "RECOVERED"]
    details = {o.detail for r in reports for o in r.deliveries}
    assert details == {"sent, but Twilio's answer had no message id"}
