"""kill -9 in the middle of a delivery: no text that Twilio accepted and answered goes twice.

A real `python -m check_status run` process, nodeos down, ALERT_AFTER=1, two operators;
Twilio (the stand-in) answers the first at once and the second only after 3 s. The
run is killed at a random moment of that wait, then run again: the fast operator must
never get the problem twice, since their answer was saved the moment it arrived.

The slow operator's text is the one resend a client cannot rule out: Twilio accepted
it, and the run died before the answer came, so the state still has it queued and the
next run sends it again. Twilio's Messages API has no idempotency key to prevent it.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from check_status.state import load_state
from tests.standins import TwilioStandIn, free_port

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
SENDER = "+15005550006"
REPO = Path(__file__).resolve().parents[1]

ROUNDS = 30
LANES = 3  # rounds run three at a time, each lane with its own pair of phones: < 60 s
SLOW_SECONDS = 3.0
# The kill comes 0.1 to 2 s after Twilio accepted the fast operator's text. Not from 0:
# for the first few milliseconds the fast answer is itself still on its way (into the
# client, then into the state file: 3-7 ms here), the same window as the slow one's,
# in which no client can know that Twilio took the text.
KILL_AFTER = (0.1, 2.0)


@pytest.fixture
def twilio():
    with TwilioStandIn(auth_token=TOKEN) as standin:
        yield standin


def phones(lane: int) -> tuple[str, str]:
    return f"+1415555010{lane}", f"+1415555020{lane}"


def write_env(directory: Path, node: str, twilio: TwilioStandIn, fast: str, slow: str) -> Path:
    directory.mkdir(parents=True)
    values = {
        "NODE_NAME": node,  # in every body: this round's texts, whatever other rounds do
        "STATE_FILE": directory / "state.json",
        "STATE_FALLBACK_DIR": directory / "fallback",
        "DISK_PATHS": directory,
        "NODEOS_URL": f"http://127.0.0.1:{free_port()}",
        "ALERT_AFTER": 1,
        "ALERT_TO": f"{fast},{slow}",
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM": SENDER,
        "TWILIO_API_BASE_URL": twilio.url,
    }
    path = directory / "check-status.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path


def command(env_file: Path) -> list[str]:
    return [sys.executable, "-m", "check_status", "run", "--env-file", str(env_file)]


def texts_to(twilio: TwilioStandIn, node: str, phone: str) -> list[str]:
    messages = list(twilio.messages)  # a copy: the stand-in appends from its threads
    return [m["body"] for m in messages if m["to"] == phone and m["body"].startswith(f"[{node}] ")]


def queued(state_file: Path) -> dict[str, int]:
    data = json.loads(state_file.read_text())
    return {phone: len(items) for phone, items in (data.get("outbox") or {}).items()}


def test_slow_numbers_are_accepted_at_once_and_answered_late(twilio):
    """The stand-in's slow_numbers: only that number waits; the message is recorded as
    accepted before the answer; stop() ends the wait."""
    fast, slow = phones(9)
    twilio.slow_numbers = {slow: 30.0}
    url = f"{twilio.url}/2010-04-01/Accounts/{SID}/Messages.json"

    def post(to: str) -> requests.Response:
        form = {"To": to, "From": SENDER, "Body": "hello"}
        return requests.post(url, data=form, auth=(SID, TOKEN), timeout=60)

    started = time.monotonic()
    assert post(fast).status_code == 201
    assert time.monotonic() - started < 1
    answers: list[BaseException | requests.Response] = []

    def slow_post() -> None:
        try:
            answers.append(post(slow))
        except requests.RequestException as error:
            answers.append(error)

    thread = threading.Thread(target=slow_post)
    thread.start()
    assert [m["to"] for m in twilio.wait_for_messages(2)] == [fast, slow]  # accepted...
    time.sleep(0.3)
    assert answers == []  # ...but not answered
    assert [a["status"] for a in twilio.attempts] == [201, 201]
    twilio.stop()
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - started < 10
    (answer,) = answers
    assert isinstance(answer, requests.RequestException)  # dropped, never a 201


def test_thirty_kills_mid_delivery_never_double_a_text_twilio_answered(twilio, tmp_path):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    delays = [rng.uniform(*KILL_AFTER) for _ in range(ROUNDS)]
    slow_numbers_lock = threading.Lock()
    twilio.slow_numbers = {phones(lane)[1]: SLOW_SECONDS for lane in range(LANES)}
    rounds: dict[int, dict] = {}
    errors: list[str] = []

    def set_slow(phone: str, slow: bool) -> None:
        with slow_numbers_lock:
            numbers = dict(twilio.slow_numbers)
            if slow:
                numbers[phone] = SLOW_SECONDS
            else:
                numbers.pop(phone, None)
            twilio.configure(slow_numbers=numbers)

    def one_round(number: int, lane: int) -> None:
        fast, slow = phones(lane)
        node = f"r{number}"
        env_file = write_env(tmp_path / node, node, twilio, fast, slow)
        state_file = tmp_path / node / "state.json"
        set_slow(slow, True)
        process = subprocess.Popen(
            command(env_file),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            give_up = time.monotonic() + 20
            while not texts_to(twilio, node, fast):
                if process.poll() is not None or time.monotonic() > give_up:
                    raise AssertionError(f"round {number}: the fast text never came")
                time.sleep(0.002)
            time.sleep(delays[number])
            process.send_signal(signal.SIGKILL)
        finally:
            if process.poll() is None:
                process.kill()
            code = process.wait(timeout=10)
        slow_before_kill = len(texts_to(twilio, node, slow))  # accepted from the killed run
        left = queued(state_file)  # what the killed run left for the next one
        set_slow(slow, False)  # the next run at normal speed
        again = subprocess.run(
            command(env_file),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        loaded = load_state(str(state_file), datetime.now(UTC), move_aside=False)
        rounds[number] = {
            "killed": code == -signal.SIGKILL,
            "left": left,
            "rerun": (again.returncode, again.stdout.strip()[:120]),
            "rerun_queued": queued(state_file),
            "fast": texts_to(twilio, node, fast),
            "slow": texts_to(twilio, node, slow),
            "slow_before_kill": slow_before_kill,
            "fast_phone": fast,
            "slow_phone": slow,
            "state_warning": loaded.warning,
        }

    def lane(number: int) -> None:
        try:
            for n in range(number, ROUNDS, LANES):
                one_round(n, number)
        except BaseException as error:  # reported below, with the seed
            errors.append(f"lane {number}: {error!r}")

    threads = [threading.Thread(target=lane, args=(n,)) for n in range(LANES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, (errors, seed)
    assert sorted(rounds) == list(range(ROUNDS)), seed

    fast_doubles = slow_doubles = 0
    for number, got in sorted(rounds.items()):
        why = f"round {number} (seed {seed}, kill {delays[number]:.3f}s after the fast text): {got}"
        assert got["killed"], why  # the kill came inside the 3 s wait, every time
        # The killed run had saved the fast answer; the slow one was still queued.
        assert got["left"] == {got["slow_phone"]: 1}, why
        assert got["rerun"][0] == 2, why  # CRITICAL: nodeos is down; not 3 (no lock)
        assert got["rerun_queued"] == {}, why
        assert got["state_warning"] is None, why
        fast_doubles += len(got["fast"]) - 1
        assert len(got["fast"]) == 1, why
        # The slow operator: the text the killed run had Twilio accept (if its POST got
        # there before the kill), plus the resend; the same PROBLEM both times.
        assert len(got["slow"]) == got["slow_before_kill"] + 1, why
        assert got["slow_before_kill"] in (0, 1), why
        assert len(set(got["slow"])) == 1, why
        assert got["slow"][0].startswith(f"[r{number}] CRITICAL nodeos: connection refused"), why
        slow_doubles += got["slow_before_kill"]
    assert fast_doubles == 0, seed
    # Each kill fell between Twilio accepting the slow text and its answer (3 s later),
    # so the slow operator got it twice in every round whose slow POST reached Twilio
    # before the kill: here all 30 of 30 (it goes out a few ms after the fast one).
    # That double is the price of at-least-once delivery without an idempotency key;
    # it is bounded, at most one extra text per kill (asserted per round above). At
    # least half the rounds must show it, or the kills missed the window under test.
    assert ROUNDS // 2 <= slow_doubles <= ROUNDS, (slow_doubles, seed)
    print(f"seed {seed}: fast doubles 0 of {ROUNDS}, slow doubles {slow_doubles} of {ROUNDS}")
