"""The outage again, with three operators in three time zones, run by run.

nodeos is unreachable from minute 5 to minute 39 of a replay that starts at
16:55 UTC: 11:55 in New York, 16:55 in London and 01:55 in Seoul. Real runs
(run_once) on a controlled clock; the real twilio client texts, calls and
reads the replies at a Twilio stand-in; the tests assert who got which text
or call at which minute, and when the replies were read.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from check_status.alerting.rules import alert_state_from_json
from check_status.config import load
from check_status.runner import run_once
from check_status.state import load_state
from tests.standins import NodeosStandIn, TwilioStandIn, free_port

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
SENDER = "+15005550006"
LUKE, MICHAEL, ROB = "+14155550101", "+821055550102", "+447700900123"
ALERT_TO = f"luke:{LUKE}@America/New_York, michael:{MICHAEL}@Asia/Seoul, rob:{ROB}@Europe/London"
START = datetime(2026, 11, 26, 16, 55, tzinfo=UTC)
DOWN = range(5, 40)
HEAD = 400_000_000


@dataclasses.dataclass
class Replay:
    texts: dict[int, dict[str, str]]  # minute -> {number: body}
    calls: dict[int, dict[str, str]]  # minute -> {number: TwiML}
    reads: dict[int, int]  # minute -> inbound list requests made by that run
    lines: dict[int, str]  # minute -> the run's notes and remarks
    state_file: str


@pytest.fixture
def replay(write_env):
    def play(
        replies: dict[int, tuple[str, str]] | None = None,
        minutes: int = 45,
        list_down: bool = False,
        **settings: object,
    ) -> Replay:
        """`replies`: minute -> (from, body) texted to TWILIO_FROM just before that run;
        `list_down`: Twilio fails every read of the replies."""
        with (
            NodeosStandIn() as nodeos,
            TwilioStandIn(auth_token=TOKEN, list_down=list_down) as twilio,
        ):
            env_file = write_env(
                NODEOS_URL=nodeos.url,
                TWILIO_ACCOUNT_SID=SID,
                TWILIO_AUTH_TOKEN=TOKEN,
                TWILIO_FROM=SENDER,
                ALERT_TO=ALERT_TO,
                ALERT_AFTER=2,
                REMIND_EVERY_MINUTES=15,
                TWILIO_API_BASE_URL=twilio.url,
                **settings,
            )
            config = load(str(env_file))
            dead = dataclasses.replace(config, nodeos_url=f"http://127.0.0.1:{free_port()}")
            result = Replay({}, {}, {}, {}, config.state_file)
            for minute in range(minutes):
                now = START + timedelta(minutes=minute)
                nodeos.head_block_num = HEAD + minute * 120
                nodeos.head_block_time = now - timedelta(seconds=0.5)
                if replies and minute in replies:
                    sender, body = replies[minute]
                    twilio.add_inbound(sender, body, now - timedelta(seconds=20), to=SENDER)
                texts, calls, reads = len(twilio.messages), len(twilio.calls), len(twilio.listings)
                report = run_once(dead if minute in DOWN else config, now)
                if new := twilio.messages[texts:]:
                    result.texts[minute] = {m["to"]: m["body"] for m in new}
                    assert len(result.texts[minute]) == len(new), new  # one text each a run
                if new := twilio.calls[calls:]:
                    result.calls[minute] = {c["to"]: c["twiml"] for c in new}
                if read := len(twilio.listings) - reads:
                    result.reads[minute] = read
                if said := [*report.notes, *report.remarks]:
                    result.lines[minute] = " / ".join(said)
            return result

    return play


def who(got: dict[int, dict[str, str]]) -> dict[int, set[str]]:
    return {minute: set(by) for minute, by in got.items()}


def test_nobody_answers_the_awake_are_texted_then_the_sleeper_then_everyone_is_called(replay):
    played = replay()
    # 17:01 UTC: luke (12:01) and rob (17:01) are awake, michael (02:01) is not.
    assert who(played.texts) == {
        6: {LUKE, ROB},  # first in line
        16: {MICHAEL},  # escalated: ten minutes without an ACK
        31: {LUKE, MICHAEL, ROB},  # the reminder, 15 minutes after the escalation
        41: {LUKE, MICHAEL, ROB},  # the recovery, to everyone who was told
    }
    assert played.texts[6][LUKE].startswith("[eu2] CRITICAL nodeos: connection refused")
    assert played.texts[6][LUKE] == played.texts[6][ROB]
    escalated = played.texts[16][MICHAEL]
    assert escalated.startswith("[eu2] ESCALATED CRITICAL nodeos: connection refused")
    assert escalated.endswith("(11m, no ACK)"), escalated
    assert played.texts[41][MICHAEL] == "[eu2] RECOVERED nodeos after 35m"
    # Ten minutes after the escalation, still nobody: everyone is called, once.
    assert who(played.calls) == {26: {LUKE, MICHAEL, ROB}}
    twiml = played.calls[26][MICHAEL]
    assert twiml.count("nodeos is critical: connection refused") == 2, twiml
    assert "for node eu2" in twiml and "reply ACK" in twiml
    # Words for the ear: no address, no "21m" read as metres.
    assert "It has lasted 21 minutes, and nobody has acknowledged it." in twiml
    assert "127.0.0.1" not in twiml
    # The replies are read once a run, from the first run after the first text
    # to the run that closes the incident (41), and never before or after.
    assert played.reads == dict.fromkeys(range(7, 42), 1)


def test_an_ack_by_reply_stops_the_escalation_and_the_call(replay):
    played = replay(replies={9: (ROB, "ack")})
    assert who(played.texts) == {
        6: {LUKE, ROB},
        9: {LUKE},  # the others who were told hear who is on it
        21: {ROB},  # reminders go to rob only
        36: {ROB},
        41: {LUKE, ROB},  # the recovery, to those told; michael slept through
    }
    assert played.texts[9][LUKE] == "[eu2] ACK nodeos by rob"
    assert played.calls == {}
    assert played.reads == {7: 1, 8: 1, 9: 1}  # none once it is acknowledged
    assert "ACK by rob (sms): acknowledged nodeos" in played.lines[9]
    incident_states = alert_state_from_json(
        load_state(played.state_file, START, move_aside=False).data["alerts"]
    )
    assert incident_states.checks["nodeos"].incident is None  # closed at 41


def test_an_ack_after_the_escalation_stops_the_call(replay):
    played = replay(replies={20: (MICHAEL, "ACK nodeos")})
    assert who(played.texts)[16] == {MICHAEL}
    assert played.texts[20] == {
        LUKE: "[eu2] ACK nodeos by michael",
        ROB: "[eu2] ACK nodeos by michael",
    }
    assert played.calls == {}
    assert who(played.texts)[41] == {LUKE, MICHAEL, ROB}


def test_an_ack_from_a_number_not_in_alert_to_is_ignored(replay):
    played = replay(replies={9: ("+15551234567", "ACK")})
    assert who(played.calls) == {26: {LUKE, MICHAEL, ROB}}
    assert 9 not in played.texts
    assert "ACK from +15*****4567 ignored: not a number in ALERT_TO" in played.lines[9]


def test_an_ack_of_another_check_leaves_the_incident_escalating(replay):
    played = replay(replies={9: (LUKE, "ACK lib")})
    assert "ACK lib by luke (sms): no open incident to acknowledge" in played.lines[9]
    assert who(played.texts)[16] == {MICHAEL}
    assert 26 in played.calls


def test_call_on_never_texts_but_never_calls(replay):
    played = replay(CALL_ON="never")
    assert played.calls == {}
    assert who(played.texts)[16] == {MICHAEL}


def test_replies_that_cannot_be_read_are_a_warning_on_the_line(replay):
    """Twilio's list failing must not pass in silence: an ACK sent then is not
    seen, and the escalation goes on."""
    played = replay(replies={9: (ROB, "ACK")}, minutes=17, list_down=True)
    assert "SMS replies not read (Twilio 20500: Internal Server Error)" in played.lines[7]
    assert "ACK with check-status ack CHECK --by NAME" in played.lines[7]
    assert who(played.texts) == {6: {LUKE, ROB}, 16: {MICHAEL}}  # rob's ACK unseen


def test_a_healthy_node_never_reads_the_replies(replay):
    played = replay(minutes=4)
    assert played.reads == {}
    assert played.texts == {} and played.calls == {}
