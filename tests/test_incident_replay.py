"""The outage that started this project, replayed minute by minute on a controlled clock.

5 minutes healthy, nodeos unreachable for 20 minutes, the head stale for 30
minutes while it resyncs, then healthy again. The real twilio client texts a
Twilio stand-in; the test asserts which runs text what to whom.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from check_status.alerting.rules import Silence, alert_state_from_json, alert_state_to_json
from check_status.config import Config, load
from check_status.runner import run_once
from check_status.state import load_state, save_state
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


SMS_KEYS = {
    "TWILIO_ACCOUNT_SID": SID,
    "TWILIO_AUTH_TOKEN": TOKEN,
    "TWILIO_FROM": "+15005550006",
}


@pytest.fixture
def replay(write_env):
    def play(
        twilio_down_minutes: range = range(0),
        minutes: int = 60,
        *,
        sms_keys: bool = True,
        settings_at: Callable[[int, Config], Config] | None = None,
        calls_made: dict[int, list[str]] | None = None,
    ):
        """The replay; texts per minute. `settings_at(minute, config)` changes a run's
        settings (keys filled in late, a number added to ALERT_TO)."""
        with NodeosStandIn() as nodeos, TwilioStandIn(auth_token=TOKEN) as twilio:
            env_file = write_env(
                NODEOS_URL=nodeos.url,
                # SMS is all or nothing in the env file: no keys, no ALERT_TO either.
                **({**SMS_KEYS, "ALERT_TO": ",".join(OPERATORS)} if sms_keys else {}),
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
                seen, called = len(twilio.messages), len(twilio.calls)
                run_config = settings_at(minute, config) if settings_at else config
                if state == "unreachable":
                    run_config = dataclasses.replace(run_config, nodeos_url=dead)
                run_once(run_config, now)
                new = twilio.messages[seen:]
                if new:
                    texts[minute] = sorted((m["to"], m["body"]) for m in new)
                if calls_made is not None and (new_calls := twilio.calls[called:]):
                    calls_made[minute] = sorted(c["to"] for c in new_calls)
            return texts

    return play


def bodies(texts, minute):
    """The one body every operator got that minute (they all get the same)."""
    got = texts[minute]
    assert [to for to, _ in got] == sorted(OPERATORS), got
    assert len({body for _, body in got}) == 1
    return got[0][1]


def test_the_outage_texts_exactly_what_it_should(replay):
    calls: dict[int, list[str]] = {}
    texts = replay(calls_made=calls)
    # Nobody ACKed: the head_block incident, texted at 26 to everyone (no
    # operator has a time zone, so all are first in line), escalates at 36 with
    # nobody left to tell, and calls everyone at 46. nodeos recovered at 25,
    # before its call was due.
    assert calls == {46: sorted(OPERATORS)}
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


# --- SMS set up mid-outage, and an operator added mid-outage -------------------------

NEW_OPERATOR = "+447700900123"


def to_phone(texts, phone):
    """{minute: the one text `phone` got that minute}; each phone gets one SMS a run."""
    got = {}
    for minute, sent in texts.items():
        bodies_for_phone = [body for to, body in sent if to == phone]
        assert len(bodies_for_phone) <= 1, (minute, sent)
        if bodies_for_phone:
            got[minute] = bodies_for_phone[0]
    return got


def keys_from(first_minute):
    """The Twilio keys and ALERT_TO filled in from `first_minute` on (none before)."""

    def settings_at(minute: int, config: Config) -> Config:
        if minute < first_minute:
            return config
        return dataclasses.replace(
            config,
            twilio_account_sid=SID,
            twilio_auth_token=TOKEN,
            twilio_from="+15005550006",
            alert_to=OPERATORS,
        )

    return settings_at


def test_keys_set_mid_outage_tell_each_operator_once_late_then_as_usual(replay):
    texts = replay(sms_keys=False, settings_at=keys_from(10), minutes=70)
    # Minute 6 decided the PROBLEM with nobody to text, so nobody was told. Minute 10,
    # the first run with keys, tells both: late, saying since when. The reminder clock
    # kept running from minute 6, so the reminder is at 21 as in the plain replay;
    # from there on it is the plain replay, nothing sent twice.
    assert sorted(texts) == [10, 21, 26, 41, 56]
    for phone in OPERATORS:
        got = to_phone(texts, phone)
        assert sorted(got) == [10, 21, 26, 41, 56]
        assert got[10].startswith("[eu2] CRITICAL nodeos: connection refused (127.0.0.1:")
        assert got[10].endswith(") (since 02:00 UTC, 5m)"), got[10]
        assert got[21].startswith("[eu2] STILL CRITICAL nodeos: connection refused")
        assert got[26].startswith("[eu2] CRITICAL head_block: ")
        assert got[26].endswith(". RECOVERED nodeos after 20m")
        assert got[41].startswith("[eu2] STILL CRITICAL head_block:")
        assert got[56] == "[eu2] RECOVERED head_block after 30m"
    assert sum(1 for sent in texts.values() for _ in sent) == 10  # 5 to each of 2


def test_keys_set_after_a_recovery_never_text_the_problem_that_is_over(replay):
    # nodeos was down 5-24 and recovered at 26: with keys from minute 30 only the
    # head_block incident (since 25, still open) is told, late; nodeos never is.
    texts = replay(sms_keys=False, settings_at=keys_from(30), minutes=70)
    assert sorted(texts) == [30, 41, 56]
    for phone in OPERATORS:
        got = to_phone(texts, phone)
        assert sorted(got) == [30, 41, 56]
        assert got[30].startswith("[eu2] CRITICAL head_block: head #")
        assert got[30].endswith(" behind (since 02:20 UTC, 5m)"), got[30]
        assert got[56] == "[eu2] RECOVERED head_block after 30m"
    assert not any("nodeos" in body for sent in texts.values() for _, body in sent)
    assert sum(len(sent) for sent in texts.values()) == 6  # 3 to each of 2
    # With keys only after everything recovered (56), nothing is ever texted.
    assert replay(sms_keys=False, settings_at=keys_from(58), minutes=70) == {}


def test_an_operator_added_mid_outage_is_told_late_once_and_the_others_get_nothing_extra(
    replay,
):
    def settings_at(minute: int, config: Config) -> Config:
        if minute < 12:
            return config
        return dataclasses.replace(config, alert_to=(*OPERATORS, NEW_OPERATOR))

    texts = replay(settings_at=settings_at)
    assert sorted(texts) == [6, 12, 21, 26, 41, 56]
    for phone in OPERATORS:  # exactly the plain replay
        got = to_phone(texts, phone)
        assert sorted(got) == [6, 21, 26, 41, 56]
        assert got[6].startswith("[eu2] CRITICAL nodeos: connection refused")
        assert "since" not in got[6]
    new = to_phone(texts, NEW_OPERATOR)
    # Told late at the first run that knows the number, then, being told, the same
    # reminder, recovery and head_block texts as everyone.
    assert sorted(new) == [12, 21, 26, 41, 56]
    assert new[12].startswith("[eu2] CRITICAL nodeos: connection refused (127.0.0.1:")
    assert new[12].endswith(") (since 02:00 UTC, 7m)"), new[12]
    for minute in (21, 26, 41, 56):
        assert new[minute] == to_phone(texts, OPERATORS[0])[minute]
    assert new[26].endswith("RECOVERED nodeos after 20m")
    assert texts[12] == [(NEW_OPERATOR, new[12])]  # nobody else texted at 12
    assert sum(len(sent) for sent in texts.values()) == 15  # 5 to each of 3


# --- a clock that jumps hours ahead during a silence -------------------------------------


def test_a_clock_jump_past_a_silence_neither_ends_it_nor_texts(write_env):
    """A 2 h silence, nodeos down throughout; one run's clock is 3 h ahead (a bad RTC,
    an NTP step). That run sees the silence's end passed, but a silence ends only
    when two runs in a row see that: nothing is texted during the maintenance, and
    "(silence over)" goes out once, at the second run past the real end."""
    with NodeosStandIn() as nodeos, TwilioStandIn(auth_token=TOKEN) as twilio:
        env_file = write_env(
            NODEOS_URL=nodeos.url,
            **SMS_KEYS,
            ALERT_TO=",".join(OPERATORS),
            ALERT_AFTER=2,
            REMIND_EVERY_MINUTES=15,
            TWILIO_API_BASE_URL=twilio.url,
        )
        config = load(str(env_file))
        down = dataclasses.replace(config, nodeos_url=f"http://127.0.0.1:{free_port()}")
        nodeos.head_block_num = HEAD_AT_START
        nodeos.head_block_time = START - timedelta(seconds=0.5)
        run_once(config, START)  # healthy; the state file exists

        until = START + timedelta(hours=2)
        data = load_state(config.state_file, START).data
        alerts = alert_state_from_json(data.get("alerts"))
        silence = Silence((), until, "upgrade to spring 1.1", START)
        data["alerts"] = alert_state_to_json(dataclasses.replace(alerts, silences=(silence,)))
        save_state(config.state_file, data)

        def silences() -> tuple[Silence, ...]:
            saved = load_state(config.state_file, START, move_aside=False).data
            return alert_state_from_json(saved.get("alerts")).silences

        texted: dict[int, list[tuple[str, str]]] = {}

        def run(minute: int, jump: timedelta = timedelta(0)) -> None:
            seen = len(twilio.messages)
            run_once(down, START + timedelta(minutes=minute) + jump)
            if new := twilio.messages[seen:]:
                texted[minute] = sorted((m["to"], m["body"]) for m in new)

        for minute in range(1, 30):
            run(minute)
        run(30, jump=timedelta(hours=3))  # 05:25 where it is 02:25
        assert texted == {}, texted
        kept = silences()  # still there, its end seen once
        assert [(s.until, s.end_seen) for s in kept] == [(until, True)], kept
        run(31)
        kept = silences()  # and that sighting forgotten: the clock is back before the end
        assert [(s.until, s.end_seen) for s in kept] == [(until, False)], kept
        for minute in range(32, 120):
            run(minute)
        assert texted == {}, texted  # no text at all during the maintenance
        run(120)  # the first run past the end (now == until)
        assert texted == {}
        assert [(s.until, s.end_seen) for s in silences()] == [(until, True)]
        for minute in range(121, 130):
            run(minute)
        assert silences() == ()
    assert sorted(texted) == [121]
    for phone in OPERATORS:
        (body,) = to_phone(texted, phone).values()
        assert body.startswith("[eu2] CRITICAL nodeos: connection refused (127.0.0.1:")
        assert body.endswith(" (silence over)"), body
    assert len(twilio.messages) == 2  # one per phone, nothing else
