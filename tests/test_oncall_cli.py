"""On call at the terminal: `ack`, `status`, `-v`, `--json`, `--dry-run` and `self-test`.

The incident is made by real runs (run_once) against a nodeos that is down
and the Twilio stand-in; the CLI then reads and changes the same state file.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from check_status.alerting.rules import alert_state_from_json
from check_status.config import load
from check_status.model import utc_now
from check_status.runner import run_once
from check_status.state import load_state
from tests import test_selftest as base
from tests.standins import TwilioStandIn, free_port
from tests.test_selftest import SID, item_lines, self_test  # helpers, not tests

# The fixture of tests/test_selftest.py, shared (assigned: pytest finds fixtures
# among a module's attributes).
installed = base.installed

TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
SENDER = "+15005550006"
LUKE, MICHAEL, ROB = "+14155550101", "+821055550102", "+447700900123"
# Seoul's night, London's and New York's day: luke and rob are first in line.
ALERT_TO = f"luke:{LUKE}@America/New_York, michael:{MICHAEL}@Asia/Seoul, rob:{ROB}"


@pytest.fixture
def incident(write_env):
    """A state file with nodeos down for 3 runs: texted to luke and rob, not michael."""
    with TwilioStandIn(auth_token=TOKEN) as twilio:
        env_file = write_env(
            NODEOS_URL=f"http://127.0.0.1:{free_port()}",
            TWILIO_ACCOUNT_SID=SID,
            TWILIO_AUTH_TOKEN=TOKEN,
            TWILIO_FROM=SENDER,
            ALERT_TO=ALERT_TO,
            TWILIO_API_BASE_URL=twilio.url,
        )
        config = load(str(env_file))
        # 17:00 UTC is 12:00 in New York and 02:00 in Seoul, today: the ACK,
        # at the real time, comes after the text.
        start = utc_now().replace(hour=17, minute=0, second=0, microsecond=0) - timedelta(days=1)
        for minute in range(3):
            run_once(config, start + timedelta(minutes=minute))
        assert {m["to"] for m in twilio.messages} == {LUKE, ROB}
        yield env_file, config, twilio


def incident_of(config) -> dict:
    data = load_state(config.state_file, utc_now(), move_aside=False).data
    return alert_state_from_json(data["alerts"]).checks["nodeos"].incident


def test_ack_by_name_acknowledges_and_queues_the_text_to_the_others(cli, incident):
    env_file, config, _twilio = incident
    result = cli("ack", "--by", "Luke", "--env-file", str(env_file))
    assert result.exit_code == 0, result.output
    assert result.output == "ACK by luke (terminal): acknowledged nodeos\n"
    assert incident_of(config).acked_by == LUKE
    outbox = load_state(config.state_file, utc_now(), move_aside=False).data["outbox"]
    assert set(outbox) == {ROB}  # told, and not the one who ACKed; michael never was
    assert [(n["kind"], n["summary"]) for n in outbox[ROB]] == [("ACK", "luke")]


def test_ack_of_a_check_with_no_incident_is_a_warning(cli, incident):
    env_file, config, _twilio = incident
    result = cli("ack", "lib", "--by", "rob", "--env-file", str(env_file))
    assert result.exit_code == 1
    assert result.output == "ACK lib by rob (terminal): no open incident to acknowledge\n"
    assert incident_of(config).acked_by is None


def test_ack_by_someone_not_in_alert_to_is_refused(cli, incident):
    env_file, config, _twilio = incident
    result = cli("ack", "--by", "mallory", "--env-file", str(env_file))
    assert result.exit_code == 3
    assert result.output == (
        "CHECK-STATUS UNKNOWN - no operator 'mallory' in ALERT_TO"
        " (the operators: luke, michael, rob); nothing acknowledged\n"
    )
    assert incident_of(config).acked_by is None


def test_status_shows_who_was_told_and_the_next_step(cli, incident):
    env_file, _config, _twilio = incident
    before = cli("status", "--env-file", str(env_file))
    step = [line.strip() for line in before.output.splitlines() if "next:" in line]
    assert len(step) == 1, before.output
    assert step[0].startswith("told luke 17:01Z, ")
    assert "rob 17:01Z" in step[0]
    assert step[0].endswith("next: escalate to michael unless ACKed at 17:11Z")
    cli("ack", "nodeos", "--by", "michael", "--env-file", str(env_file))
    after = json.loads(cli("status", "--json", "--env-file", str(env_file)).output)
    (item,) = after["incidents"]
    assert item["oncall"]["acked_by"] == "michael"
    assert item["oncall"]["next"] == "reminder to michael only (ACKed)"
    assert "acked_by" not in item  # numbers only under their names


def test_verbose_json_and_dry_run_show_the_step_of_this_run(cli, incident):
    _env_file, config, twilio = incident
    # Ten minutes later, a dry run: the escalation to michael is due.
    report = run_once(
        config, utc_now().replace(hour=17, minute=12) - timedelta(days=1), dry_run=True
    )
    decision = dict(report.decisions)["nodeos"]
    assert decision.startswith("texted (escalated) to michael; next: call everyone unless ACKed")
    assert [(o.recipient, o.result) for o in report.deliveries] == [(MICHAEL, "would send")]
    assert {m["to"] for m in twilio.messages} == {LUKE, ROB}  # a dry run sends nothing
    from check_status import output

    table = output.verbose_table(report)
    assert "on call:\n  nodeos: told luke 17:01Z" in table
    document = output.report_json(report)
    assert document["alerts"]["oncall"][0]["next"] == "call everyone unless ACKed"


# --- self-test ------------------------------------------------------------------


def sms(twilio: TwilioStandIn, **extra: str) -> dict[str, str]:
    return {
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM": SENDER,
        "ALERT_TO": ALERT_TO,
        "TWILIO_API_BASE_URL": twilio.url,
        **extra,
    }


@pytest.fixture
def twilio():
    with TwilioStandIn(auth_token=TOKEN) as standin:
        yield standin


def test_self_test_says_who_is_first_in_line_now(cli, installed, twilio):
    env_file = installed.write(**sms(twilio))
    result = self_test(cli, env_file)
    (line,) = item_lines(result.output, "on call")
    assert line.startswith("PASS on call: luke ")
    assert "rob (no time zone: always first in line)" in line
    assert "then after 10 min without an ACK to everyone, then a call at CRITICAL" in line


def test_self_test_fails_a_sender_that_cannot_call(cli, installed, twilio):
    twilio.phone_numbers = {SENDER: {"sms": True, "voice": False}}
    env_file = installed.write(**sms(twilio))
    result = self_test(cli, env_file)
    assert result.exit_code == 2
    (line,) = item_lines(result.output, "sender")
    assert line == (
        f"FAIL sender: TWILIO_FROM {SENDER} can text but cannot call, and CALL_ON asks for calls"
    )
    assert "or set CALL_ON=never" in result.output
    calm = self_test(cli, installed.write(**sms(twilio, CALL_ON="never")))
    assert item_lines(calm.output, "sender")[0].startswith("PASS sender: ")


def test_self_test_warns_that_a_messaging_service_cannot_call_nor_read_replies(
    cli, installed, twilio
):
    settings = sms(twilio, TWILIO_MESSAGING_SERVICE_SID="MG" + "ab" * 16)
    del settings["TWILIO_FROM"]
    result = self_test(cli, installed.write(**settings))
    (calls,) = item_lines(result.output, "calls")
    assert calls.startswith("WARN calls: a messaging service cannot place calls")
    (replies,) = item_lines(result.output, "ACK by reply")
    assert "serve's webhook, which is off" in replies
    on = self_test(
        cli,
        installed.write(
            **settings, CALL_ON="never", TWILIO_WEBHOOK_URL="https://eu2.example.io/twilio/sms"
        ),
    )
    assert item_lines(on.output, "calls") == [] and item_lines(on.output, "ACK by reply") == []


def test_the_state_file_keeps_no_name_for_a_number(incident):
    """The incident's records are by number; names come from ALERT_TO at each read."""
    _env_file, config, _twilio = incident
    text = Path(config.state_file).read_text()
    assert "luke" not in text and LUKE in text
