"""The outage that started this project, replayed minute by minute on a controlled clock.

5 minutes healthy, nodeos unreachable for 20 minutes, the head stale for 30
minutes while it resyncs, then healthy again. The real twilio client texts a
Twilio stand-in; the test asserts which runs text what to whom.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from check_status.config import load
from check_status.runner import run_once
from tests.standins import NodeosStandIn, TwilioStandIn, free_port

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
OPERATORS = ("+14155550101", "+821055550102")
START = datetime(2026, 11, 26, 1, 55, tzinfo=UTC)  # 2 am in Seoul is 17:00 UTC; any night will do
HEAD_AT_START = 400_000_000


def phase(minute: int) -> str:
    if minute < 5:
        return "healthy"
    if minute < 25:
        return "unreachable"
    if minute < 55:
        return "resync"
    return "healthy"


@pytest.fixture
def replay(write_env):
    def play(twilio_down_minutes: range = range(0), minutes: int = 60):
        with NodeosStandIn() as nodeos, TwilioStandIn(auth_token=TOKEN) as twilio:
            env_file = write_env(
                NODEOS_URL=nodeos.url,
                TWILIO_ACCOUNT_SID=SID,
                TWILIO_AUTH_TOKEN=TOKEN,
                TWILIO_FROM="+15005550006",
                ALERT_TO=",".join(OPERATORS),
                ALERT_AFTER=2,
                REMIND_EVERY_MINUTES=15,
                TWILIO_API_BASE_URL=twilio.url,
            )
            config = load(str(env_file))
            dead = f"http://127.0.0.1:{free_port()}"
            texts: dict[int, list[tuple[str, str]]] = {}
            for minute in range(minutes):
                now = START + timedelta(minutes=minute)
                state = phase(minute)
                if state == "healthy":
                    nodeos.head_block_num = HEAD_AT_START + minute * 120
                    nodeos.head_block_time = now - timedelta(seconds=0.5)
                elif state == "resync":
                    # Replaying from a snapshot: far behind, but moving.
                    nodeos.head_block_num = 1_000 + (minute - 25) * 2000
                    nodeos.head_block_time = now - timedelta(hours=30)
                twilio.mode = "error500" if minute in twilio_down_minutes else "ok"
                seen = len(twilio.messages)
                run_config = (
                    dataclasses.replace(config, nodeos_url=dead)
                    if state == "unreachable"
                    else config
                )
                run_once(run_config, now)
                new = twilio.messages[seen:]
                if new:
                    texts[minute] = sorted((m["to"], m["body"]) for m in new)
            return texts

    return play


def bodies(texts, minute):
    """The one body every operator got that minute (they all get the same)."""
    got = texts[minute]
    assert [to for to, _ in got] == sorted(OPERATORS), got
    assert len({body for _, body in got}) == 1
    return got[0][1]


def test_the_outage_texts_exactly_what_it_should(replay):
    texts = replay()
    assert sorted(texts) == [6, 21, 26, 41, 56]
    assert bodies(texts, 6).startswith("[eu2] CRITICAL nodeos: connection refused")
    assert bodies(texts, 21).startswith("[eu2] STILL CRITICAL nodeos: connection refused")
    assert "(16m)" in bodies(texts, 21)  # it has lasted since minute 5
    minute_26 = bodies(texts, 26)
    assert minute_26.startswith("[eu2] CRITICAL head_block: ")
    assert "RECOVERED nodeos after 20m" in minute_26
    assert bodies(texts, 41).startswith("[eu2] STILL CRITICAL head_block:")
    assert bodies(texts, 56) == "[eu2] RECOVERED head_block after 30m"
    for minute in texts:
        assert len(bodies(texts, minute)) <= 160


def test_twilio_down_for_the_first_three_minutes_loses_and_doubles_nothing(replay):
    texts = replay(twilio_down_minutes=range(5, 8))
    assert sorted(texts) == [8, 21, 26, 41, 56]
    assert bodies(texts, 8).startswith("[eu2] CRITICAL nodeos: connection refused")
    assert "RECOVERED nodeos after 20m" in bodies(texts, 26)
