"""SMS delivery through the real twilio client to a Twilio stand-in on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.standins import HeartbeatStandIn, TwilioStandIn, free_port

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
GOOD = "+14155550101"
BAD = "+15005550001"
SENDER = "+15005550006"


@pytest.fixture
def twilio():
    with TwilioStandIn(auth_token=TOKEN) as standin:
        yield standin


@pytest.fixture
def alert_env(write_env, twilio):
    """An env file for a node whose nodeos is down, texting two operators."""

    def write(**extra):
        settings = {
            "NODEOS_URL": f"http://127.0.0.1:{free_port()}",
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_FROM": SENDER,
            "ALERT_TO": f"{GOOD},+14155550102",
            "ALERT_AFTER": "1",
            "TWILIO_API_BASE_URL": twilio.url,
        }
        settings.update(extra)
        return write_env(**settings)

    return write


def run(cli, env_file, *extra):
    result = cli("--env-file", str(env_file), "--json", *extra)
    return result.exit_code, json.loads(result.output)


def test_a_problem_is_texted_once_to_every_operator(cli, alert_env, twilio, state_file):
    env_file = alert_env()
    code, report = run(cli, env_file)
    assert code == 2
    messages = twilio.wait_for_messages(2)
    assert sorted(m["to"] for m in messages) == [GOOD, "+14155550102"]
    for message in messages:
        assert message["body"].startswith("[eu2] CRITICAL nodeos: connection refused (127.0.0.1:")
        assert message["from"] == SENDER and message["auth_ok"]
    assert {d["result"] for d in report["alerts"]["deliveries"]} == {"sent"}
    assert report["alerts"]["sms"] == "SMS sent to 2 of 2"
    # The next minute: same problem, nobody is texted again.
    code, report = run(cli, env_file)
    assert len(twilio.messages) == 2
    decisions = {d["check"]: d["decision"] for d in report["alerts"]["decisions"]}
    assert decisions["nodeos"].startswith("texted at ")
    assert decisions["head_block"] == "not texted: consequence of nodeos"
    assert (
        "outbox" not in json.loads(state_file.read_text())
        or not json.loads(state_file.read_text())["outbox"]
    )


def test_one_invalid_number_does_not_stop_the_other(cli, alert_env, twilio):
    twilio.invalid_numbers = {BAD}
    env_file = alert_env(ALERT_TO=f"{BAD},{GOOD}")
    _code, report = run(cli, env_file)
    assert [m["to"] for m in twilio.wait_for_messages(1)] == [GOOD]
    results = {d["to"]: (d["result"], d["detail"]) for d in report["alerts"]["deliveries"]}
    assert results[BAD] == (
        "failed",
        "Twilio 21211: The 'To' number +15***0001 is not a valid phone number.",
    )
    assert results[GOOD][0] == "sent"
    assert f"SMS to {BAD} failed for good: Twilio 21211" in " ".join(report["notes"])
    attempts_to_bad = sum(1 for a in twilio.attempts if a["to"] == BAD)
    for _ in range(3):  # not retried forever: the next runs leave it alone
        run(cli, env_file)
    assert sum(1 for a in twilio.attempts if a["to"] == BAD) == attempts_to_bad == 1
    status = cli("--env-file", str(env_file), "status")
    assert f"{BAD}: Twilio 21211: The 'To' number +15***0001 is not a valid" in status.output


@pytest.mark.parametrize("mode", ["error500", "error429", "html"])
def test_a_twilio_error_keeps_the_alert_for_the_next_run(cli, alert_env, twilio, state_file, mode):
    twilio.mode = mode
    env_file = alert_env()
    _code, report = run(cli, env_file)
    assert twilio.messages == []
    assert {d["result"] for d in report["alerts"]["deliveries"]} == {"pending"}
    assert "not sent, will retry" in " ".join(report["notes"])
    assert set(json.loads(state_file.read_text())["outbox"]) == {GOOD, "+14155550102"}
    twilio.mode = "ok"
    run(cli, env_file)
    messages = twilio.wait_for_messages(2)
    assert len(messages) == 2
    assert all(m["body"].startswith("[eu2] CRITICAL nodeos:") for m in messages)
    run(cli, env_file)
    assert len(twilio.messages) == 2  # accepted once, never sent again


def test_a_wrong_auth_token_is_one_config_note_and_nothing_is_lost(
    cli, alert_env, twilio, state_file
):
    env_file = alert_env(TWILIO_AUTH_TOKEN="badc0ffeebadc0ffeebadc0ffeebadc0")
    code, report = run(cli, env_file)
    assert code == 2 and twilio.messages == []
    notes = [n for n in report["notes"] if "20003" in n]
    (note,) = notes  # one configuration problem, not one per phone
    assert note.startswith("SMS held since ")
    assert (
        ": Twilio 20003: Authenticate; check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN; "
        "nothing can be texted until this is fixed"
    ) in note
    assert "badc0ffeebadc0ffeebadc0ffeebadc0" not in json.dumps(report)
    status = cli("--env-file", str(env_file), "status").output
    assert "texted CRITICAL at " in status and "not yet delivered to 2 recipient(s)" in status
    assert "SMS held since " in status
    # Held: the next run with the same settings does not ask Twilio again.
    tries = len(twilio.attempts)
    run(cli, env_file)
    assert len(twilio.attempts) == tries
    # Fixed: the queued text goes out, once.
    twilio.auth_token = TOKEN
    run(cli, alert_env())
    assert len(twilio.wait_for_messages(2)) == 2
    assert "not yet delivered" not in cli("--env-file", str(env_file), "status").output


def test_without_sms_settings_a_due_text_says_it_is_not_sent(cli, write_env):
    env_file = write_env(NODEOS_URL=f"http://127.0.0.1:{free_port()}", ALERT_AFTER="1")
    _code, report = run(cli, env_file)
    decisions = {d["check"]: d["decision"] for d in report["alerts"]["decisions"]}
    assert decisions["nodeos"] == "due (problem), but SMS is not configured"
    assert report["alerts"]["sms"] == "SMS not configured"


def test_twilio_unreachable_is_named_and_retried(cli, alert_env):
    env_file = alert_env(TWILIO_API_BASE_URL=f"http://127.0.0.1:{free_port()}")
    code, report = run(cli, env_file)
    details = {d["detail"] for d in report["alerts"]["deliveries"]}
    assert details == {"Twilio unreachable: connection refused"}
    assert code == 2


def test_twilio_slower_than_the_timeout(cli, alert_env, twilio, state_file):
    twilio.mode = "slow"
    twilio.delay_seconds = 30
    started = time.monotonic()
    _code, report = run(cli, alert_env())
    elapsed = time.monotonic() - started
    assert elapsed < 13  # the 10 s Twilio timeout, plus the probe phase
    assert {d["result"] for d in report["alerts"]["deliveries"]} == {"pending"}
    assert set(json.loads(state_file.read_text())["outbox"]) == {GOOD, "+14155550102"}


def test_bad_credentials_are_a_configuration_problem_and_stay_secret(
    cli, alert_env, twilio, state_file
):
    wrong = "0123456789abcdef0123456789abcdef"
    env_file = alert_env(TWILIO_AUTH_TOKEN=wrong)
    result = cli("--env-file", str(env_file), "-v")
    assert (
        "Twilio 20003: Authenticate; check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
        in result.output
    )
    assert wrong not in result.output
    assert wrong not in state_file.read_text()
    assert twilio.messages == []


def test_the_token_never_appears_anywhere(cli, alert_env, twilio, state_file, tmp_path):
    twilio.invalid_numbers = {BAD}
    env_file = alert_env(ALERT_TO=f"{BAD},{GOOD}")
    outputs = [
        cli("--env-file", str(env_file), *args).output
        for args in ([], ["-v"], ["--json"], ["status"])
    ]
    outputs.append(cli("--env-file", str(env_file), "status", "--json").output)
    outputs.append(cli("--env-file", str(env_file), "run", "--dry-run").output)
    for text in [*outputs, state_file.read_text()]:
        assert TOKEN not in text


def test_dry_run_sends_nothing_and_changes_nothing(cli, alert_env, twilio, state_file):
    env_file = alert_env()
    result = cli("--env-file", str(env_file), "run", "--dry-run")
    assert (
        "SMS would send to +14155550101: '[eu2] CRITICAL nodeos: connection refused"
        in result.output
    )
    assert not state_file.exists()
    run(cli, env_file, "run")  # a real run: now texted and saved
    before = state_file.read_bytes()
    cli("--env-file", str(env_file), "run", "--dry-run")
    assert state_file.read_bytes() == before
    assert len(twilio.messages) == 2


def test_dry_run_leaves_a_damaged_state_file_where_it_is(cli, alert_env, twilio, state_file):
    state_file.parent.mkdir(parents=True)
    state_file.write_bytes(b'{"schema": 1, "checks": {"nodeos": {"status": "O')
    result = cli("--env-file", str(alert_env()), "run", "--dry-run")
    assert "is unreadable (JSONDecodeError); left in place (dry run)" in result.output
    assert sorted(p.name for p in state_file.parent.iterdir()) == ["state.json", "state.json.lock"]
    assert state_file.read_bytes() == b'{"schema": 1, "checks": {"nodeos": {"status": "O'
    assert twilio.messages == []


def test_not_configured_says_so(cli, write_env):
    result = cli("--env-file", str(write_env(NODEOS_URL=f"http://127.0.0.1:{free_port()}")), "-v")
    assert "SMS not configured" in result.output
    assert result.exit_code == 2


def test_messaging_service_sender(cli, alert_env, twilio):
    service = "MG" + "ab" * 16
    run(cli, alert_env(TWILIO_FROM="", TWILIO_MESSAGING_SERVICE_SID=service))
    messages = twilio.wait_for_messages(2)
    assert {m["messaging_service_sid"] for m in messages} == {service}


def test_silence_stops_texts_and_its_end_texts_once(cli, alert_env, twilio, state_file):
    env_file = alert_env()
    silenced = cli(
        "--env-file", str(env_file), "silence", "--for", "1h", "--reason", "replay after bad_alloc"
    )
    assert silenced.exit_code == 0
    assert "silenced all checks on eu2 until" in silenced.output
    _code, report = run(cli, env_file)
    assert twilio.messages == []
    decisions = {d["check"]: d["decision"] for d in report["alerts"]["decisions"]}
    assert (
        decisions["nodeos"].startswith("silenced until ")
        and "replay after bad_alloc" in decisions["nodeos"]
    )
    status = cli("--env-file", str(env_file), "status").output
    assert "whole node until" in status and "replay after bad_alloc" in status
    assert cli("--env-file", str(env_file), "unsilence").output.startswith("ended 1 silence(s)")
    run(cli, env_file)
    messages = twilio.wait_for_messages(2)
    assert len(messages) == 2
    assert all("(silence over)" in m["body"] for m in messages)


def test_unsilence_of_one_check_keeps_the_others_silenced(cli, alert_env, twilio, state_file):
    # Maintenance on nodeos: both silenced; the operator ends head_block's silence only.
    env_file = alert_env()
    cli(
        "--env-file",
        str(env_file),
        "silence",
        "nodeos",
        "head_block",
        "--for",
        "2h",
        "--reason",
        "replay",
    )
    cli("--env-file", str(env_file), "silence", "disk:*", "--for", "1h", "--reason", "resize")
    ended = cli("--env-file", str(env_file), "unsilence", "head_block").output
    assert ended.startswith("head_block: 1 silence(s) ended or narrowed; 2 left")
    silences = json.loads(state_file.read_text())["alerts"]["silences"]
    assert sorted(tuple(s["checks"]) for s in silences) == [("disk:*",), ("nodeos",)]
    _code, report = run(cli, env_file)
    decisions = {d["check"]: d["decision"] for d in report["alerts"]["decisions"]}
    assert decisions["nodeos"].startswith("silenced until ")
    assert twilio.messages == []  # nodeos still silenced; head_block is its consequence


def test_unsilence_of_one_check_says_a_whole_node_silence_still_holds(cli, alert_env, state_file):
    env_file = alert_env()
    cli("--env-file", str(env_file), "silence", "--for", "2h", "--reason", "upgrade")
    ended = cli("--env-file", str(env_file), "unsilence", "nodeos").output
    assert ended.startswith("nodeos: 0 silence(s) ended or narrowed; 1 left")
    assert "nodeos is still silenced by 'the whole node' until " in ended
    assert ended.rstrip().endswith("`check-status unsilence` ends it")
    assert len(json.loads(state_file.read_text())["alerts"]["silences"]) == 1


def test_unsilence_of_a_check_a_pattern_covers_says_so(cli, alert_env, state_file):
    env_file = alert_env()
    cli("--env-file", str(env_file), "silence", "disk:*", "--for", "1h", "--reason", "resize")
    ended = cli("--env-file", str(env_file), "unsilence", "disk:/data").output
    assert ended.startswith("disk:/data: 0 silence(s) ended or narrowed; 1 left")
    assert "disk:/data is still silenced by 'disk:*' until " in ended
    assert "`check-status unsilence disk:*` ends it" in ended


def test_silence_rejects_a_bad_duration_with_exit_3(tmp_path):
    env = dict(os.environ, STATE_FILE=str(tmp_path / "s.json"))
    done = subprocess.run(
        [sys.executable, "-m", "check_status", "silence", "--for", "soon", "--reason", "x"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 3
    assert done.stdout.strip().splitlines() == [
        "CHECK-STATUS UNKNOWN - usage: Invalid value for --for: 'soon' is not a duration: "
        "use forms such as 45s, 30m, 2h, 1d (see check-status --help)"
    ]


@pytest.fixture
def ping_server() -> Iterator[HeartbeatStandIn]:
    with HeartbeatStandIn() as server:
        yield server


PING_PATH = "/ping/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"


def test_heartbeat_pings_and_fails(cli, nodeos, write_env, ping_server):
    url = f"{ping_server.url}{PING_PATH}"
    assert (
        cli("--env-file", str(write_env(NODEOS_URL=nodeos.url, HEARTBEAT_URL=url))).exit_code == 0
    )
    down = write_env(NODEOS_URL=f"http://127.0.0.1:{free_port()}", HEARTBEAT_URL=url)
    assert cli("--env-file", str(down)).exit_code == 2
    assert ping_server.pings == [f"POST {PING_PATH}", f"POST {PING_PATH}/fail"]


def test_a_run_that_cannot_save_its_state_pings_fail(cli, nodeos, write_env, ping_server, tmp_path):
    # A checker that cannot remember never reaches ALERT_AFTER failing runs, so it
    # never texts: the dead-man's switch is the one left to say so.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    url = f"{ping_server.url}{PING_PATH}"
    env_file = write_env(
        NODEOS_URL=nodeos.url, HEARTBEAT_URL=url, STATE_FILE=str(blocker / "state.json")
    )
    result = cli("--env-file", str(env_file))
    # A healthy node, but no lock can be taken there: the run sends and saves nothing.
    assert result.exit_code == 3, result.output
    assert "cannot open the run lock" in result.output
    assert ping_server.pings == [f"POST {PING_PATH}/fail"]


def test_heartbeat_fail_goes_before_the_query_string(cli, write_env, ping_server):
    url = f"{ping_server.url}{PING_PATH}?rid=eu2"
    down = write_env(NODEOS_URL=f"http://127.0.0.1:{free_port()}", HEARTBEAT_URL=url)
    assert cli("--env-file", str(down)).exit_code == 2
    assert ping_server.pings == [f"POST {PING_PATH}/fail?rid=eu2"]


def test_a_failed_heartbeat_is_reported_but_not_fatal(cli, nodeos, write_env):
    url = f"http://127.0.0.1:{free_port()}/ping/secret-uuid"
    result = cli("--env-file", str(write_env(NODEOS_URL=nodeos.url, HEARTBEAT_URL=url)), "-v")
    assert result.exit_code == 0
    assert (
        "note: heartbeat to 127.0.0.1:" in result.output and "connection refused" in result.output
    )
    assert "secret-uuid" not in result.output


def imports_of_one_run(env_file: Path) -> tuple[str, bool, bool]:
    """One whole `check-status` process: its line, and whether twilio and requests loaded."""
    env = dict(os.environ, CHECK_STATUS_ENV_FILE=str(env_file))
    script = (
        "import atexit, sys\n"
        "loaded = lambda name: any(m.split('.')[0] == name for m in sys.modules)\n"
        "atexit.register(lambda: print('loaded:', loaded('twilio'), loaded('requests')))\n"
        "from check_status.cli import entry\n"
        "sys.argv = ['check-status']\n"
        "entry()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    line, loaded = done.stdout.strip().splitlines()
    twilio_loaded, requests_loaded = (word == "True" for word in loaded.split()[1:])
    return line, twilio_loaded, requests_loaded


def test_a_run_without_sms_settings_imports_neither_twilio_nor_requests(nodeos, write_env):
    line, twilio_loaded, requests_loaded = imports_of_one_run(write_env(NODEOS_URL=nodeos.url))
    assert line.startswith("CHECK-STATUS OK")
    assert (twilio_loaded, requests_loaded) == (False, False)


def test_a_run_with_sms_settings_but_nothing_to_text_does_not_import_twilio(
    nodeos, alert_env, twilio
):
    # Twilio configured, as on every deployed node, and a healthy node: the
    # every-minute run must not pay for the SDK.
    line, twilio_loaded, requests_loaded = imports_of_one_run(alert_env(NODEOS_URL=nodeos.url))
    assert line.startswith("CHECK-STATUS OK"), line
    assert twilio.messages == []
    assert (twilio_loaded, requests_loaded) == (False, False)


def test_a_run_that_texts_does_import_twilio(alert_env, twilio):
    """The counterpart, so the tests above could fail."""
    line, twilio_loaded, requests_loaded = imports_of_one_run(alert_env())
    assert line.startswith("CHECK-STATUS CRITICAL"), line
    assert len(twilio.messages) == 2
    assert (twilio_loaded, requests_loaded) == (True, True)
