"""Table and property tests of the on-call steps, in the pure alerting core.

    acknowledge(state, acks, now, policy) -> (state, ACK texts, lines)
    decide(state, results, now, policy)   -> (state, notifications)

Three operators in three time zones; runs one minute apart on a controlled
clock (aware UTC datetimes), ALERT_AFTER=2, ACKs applied between runs as the
runner does. The tables say who got which kind of notification at which minute.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from check_status.alerting.oncall import (
    DEFAULT_WAKING_HOURS,
    Ack,
    Operator,
    first_in_line,
    is_awake,
    matches,
    parse_hours,
    read_ack,
)
from check_status.alerting.rules import (
    NEWS_OF_A_PROBLEM,
    AlertState,
    CheckRecord,
    Kind,
    Notification,
    Policy,
    acknowledge,
    decide,
    oncall_view,
)
from check_status.alerting.sms import render_sms
from check_status.model import CheckResult, Status

OK, WARN, CRIT, UNKNOWN = Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN
LUKE, MICHAEL, ROB = "+14155550101", "+821055550102", "+447700900123"
STRANGER = "+15005550009"
OPERATORS = (
    Operator(LUKE, "luke", "America/New_York"),
    Operator(MICHAEL, "michael", "Asia/Seoul"),
    Operator(ROB, "rob", "Europe/London"),
)
RECIPIENTS = (LUKE, MICHAEL, ROB)
NAMES = {o.number: o.name for o in OPERATORS}
NUMBERS = {o.name: o.number for o in OPERATORS}
EVERYONE = "luke,michael,rob"
E = 10  # ESCALATE_AFTER_MINUTES in the tables

# 02:00 in New York (EST), 07:00 in London (GMT), 16:00 in Seoul (KST):
# michael and rob are awake, luke is asleep.
NY_2AM = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
# 23:00 in New York, 04:00 in London, 13:00 in Seoul: only michael is awake.
ONLY_MICHAEL = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def oncall_policy(
    call_on: Status | None = CRIT,
    escalate: int = E,
    remind: int = 60,
    operators: tuple[Operator, ...] = OPERATORS,
    recipients: tuple[str, ...] = RECIPIENTS,
) -> Policy:
    return Policy(
        alert_level=WARN,
        alert_after=2,
        remind_every_minutes=remind,
        recipients=recipients,
        operators=operators,
        escalate_after_minutes=escalate,
        call_on=call_on,
    )


def result(status: Status, name: str = "nodeos") -> CheckResult:
    return CheckResult(name, status, f"{name} is {status.name}")


def who(to: Iterable[str] | None) -> str:
    return ",".join(NAMES.get(r, r) for r in to) if to is not None else "everyone"


def event(minute: int, note: Notification) -> str:
    """`11 PROBLEM* nodeos luke`: * marks an escalated PROBLEM, + a late one."""
    mark = "*" if note.escalated else "+" if note.late else ""
    return f"{minute} {note.kind.value}{mark} {note.check} {who(note.to)}"


@dataclass
class Played:
    events: list[str]
    state: AlertState
    per_minute: dict[int, list[Notification]]
    lines: dict[int, list[str]]


def play(
    statuses: Sequence[Status | dict[str, Status]],
    start: datetime = NY_2AM,
    acks: dict[int, list[tuple[str, str | None]]] | None = None,
    policy: Policy | None = None,
) -> Played:
    """Run decide once a minute; before minute m, apply the ACKs (number, check) of acks[m]."""
    policy = policy or oncall_policy()
    acks = acks or {}
    state = AlertState()
    events: list[str] = []
    per_minute: dict[int, list[Notification]] = {}
    lines: dict[int, list[str]] = {}
    for minute, statuses_now in enumerate(statuses):
        now = start + timedelta(minutes=minute)
        notes: list[Notification] = []
        if minute in acks:
            state, texts, said = acknowledge(
                state, [Ack(number, check, now) for number, check in acks[minute]], now, policy
            )
            notes += texts
            lines[minute] = said
        if isinstance(statuses_now, Status):
            statuses_now = {"nodeos": statuses_now}
        state, decided = decide(
            state, [result(s, name) for name, s in statuses_now.items()], now, policy
        )
        notes += decided
        if notes:
            per_minute[minute] = notes
        events += [event(minute, n) for n in notes]
    return Played(events, state, per_minute, lines)


# --- is_awake, first_in_line, parse_hours ------------------------------------


@pytest.mark.parametrize(
    ("zone", "now", "awake"),
    [
        # New York, DST begins 2026-03-08 at 02:00 EST (07:00 UTC): 11:30 UTC is
        # 06:30 EST the day before, 07:30 EDT the day after.
        ("America/New_York", utc(2026, 3, 7, 11, 30), False),
        ("America/New_York", utc(2026, 3, 9, 11, 30), True),
        ("America/New_York", utc(2026, 3, 8, 11, 30), True),  # 07:30 EDT, the very day
        ("America/New_York", utc(2026, 3, 8, 11, 59), True),
        ("America/New_York", utc(2026, 3, 7, 11, 59), False),  # 06:59 EST
        # DST ends 2026-11-01 at 02:00 EDT (06:00 UTC): 11:30 UTC is 07:30 EDT
        # the day before, 06:30 EST the day after.
        ("America/New_York", utc(2026, 10, 31, 11, 30), True),
        ("America/New_York", utc(2026, 11, 2, 11, 30), False),
        ("America/New_York", utc(2026, 11, 1, 11, 30), False),  # 06:30 EST, the very day
        ("America/New_York", utc(2026, 11, 1, 12, 0), True),  # 07:00 EST
        # The end is exclusive: 23:00 local is asleep, 22:59 awake.
        ("America/New_York", utc(2026, 11, 26, 4, 0), False),
        ("America/New_York", utc(2026, 11, 26, 3, 59), True),
        ("America/New_York", utc(2026, 11, 26, 7, 0), False),  # 02:00 EST
        # London, BST begins 2026-03-29 at 01:00 UTC.
        ("Europe/London", utc(2026, 3, 28, 6, 30), False),  # 06:30 GMT
        ("Europe/London", utc(2026, 3, 29, 6, 30), True),  # 07:30 BST
        ("Europe/London", utc(2026, 3, 29, 6, 0), True),  # 07:00 BST: the start is inclusive
        ("Europe/London", utc(2026, 3, 29, 5, 59), False),
        ("Europe/London", utc(2026, 10, 25, 6, 30), False),  # BST over: 06:30 GMT
        ("Europe/London", utc(2026, 10, 24, 6, 30), True),  # 07:30 BST
        # Seoul, no DST, UTC+9.
        ("Asia/Seoul", utc(2026, 11, 26, 7, 0), True),  # 16:00 KST
        ("Asia/Seoul", utc(2026, 11, 26, 14, 0), False),  # 23:00 KST
        ("Asia/Seoul", utc(2026, 11, 25, 22, 0), True),  # 07:00 KST
        ("Asia/Seoul", utc(2026, 11, 25, 21, 59), False),
        # No zone: always awake.
        (None, utc(2026, 11, 26, 3, 0), True),
        (None, utc(2026, 11, 26, 15, 0), True),
    ],
)
def test_is_awake_with_default_hours(zone: str | None, now: datetime, awake: bool) -> None:
    operator = Operator(LUKE, "luke", zone)
    assert is_awake(operator, now, DEFAULT_WAKING_HOURS) is awake


@pytest.mark.parametrize(
    ("hours", "local", "awake"),
    [
        # A night shift, wrapping midnight: [22:00, 06:00).
        ((22 * 60, 6 * 60), (21, 59), False),
        ((22 * 60, 6 * 60), (22, 0), True),
        ((22 * 60, 6 * 60), (23, 59), True),
        ((22 * 60, 6 * 60), (0, 0), True),
        ((22 * 60, 6 * 60), (5, 59), True),
        ((22 * 60, 6 * 60), (6, 0), False),
        ((22 * 60, 6 * 60), (12, 0), False),
        # Around the clock.
        ((0, 24 * 60), (0, 0), True),
        ((0, 24 * 60), (12, 0), True),
        ((0, 24 * 60), (23, 59), True),
        # An ordinary day.
        ((8 * 60, 22 * 60), (7, 59), False),
        ((8 * 60, 22 * 60), (8, 0), True),
        ((8 * 60, 22 * 60), (21, 59), True),
        ((8 * 60, 22 * 60), (22, 0), False),
    ],
)
@pytest.mark.parametrize("how", ["override", "policy default"])
def test_is_awake_with_hours_that_wrap_or_span_the_day(
    hours: tuple[int, int], local: tuple[int, int], awake: bool, how: str
) -> None:
    # Tokyo: UTC+9, no DST, so local time = UTC + 9h on any date.
    now = utc(2026, 6, 15, 0, 0) + timedelta(hours=local[0] - 9, minutes=local[1])
    if how == "override":
        operator = Operator(MICHAEL, "michael", "Asia/Tokyo", waking=hours)
        default = (7 * 60, 7 * 60 + 1)  # ignored: the operator's own hours win
    else:
        operator = Operator(MICHAEL, "michael", "Asia/Tokyo")
        default = hours
    assert is_awake(operator, now, default) is awake


def test_a_per_operator_override_wins_over_the_policy_default() -> None:
    now = utc(2026, 11, 26, 7, 0)  # 02:00 in New York
    default_luke = Operator(LUKE, "luke", "America/New_York")
    night_luke = Operator(LUKE, "luke", "America/New_York", waking=(22 * 60, 6 * 60))
    assert not is_awake(default_luke, now, DEFAULT_WAKING_HOURS)
    assert is_awake(night_luke, now, DEFAULT_WAKING_HOURS)
    # And in `decide`: the night-shift luke is first in line at 02:00 New York time.
    operators = (night_luke, *OPERATORS[1:])
    played = play([CRIT] * 3, policy=oncall_policy(operators=operators))
    assert played.events == [f"1 PROBLEM nodeos {EVERYONE}"]


@pytest.mark.parametrize(
    ("now", "first"),
    [
        (NY_2AM, "michael,rob"),
        (ONLY_MICHAEL, "michael"),
        (utc(2026, 11, 26, 14, 30), "luke,rob"),  # 09:30 EST, 14:30 GMT, 23:30 KST
        (utc(2026, 11, 26, 22, 30), "luke,michael,rob"),  # 17:30 EST, 22:30 GMT, 07:30 KST
    ],
)
def test_first_in_line_is_those_awake(now: datetime, first: str) -> None:
    assert who(first_in_line(OPERATORS, now, DEFAULT_WAKING_HOURS)) == first


@pytest.mark.parametrize(
    ("operators", "now", "first"),
    [
        # 03:00 UTC: 22:00 EST and 12:00 KST; both on short hours: nobody awake.
        (
            (
                Operator(LUKE, "luke", "America/New_York", waking=(9 * 60, 17 * 60)),
                Operator(MICHAEL, "michael", "Asia/Seoul", waking=(14 * 60, 16 * 60)),
            ),
            utc(2026, 11, 26, 3, 0),
            "luke,michael",
        ),
        # Default hours, and a time nobody is awake in New York and London.
        (
            (OPERATORS[0], OPERATORS[2]),
            utc(2026, 11, 26, 5, 0),  # 00:00 EST, 05:00 GMT
            "luke,rob",
        ),
        # One with no zone is always awake, so never "nobody".
        (
            (OPERATORS[0], Operator(ROB, "rob")),
            utc(2026, 11, 26, 5, 0),
            "rob",
        ),
    ],
)
def test_first_in_line_with_nobody_awake_is_everyone(
    operators: tuple[Operator, ...], now: datetime, first: str
) -> None:
    assert who(first_in_line(operators, now, DEFAULT_WAKING_HOURS)) == first


def test_nobody_awake_pages_everyone_first_and_escalates_to_nobody() -> None:
    operators = (OPERATORS[0], OPERATORS[2])
    policy = oncall_policy(operators=operators, recipients=(LUKE, ROB))
    played = play([CRIT] * 25, start=utc(2026, 11, 26, 5, 0), policy=policy)
    assert played.events == ["1 PROBLEM nodeos luke,rob", "21 CALL nodeos luke,rob"]
    assert played.state.checks["nodeos"].incident.escalated_at == utc(2026, 11, 26, 5, 11)


@pytest.mark.parametrize(
    ("text", "hours"),
    [
        ("07:00-23:00", (420, 1380)),
        ("22:00-06:00", (1320, 360)),
        ("00:00-24:00", (0, 1440)),
        ("23:00-24:00", (1380, 1440)),
        (" 7:30 - 9:05 ", (450, 545)),
        ("08:00-22:00", (480, 1320)),
        ("23:59-00:00", (1439, 0)),
    ],
)
def test_parse_hours_accepts(text: str, hours: tuple[int, int]) -> None:
    assert parse_hours(text) == hours


@pytest.mark.parametrize(
    "text",
    [
        "",
        "07:00",
        "7-23",
        "07:00-07:00",  # start and end the same
        "00:00-00:00",
        "24:00-06:00",  # a start at 24:00
        "25:00-01:00",
        "07:60-08:00",
        "07:00-08:60",
        "07:00-24:01",
        "07:00-99:00",
        "07:00\u201323:00",  # an en dash
        "07:00-23:00x",
        "7am-11pm",
        "-1:00-06:00",
    ],
)
def test_parse_hours_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hours(text)


# --- read_ack, matches ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "check"),
    [
        ("ACK", None),
        ("ack.", None),
        ("ack!", None),
        ("ack\n", None),
        (" Ack nodeos ", "nodeos"),
        ("ACK: nodeos.", "nodeos"),
        ("ACK endpoint eu.example.io", "endpoint eu.example.io"),
        ("ACK endpoint eu.example.io.", "endpoint eu.example.io"),
        ("ACK  endpoint   eu.example.io", "endpoint eu.example.io"),
        ("acknowledged", None),
        ("ACKNOWLEDGE disk", "disk"),
        ("Acknowledged, lib", "lib"),
    ],
)
def test_read_ack_accepts(body: str, check: str | None) -> None:
    assert read_ack(body) == (True, check)


@pytest.mark.parametrize(
    "body",
    ["on it", "STOP", "back", "back in 5", "", "acking", "Acknowledgement", "a c k", "OK ACK"],
)
def test_read_ack_rejects(body: str) -> None:
    assert read_ack(body) == (False, None)


def test_read_ack_caps_the_check_at_80_characters() -> None:
    assert read_ack("ACK " + "x" * 200) == (True, "x" * 80)


@pytest.mark.parametrize(
    ("check", "asked", "named"),
    [
        ("nodeos", "nodeos", True),
        ("nodeos", "NODEOS", True),
        ("nodeos", " nodeos ", True),
        ("nodeos", "node", False),
        ("nodeos", "lib", False),
        ("lib", "lib", True),
        ("endpoint:eu.example.io", "endpoint:eu.example.io", True),
        ("endpoint:eu.example.io", "endpoint eu.example.io", True),
        ("endpoint:eu.example.io", "ENDPOINT EU.EXAMPLE.IO", True),
        ("endpoint:eu.example.io", "endpoint", True),  # every endpoint
        ("endpoint:eu.example.io", "eu.example.io", False),
        ("endpoint:eu.example.io", "endpoint us.example.io", False),
        ("disk:/data", "disk", True),
        ("disk:/data", "disk /data", True),
        ("disk:/data", "/data", False),
        ("head_block", "head", False),
        ("head_block", "head block", False),
    ],
)
def test_matches(check: str, asked: str, named: bool) -> None:
    assert matches(check, asked) is named


# --- scenarios, run by run -------------------------------------------------------------

DOWN_THEN_UP = [CRIT] * 30 + [OK] * 3  # the incident closes at minute 31


@pytest.mark.parametrize(
    ("start", "statuses", "acks", "expected"),
    [
        pytest.param(
            NY_2AM,
            DOWN_THEN_UP,
            {},
            [
                "1 PROBLEM nodeos michael,rob",
                "11 PROBLEM* nodeos luke",
                f"21 CALL nodeos {EVERYONE}",
                f"31 RECOVERY nodeos {EVERYONE}",
            ],
            id="02:00 in New York: luke escalated to, then everyone called",
        ),
        pytest.param(
            ONLY_MICHAEL,
            DOWN_THEN_UP,
            {},
            [
                "1 PROBLEM nodeos michael",
                "11 PROBLEM* nodeos luke,rob",
                f"21 CALL nodeos {EVERYONE}",
                f"31 RECOVERY nodeos {EVERYONE}",
            ],
            id="only michael awake",
        ),
        pytest.param(
            NY_2AM,
            [CRIT] * 70 + [OK] * 3,
            {5: [(MICHAEL, None)]},
            [
                "1 PROBLEM nodeos michael,rob",
                "5 ACK nodeos rob",
                "61 REMINDER nodeos michael",  # to the acker only
                "71 RECOVERY nodeos michael,rob",  # luke was never told
            ],
            id="ACK before escalation: no escalation, no call",
        ),
        pytest.param(
            NY_2AM,
            DOWN_THEN_UP,
            {15: [(LUKE, "nodeos")]},
            [
                "1 PROBLEM nodeos michael,rob",
                "11 PROBLEM* nodeos luke",
                "15 ACK nodeos michael,rob",
                f"31 RECOVERY nodeos {EVERYONE}",
            ],
            id="ACK after escalation: no call",
        ),
        pytest.param(
            NY_2AM,
            DOWN_THEN_UP,
            {20: [(ROB, "NODEOS")]},
            [
                "1 PROBLEM nodeos michael,rob",
                "11 PROBLEM* nodeos luke",
                "20 ACK nodeos luke,michael",
                f"31 RECOVERY nodeos {EVERYONE}",
            ],
            id="ACK the minute before the call",
        ),
        pytest.param(
            NY_2AM,
            DOWN_THEN_UP,
            {5: [(STRANGER, None)], 15: [(STRANGER, "nodeos")]},
            [
                "1 PROBLEM nodeos michael,rob",
                "11 PROBLEM* nodeos luke",
                f"21 CALL nodeos {EVERYONE}",
                f"31 RECOVERY nodeos {EVERYONE}",
            ],
            id="ACK from a stranger is ignored",
        ),
        pytest.param(
            NY_2AM,
            DOWN_THEN_UP,
            {0: [(MICHAEL, None)]},
            [
                "1 PROBLEM nodeos michael,rob",
                "11 PROBLEM* nodeos luke",
                f"21 CALL nodeos {EVERYONE}",
                f"31 RECOVERY nodeos {EVERYONE}",
            ],
            id="ACK before anything was texted does nothing",
        ),
        pytest.param(
            NY_2AM,
            DOWN_THEN_UP,
            {25: [(MICHAEL, None)]},
            [
                "1 PROBLEM nodeos michael,rob",
                "11 PROBLEM* nodeos luke",
                f"21 CALL nodeos {EVERYONE}",
                "25 ACK nodeos luke,rob",
                f"31 RECOVERY nodeos {EVERYONE}",
            ],
            id="ACK after the call: no second call",
        ),
        pytest.param(
            NY_2AM,
            [CRIT] * 80,
            {},
            [
                "1 PROBLEM nodeos michael,rob",
                "11 PROBLEM* nodeos luke",
                f"21 CALL nodeos {EVERYONE}",
                f"71 REMINDER nodeos {EVERYONE}",
            ],
            id="a long CRITICAL is called once",
        ),
        pytest.param(
            NY_2AM,
            [CRIT] * 25 + [WARN] * 5 + [CRIT] * 10,
            {},
            [
                "1 PROBLEM nodeos michael,rob",
                "11 PROBLEM* nodeos luke",
                f"21 CALL nodeos {EVERYONE}",
            ],
            id="down to WARNING and back to CRITICAL: no second call",
        ),
    ],
)
def test_oncall_scenarios(
    start: datetime,
    statuses: list[Status],
    acks: dict[int, list[tuple[str, str | None]]],
    expected: list[str],
) -> None:
    assert play(statuses, start=start, acks=acks).events == expected


def test_ack_lines_say_what_each_ack_did() -> None:
    played = play(
        [CRIT] * 8,
        acks={3: [(STRANGER, None)], 4: [(ROB, "lib")], 5: [(MICHAEL, None)], 6: [(ROB, None)]},
    )
    assert played.lines == {
        3: ["ACK from +15*****0009 ignored: not a number in ALERT_TO"],
        4: ["ACK lib by rob (sms): no open incident to acknowledge"],
        5: ["ACK by michael (sms): acknowledged nodeos"],
        6: ["ACK by rob (sms): no open incident to acknowledge"],  # michael's ACK stands
    }
    incident = played.state.checks["nodeos"].incident
    assert (incident.acked_by, incident.acked_at) == (MICHAEL, NY_2AM + timedelta(minutes=5))


def test_ack_of_another_check_leaves_nodeos_escalating() -> None:
    both = {"nodeos": CRIT, "lib": CRIT}
    played = play([both] * 25, acks={5: [(ROB, "lib")]})
    assert played.events == [
        "1 PROBLEM nodeos michael,rob",
        "1 PROBLEM lib michael,rob",
        "5 ACK lib michael",
        "11 PROBLEM* nodeos luke",
        f"21 CALL nodeos {EVERYONE}",
    ]
    assert played.state.checks["lib"].incident.acked_by == ROB
    assert played.state.checks["nodeos"].incident.acked_by is None


def test_bare_ack_acknowledges_every_open_texted_incident() -> None:
    # lib fails from minute 3: texted at minute 4. disk only fails once: no incident.
    runs = [
        {"nodeos": CRIT, "lib": OK, "disk:/data": OK},
        {"nodeos": CRIT, "lib": OK, "disk:/data": OK},
        {"nodeos": CRIT, "lib": OK, "disk:/data": OK},
        {"nodeos": CRIT, "lib": WARN, "disk:/data": OK},
    ] + [{"nodeos": CRIT, "lib": WARN, "disk:/data": OK}] * 2
    runs += [{"nodeos": CRIT, "lib": WARN, "disk:/data": CRIT}]
    runs += [{"nodeos": CRIT, "lib": WARN, "disk:/data": OK}] * 30
    played = play(runs, acks={6: [(MICHAEL, None)]})
    assert played.events == [
        "1 PROBLEM nodeos michael,rob",
        "4 PROBLEM lib michael,rob",
        "6 ACK nodeos rob",
        "6 ACK lib rob",
    ]
    assert played.lines[6] == ["ACK by michael (sms): acknowledged nodeos, lib"]


def test_recovery_after_an_ack_goes_to_all_who_were_told_and_nobody_else() -> None:
    # Acked before the escalation: luke was never told, so no RECOVERY for him.
    before = play([CRIT] * 8 + [OK] * 3, acks={4: [(ROB, None)]})
    assert before.events == [
        "1 PROBLEM nodeos michael,rob",
        "4 ACK nodeos michael",
        "9 RECOVERY nodeos michael,rob",
    ]
    # Acked after it: luke was told, so he hears of the recovery too.
    after = play([CRIT] * 14 + [OK] * 3, acks={12: [(ROB, None)]})
    assert after.events == [
        "1 PROBLEM nodeos michael,rob",
        "11 PROBLEM* nodeos luke",
        "12 ACK nodeos luke,michael",
        f"15 RECOVERY nodeos {EVERYONE}",
    ]


def test_an_acker_who_was_never_texted_is_reminded_and_the_others_hear_of_the_ack() -> None:
    # luke, asleep, ACKs (from the terminal, say) before the escalation reached him.
    played = play([CRIT] * 70 + [OK] * 3, acks={5: [(LUKE, None)]})
    assert played.events[:3] == [
        "1 PROBLEM nodeos michael,rob",
        "5 ACK nodeos michael,rob",
        "61 REMINDER nodeos luke",  # reminders go to the acker only
    ]
    assert played.events[3].startswith("71 RECOVERY nodeos ")


def test_an_acker_who_was_reminded_hears_of_the_recovery() -> None:
    played = play([CRIT] * 70 + [OK] * 3, acks={5: [(LUKE, None)]})
    assert played.events[3] == f"71 RECOVERY nodeos {EVERYONE}"


def test_an_ack_of_an_incident_from_an_old_state_keeps_everyone_told() -> None:
    policy = oncall_policy()
    state = AlertState()
    for minute in range(3):
        state, _ = decide(state, [result(CRIT)], NY_2AM + timedelta(minutes=minute), policy)
    record = state.checks["nodeos"]
    old = replace(record, incident=replace(record.incident, told=None))
    state = AlertState({"nodeos": old})
    now = NY_2AM + timedelta(minutes=3)
    state, texts, _ = acknowledge(state, [Ack(LUKE, None, now)], now, policy)
    assert [who(n.to) for n in texts] == ["michael,rob"]
    recoveries = []
    for minute in range(4, 8):
        state, notes = decide(state, [result(OK)], NY_2AM + timedelta(minutes=minute), policy)
        recoveries += [who(n.to) for n in notes if n.kind is Kind.RECOVERY]
    assert recoveries == [EVERYONE]


def test_no_escalation_while_the_check_recovers() -> None:
    # Failing at minutes 0-9, OK from 10: escalation was due at 11, but by then it is OK.
    played = play([CRIT] * 10 + [OK] * 3)
    assert played.events == ["1 PROBLEM nodeos michael,rob", "11 RECOVERY nodeos michael,rob"]


def test_call_on_none_never_calls() -> None:
    played = play([CRIT] * 200, policy=oncall_policy(call_on=None))
    assert played.events == [
        "1 PROBLEM nodeos michael,rob",
        "11 PROBLEM* nodeos luke",
        f"71 REMINDER nodeos {EVERYONE}",
        f"131 REMINDER nodeos {EVERYONE}",
        f"191 REMINDER nodeos {EVERYONE}",
    ]
    assert not any(n.kind is Kind.CALL for ns in played.per_minute.values() for n in ns)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        pytest.param(
            [WARN] * 60,
            ["1 PROBLEM nodeos michael,rob", "11 PROBLEM* nodeos luke"],
            id="WARNING only: never called",
        ),
        pytest.param(
            [WARN] * 30 + [CRIT] * 15 + [OK] * 3,
            [
                "1 PROBLEM nodeos michael,rob",
                "11 PROBLEM* nodeos luke",
                f"30 ESCALATION nodeos {EVERYONE}",
                f"30 CALL nodeos {EVERYONE}",
                f"46 RECOVERY nodeos {EVERYONE}",
            ],
            id="rises to CRITICAL after the call was due: called at once",
        ),
        pytest.param(
            [WARN] * 15 + [CRIT] * 15,
            [
                "1 PROBLEM nodeos michael,rob",
                "11 PROBLEM* nodeos luke",
                f"15 ESCALATION nodeos {EVERYONE}",
                f"21 CALL nodeos {EVERYONE}",
            ],
            id="rises to CRITICAL before the call was due: called when due",
        ),
        pytest.param(
            [WARN] * 5 + [CRIT] * 25,
            [
                "1 PROBLEM nodeos michael,rob",
                "5 ESCALATION nodeos michael,rob",
                "11 PROBLEM* nodeos luke",
                f"21 CALL nodeos {EVERYONE}",
            ],
            id="rises before the escalation",
        ),
        pytest.param(
            [WARN] * 30 + [UNKNOWN] * 30,
            [
                "1 PROBLEM nodeos michael,rob",
                "11 PROBLEM* nodeos luke",
                f"30 ESCALATION nodeos {EVERYONE}",
            ],
            id="UNKNOWN ranks below CRITICAL: never called",
        ),
    ],
)
def test_warning_incident_is_called_only_once_it_is_critical(
    statuses: list[Status], expected: list[str]
) -> None:
    assert play(statuses, policy=oncall_policy(call_on=CRIT)).events == expected


def test_call_on_warning_calls_again_when_the_status_rises() -> None:
    played = play([WARN] * 25 + [CRIT] * 10, policy=oncall_policy(call_on=WARN))
    assert played.events == [
        "1 PROBLEM nodeos michael,rob",
        "11 PROBLEM* nodeos luke",
        f"21 CALL nodeos {EVERYONE}",
        f"25 ESCALATION nodeos {EVERYONE}",
        f"25 CALL nodeos {EVERYONE}",
    ]
    calls = [n for ns in played.per_minute.values() for n in ns if n.kind is Kind.CALL]
    assert [c.status for c in calls] == [WARN, CRIT]
    assert played.state.checks["nodeos"].incident.called == dict.fromkeys(RECIPIENTS, "CRITICAL")


def test_incident_records_the_steps() -> None:
    played = play([CRIT] * 22)
    incident = played.state.checks["nodeos"].incident
    minute = lambda m: NY_2AM + timedelta(minutes=m)  # noqa: E731
    assert incident.paged_at == minute(1)
    assert incident.told_at == {MICHAEL: minute(1), ROB: minute(1), LUKE: minute(11)}
    assert incident.escalated_at == minute(11)
    assert incident.called == dict.fromkeys(RECIPIENTS, "CRITICAL")
    assert incident.acked_by is None
    (escalated,) = played.per_minute[11]
    assert escalated.escalated and escalated.since == minute(0) and escalated.at == minute(11)


@pytest.mark.parametrize(
    ("minutes", "acks", "step", "due"),
    [
        (3, {}, "escalate to luke unless ACKed", 11),
        (12, {}, "call everyone unless ACKed", 21),
        (22, {}, "none: everyone was called; waiting for an ACK", None),
        (5, {4: [(ROB, None)]}, "reminder to rob only (ACKed)", 61),
    ],
)
def test_oncall_view_names_the_next_step(
    minutes: int, acks: dict[int, list[tuple[str, str | None]]], step: str, due: int | None
) -> None:
    played = play([CRIT] * minutes, acks=acks)
    (view,) = oncall_view(played.state, oncall_policy(), NY_2AM + timedelta(minutes=minutes))
    assert view["next"] == step
    expected_due = NY_2AM + timedelta(minutes=due) if due is not None else None
    assert view["due"] == (expected_due.strftime("%Y-%m-%dT%H:%M:%SZ") if expected_due else None)


# --- render_sms of the escalated and ACK notes --------------------------------------


def test_render_sms_of_an_escalated_problem() -> None:
    played = play([CRIT] * 12)
    (escalated,) = played.per_minute[11]
    assert render_sms("eu2", [escalated], escalated.at) == (
        "[eu2] ESCALATED CRITICAL nodeos: nodeos is CRITICAL (11m, no ACK)"
    )


def test_render_sms_of_an_ack() -> None:
    played = play([CRIT] * 6, acks={5: [(LUKE, "nodeos")]})
    (ack,) = [n for n in played.per_minute[5] if n.kind is Kind.ACK]
    assert ack.to == (MICHAEL, ROB) and ack.summary == "luke"
    assert render_sms("eu2", [ack], ack.at) == "[eu2] ACK nodeos by luke"


@pytest.mark.parametrize(
    ("notes", "text"),
    [
        (
            [("ACK", "nodeos", "luke"), ("ACK", "endpoint:eu.example.io", "luke")],
            "[eu2] ACK nodeos, endpoint eu.example.io by luke",
        ),
        (
            [("ACK", "nodeos", "luke"), ("ACK", "lib", "rob")],
            "[eu2] ACK nodeos by luke; lib by rob",
        ),
        (
            [("ACK", "nodeos", "")],
            "[eu2] ACK nodeos by an operator",
        ),
        (
            [("ESC", "nodeos", "connection refused"), ("ESC", "disk:/data", "97% full")],
            "[eu2] ESCALATED CRITICAL nodeos: connection refused (12m, no ACK);"
            " disk /data: 97% full (12m, no ACK)",
        ),
        (
            [("ESC", "nodeos", "connection refused"), ("PROBLEM", "lib", "HTTP 503")],
            "[eu2] ESCALATED CRITICAL nodeos: connection refused (12m, no ACK)."
            " CRITICAL lib: HTTP 503",
        ),
        (
            [("ESC", "nodeos", "connection refused"), ("ACK", "lib", "michael")],
            "[eu2] ESCALATED CRITICAL nodeos: connection refused (12m, no ACK). ACK lib by michael",
        ),
        (
            [("CALL", "nodeos", "connection refused"), ("ACK", "lib", "michael")],
            "[eu2] ACK lib by michael",  # a call is never texted
        ),
    ],
)
def test_render_sms_exact(notes: list[tuple[str, str, str]], text: str) -> None:
    since = NY_2AM
    now = since + timedelta(minutes=12)

    def note(kind: str, check: str, summary: str) -> Notification:
        if kind == "ESC":
            return Notification(Kind.PROBLEM, check, CRIT, summary, since, now, escalated=True)
        return Notification(Kind(kind), check, CRIT, summary, since, now)

    assert render_sms("eu2", [note(*n) for n in notes], now) == text


def test_render_sms_of_a_call_alone_is_nothing_to_render() -> None:
    call = Notification(Kind.CALL, "nodeos", CRIT, "down", NY_2AM, NY_2AM, to=(LUKE,))
    with pytest.raises(ValueError):
        render_sms("eu2", [call], NY_2AM)


# --- properties -------------------------------------------------------------------------

ZONES = (
    None,
    "America/New_York",
    "America/Los_Angeles",
    "Europe/London",
    "Asia/Seoul",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Pacific/Chatham",
)
YEAR_START = utc(2026, 1, 1)
CHECKS = ("nodeos", "lib")


@st.composite
def operators(draw: st.DrawFn) -> tuple[Operator, ...]:
    found = []
    for number, name in ((LUKE, "luke"), (MICHAEL, "michael"), (ROB, "rob")):
        waking = None
        if draw(st.booleans()):
            start = draw(st.integers(0, 24 * 60 - 1))
            end = draw(st.integers(1, 24 * 60).filter(lambda e, s=start: e != s))
            waking = (start, end)
        found.append(Operator(number, name, draw(st.sampled_from(ZONES)), waking))
    return tuple(found)


@st.composite
def oncall_policies(draw: st.DrawFn, call_on: Status | None = CRIT) -> Policy:
    start = draw(st.integers(0, 24 * 60 - 1))
    end = draw(st.integers(1, 24 * 60).filter(lambda e: e != start))
    return Policy(
        alert_level=WARN,
        alert_after=2,
        remind_every_minutes=draw(st.sampled_from([0, 5, 60])),
        recipients=RECIPIENTS,
        operators=draw(operators()),
        waking_hours=(start, end),
        escalate_after_minutes=draw(st.integers(1, 30)),
        call_on=call_on,
    )


starts = st.integers(0, 365 * 24 * 60).map(lambda m: YEAR_START + timedelta(minutes=m))


@dataclass(frozen=True)
class Story:
    policy: Policy
    start: datetime
    runs: tuple[dict[str, Status], ...]
    acks: dict[int, tuple[tuple[str, str | None], ...]]


@st.composite
def stories(draw: st.DrawFn) -> Story:
    policy = draw(oncall_policies(call_on=draw(st.sampled_from([CRIT, WARN, None]))))
    count = draw(st.integers(1, 90))
    current = dict.fromkeys(CHECKS, OK)
    runs = []
    for _ in range(count):
        for name in CHECKS:
            if draw(st.integers(0, 5)) == 0:
                current[name] = draw(st.sampled_from([OK, WARN, CRIT, UNKNOWN]))
        runs.append(dict(current))
    ack_runs = draw(st.lists(st.integers(0, count - 1), max_size=4, unique=True))
    acks = {
        run: tuple(
            draw(
                st.lists(
                    st.tuples(
                        st.sampled_from([LUKE, MICHAEL, ROB, STRANGER]),
                        st.sampled_from([None, "nodeos", "lib", "NODEOS", "endpoint"]),
                    ),
                    min_size=1,
                    max_size=2,
                )
            )
        )
        for run in ack_runs
    }
    return Story(policy, draw(starts), tuple(runs), acks)


@dataclass(frozen=True)
class Step:
    index: int
    before: AlertState  # before the run's ACKs
    acked: AlertState  # after them, before decide
    after: AlertState  # after decide
    texts: list[Notification]  # the ACK texts
    decided: list[Notification]

    @property
    def notes(self) -> list[Notification]:
        return self.texts + self.decided


def tell(story: Story) -> Iterable[Step]:
    """Run by run: the ACKs typed before the run, then the run."""
    state = AlertState()
    for index, statuses in enumerate(story.runs):
        now = story.start + timedelta(minutes=index)
        before = state
        texts: list[Notification] = []
        if index in story.acks:
            acks = [Ack(number, check, now) for number, check in story.acks[index]]
            state, texts, _ = acknowledge(state, acks, now, story.policy)
        acked = state
        results = [result(s, name) for name, s in statuses.items()]
        state, decided = decide(state, results, now, story.policy)
        yield Step(index, before, acked, state, texts, decided)


@settings(deadline=None, max_examples=150)
@given(stories())
def test_an_acknowledged_incident_is_never_called_nor_escalated_after_its_ack(
    story: Story,
) -> None:
    acked: dict[str, datetime] = {}  # check -> opened_at of its acknowledged incident
    for step in tell(story):
        for check in CHECKS:
            incident = step.acked.checks.get(check, CheckRecord()).incident
            if incident is not None and incident.acked_by is not None:
                assert incident.acked_by in RECIPIENTS
                acked[check] = incident.opened_at
        for n in step.decided:
            if n.kind is Kind.ESCALATION:
                # Worse than what was ACKed: the ACK was for the lesser problem,
                # and the steps start again (rules._address).
                acked.pop(n.check, None)
        for n in step.decided:
            if n.check in acked:
                assert n.kind is not Kind.CALL, n
                assert not n.escalated, n
        for check in CHECKS:
            incident = step.after.checks[check].incident
            if incident is None or incident.opened_at != acked.get(check, incident.opened_at):
                acked.pop(check, None)  # closed: a new incident may be called


# Found by this property: rob's waking hours end on the escalation's minute, so
# nobody is awake; the others were texted a late PROBLEM, not the ESCALATED one.
_SYDNEY_EVENING = (
    Operator(LUKE, "luke", "America/New_York"),
    Operator(MICHAEL, "michael", "America/New_York"),
    Operator(ROB, "rob", "Australia/Sydney"),
)


@settings(deadline=None, max_examples=150)
@given(oncall_policies(), starts)
@example(
    Policy(
        alert_level=WARN,
        alert_after=2,
        remind_every_minutes=0,
        recipients=RECIPIENTS,
        operators=_SYDNEY_EVENING,
        waking_hours=(0, 238),
        escalate_after_minutes=1,
        call_on=CRIT,
    ),
    YEAR_START + timedelta(minutes=1016),
)
def test_an_unacknowledged_critical_is_called_within_two_escalations(
    policy: Policy, start: datetime
) -> None:
    wait = policy.escalate_after_minutes
    story = Story(policy, start, tuple({"nodeos": CRIT} for _ in range(2 * wait + 2)), {})
    kinds: list[tuple[int, Notification]] = []
    for step in tell(story):
        kinds += [(step.index, n) for n in step.notes]
    first = [n for i, n in kinds if i == 1 and n.kind is Kind.PROBLEM and not n.escalated]
    assert len(first) == 1 and first[0].to  # somebody is always first in line
    calls = [(i, n) for i, n in kinds if n.kind is Kind.CALL]
    assert [i for i, _ in calls] == [1 + 2 * wait]  # once, when due, not before
    assert set(calls[0][1].to) == set(RECIPIENTS)
    told: set[str] = set()
    for i, n in kinds:
        if n.kind is Kind.PROBLEM:
            # The first text; a late one to somebody whose waking hours began
            # before the escalation; the escalation, to the rest.
            first_text = i == 1 and not n.late and not n.escalated
            woke_up = 1 < i < 1 + wait and n.late and not n.escalated
            assert first_text or woke_up or (i == 1 + wait and n.escalated), (i, n)
            assert not told & set(n.to)  # nobody is told twice
            told |= set(n.to)
    assert told == set(RECIPIENTS)


@settings(deadline=None, max_examples=150)
@given(stories())
def test_nobody_hears_of_a_recovery_they_were_not_told_of(story: Story) -> None:
    told: dict[str, set[str]] = {check: set() for check in CHECKS}
    for step in tell(story):
        before, state, notes = step.before, step.after, step.notes
        # Checked against the news of earlier runs: a RECOVERY or an ACK text
        # never goes out in the run that first tells somebody.
        for n in notes:
            if n.kind is Kind.RECOVERY:
                assert n.to, n
                assert set(n.to) <= told[n.check], (n, told[n.check])
            if n.kind is Kind.ACK:
                # Only the others who were told hear who acknowledged it.
                assert set(n.to) <= told[n.check], (n, told[n.check])
                acker = NUMBERS[n.summary]
                assert acker not in n.to
                assert before.checks[n.check].incident.acked_by is None
        for check in CHECKS:
            # Whoever ACKs is on it, told or not: they hear of its end too.
            incident = step.acked.checks.get(check, CheckRecord()).incident
            if incident is not None and incident.acked_by is not None:
                told[check].add(incident.acked_by)
        for n in notes:
            if n.kind in NEWS_OF_A_PROBLEM:
                told[n.check] |= set(n.to)
        for check in CHECKS:
            if state.checks[check].incident is None:
                told[check] = set()


# --- an old reply, read again by every run, acknowledges nothing new -----------------


def runs_with_a_reply(statuses: list[dict[str, Status]], reply_at: datetime, check: str | None):
    """Each run first applies the same reply, as each run reads the replies again."""
    policy = oncall_policy()
    state = AlertState()
    events: list[str] = []
    for minute, by_check in enumerate(statuses):
        now = NY_2AM + timedelta(minutes=minute)
        if minute:
            state, texts, _ = acknowledge(state, [Ack(ROB, check, reply_at)], now, policy)
            events += [event(minute, n) for n in texts]
        results = [result(s, name) for name, s in by_check.items()]
        state, notes = decide(state, results, now, policy)
        events += [event(minute, n) for n in notes if n.kind is not Kind.REMINDER]
    return events, state


def test_a_bare_ack_does_not_acknowledge_an_incident_texted_after_it() -> None:
    # disk WARNING from minute 0 (texted at 1); rob's bare ACK at 1:30; nodeos
    # CRITICAL from minute 2 (texted at 3): the reply, read again at every run,
    # is older than the nodeos text, so nodeos escalates and calls.
    runs = [{"disk:/": WARN, "nodeos": OK}] * 2 + [{"disk:/": WARN, "nodeos": CRIT}] * 30
    events, state = runs_with_a_reply(runs, NY_2AM + timedelta(minutes=1, seconds=30), None)
    assert "2 ACK disk:/ michael" in events
    assert not any(e.startswith(("3 ACK nodeos", "4 ACK nodeos")) for e in events), events
    assert state.checks["nodeos"].incident.acked_by is None
    assert f"{3 + 2 * E} CALL nodeos {EVERYONE}" in events


def test_an_ack_of_the_lesser_problem_does_not_hold_once_it_is_worse() -> None:
    # disk WARNING, ACKed by rob at 1:30; CRITICAL from minute 3: the steps start
    # again, and the same reply, read again, does not acknowledge the CRITICAL.
    runs = [{"disk:/": WARN}] * 3 + [{"disk:/": CRIT}] * 30
    events, state = runs_with_a_reply(runs, NY_2AM + timedelta(minutes=1, seconds=30), "disk")
    assert [e for e in events if " ACK " in e] == ["2 ACK disk:/ michael"]
    assert "3 ESCALATION disk:/ michael,rob" in events
    assert state.checks["disk:/"].incident.acked_by is None
    assert f"{3 + 2 * E} CALL disk:/ {EVERYONE}" in events
