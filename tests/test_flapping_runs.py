"""Flapping, in whole runs: a check going up and down texts a few times, not every swing.

Each whole-run test drives `run_once(config, now)` one run a minute on a controlled
clock, against a nodeos stand-in (up, or "down": NODEOS_URL pointed at a dead port)
and the Twilio stand-in reached by the real twilio client, and counts the texts each
phone received. The pure `decide` is then driven with small patterns (hypothesis):
50% downtime is never silent, and the most any pattern texts in an hour is bounded
(by more than one would like: 13 for up/down, 17 with WARNING and UNKNOWN; see there).

The rules (check_status/alerting/rules.py, flapping.py): Nagios's weighted percent
state change over the last 21 runs; flapping starts at 20% and stops at 10%, judged
only once 10 runs of the window are evidence, and only with at least ALERT_AFTER
failing runs in the window. A flapping check keeps one incident open: one FLAPPING
text, in a failing run (or the PROBLEM already sent), reminders every
REMIND_EVERY_MINUTES, and one RECOVERY once it is stable (flapping over) and
ALERT_AFTER runs are OK.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from check_status.alerting.rules import AlertState, Kind, Notification, Policy, decide
from check_status.model import CheckResult, Status
from tests import test_every_phone_once as phones
from tests.standins import NodeosStandIn, TwilioStandIn
from tests.test_every_phone_once import LUKE, MICHAEL, SMS_KEYS, START, TOKEN

PHONES = (LUKE, MICHAEL)


class Node(phones.Node):
    """The node of test_every_phone_once, texting both phones; each text with its minute."""

    def __init__(self, write_env: Any, nodeos: NodeosStandIn, twilio: TwilioStandIn, **settings):
        super().__init__(
            write_env, nodeos, twilio, ALERT_TO=",".join(PHONES), **SMS_KEYS, **settings
        )

    def run(self, minute: int, *, down: bool = False, lag: float = 0.5) -> None:
        super().run(minute, down=down, lag=lag)

    def texts(self, phone: str) -> list[tuple[int, str]]:  # type: ignore[override]
        return self.timed_texts(phone)


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


def both_phones_got_the_same(n: Node) -> list[tuple[int, str]]:
    """Every operator got the same texts in the same runs; those texts."""
    first = n.texts(LUKE)
    assert n.texts(MICHAEL) == first
    return first


# --- whole runs ----------------------------------------------------------------------


def test_down_every_other_minute_for_200_minutes_texts_four_times(node):
    n = node()
    for minute in range(200):
        n.run(minute, down=minute % 2 == 0)
    texts = both_phones_got_the_same(n)
    # 100 outages of one run each. ALERT_AFTER=2 failing runs in a row never happens,
    # so without flap detection this would never text at all. The 10th run (minute 9)
    # is the first with enough evidence (100% state change, 5 failing runs in the
    # window), but an OK one, and a flapping check is told in a failing run: one
    # FLAPPING text at minute 10. Then only the hourly reminders; a reminder is due 60
    # minutes after the last text but goes out only in a failing run (the even
    # minutes): 70, 130, 190. No RECOVERY: it never stops flapping.
    assert [len(n.texts(phone)) for phone in PHONES] == [4, 4]
    assert [minute for minute, _ in texts] == [10, 70, 130, 190]
    assert texts[0][1].startswith(
        "[eu2] FLAPPING nodeos: failed 6 of the last 11 runs (connection refused (127.0.0.1:"
    )
    for minute, body in texts[1:]:
        assert body.startswith(
            "[eu2] STILL CRITICAL nodeos: failed 11 of the last 21 runs (connection refused"
        ), (minute, body)
    # They say how long it has lasted: "(1h)" at minute 70, measured from minute 10,
    # the run that told of it, though it has failed since minute 0 (see below).
    assert all(re.search(r" \(\dh(\d\dm)?\)$", body) for _, body in texts[1:]), texts


def test_down_two_up_two_for_200_minutes_texts_eight_times_not_a_hundred(node):
    n = node()
    for minute in range(200):
        n.run(minute, down=minute % 4 < 2)
    texts = both_phones_got_the_same(n)
    # 50 outages of two runs: without flap detection each would text a PROBLEM and a
    # RECOVERY, 100 texts per phone. Before the window holds 10 judged runs nothing
    # can flap, so the first two outages text as usual (PROBLEM 1, RECOVERY 3, PROBLEM
    # 5, RECOVERY 7); the third PROBLEM (minute 9, the 10th run) comes with flapping
    # (about 50% state change), which keeps that incident open: no more RECOVERY,
    # just the hourly reminders, each in a failing minute (69, 129, 189).
    assert [len(n.texts(phone)) for phone in PHONES] == [8, 8]
    assert [minute for minute, _ in texts] == [1, 3, 5, 7, 9, 69, 129, 189]
    heads = [body.split(":")[0] for _, body in texts]
    assert heads == [
        "[eu2] CRITICAL nodeos",
        "[eu2] RECOVERED nodeos after 2m",
        "[eu2] CRITICAL nodeos",
        "[eu2] RECOVERED nodeos after 2m",
        "[eu2] CRITICAL nodeos",
        *["[eu2] STILL CRITICAL nodeos"] * 3,
    ]
    for _, body in texts[5:]:
        assert "nodeos: failed 11 of the last 21 runs (connection refused" in body


def test_critical_warning_alternation_is_texted_when_only_critical_pages(node):
    n = node(ALERT_LEVEL="CRITICAL")
    for minute in range(60):
        # Defaults HEAD_LAG_WARN_SECONDS=15, HEAD_LAG_CRIT_SECONDS=60: 120 s behind is
        # CRITICAL, 30 s is WARNING. The head number keeps moving, so never "stalled".
        n.run(minute, lag=120 if minute % 2 == 0 else 30)
    texts = both_phones_got_the_same(n)
    # CRITICAL never twice in a row, and a WARNING resets the count, so the usual
    # rules would never open an incident. Every run is a state change (C/W counts):
    # flapping from the 10th run (minute 9, a WARNING), told in the next CRITICAL one:
    # FLAPPING at minute 10, with 6 CRITICAL runs of 11. The next reminder would be
    # due at minute 70, after these 60 runs.
    assert [len(n.texts(phone)) for phone in PHONES] == [1, 1]
    ((minute, body),) = texts
    assert minute == 10
    assert body.startswith("[eu2] FLAPPING head_block: failed 6 of the last 11 runs (head #")
    assert body.endswith(" is 2m behind)"), body


def test_after_flapping_a_stable_node_recovers_once(node):
    n = node()
    for minute in range(100):
        n.run(minute, down=minute < 40 and minute % 2 == 0)  # last failure: minute 38
    texts = both_phones_got_the_same(n)
    # FLAPPING at minute 10 (as above), then stable from minute 39. Flapping ends when
    # the state change is down to 10%: at minute 57 the window (minutes 37-57) holds
    # two changes, both among its oldest (7.6%); at 56 it held three (11.6%). By then
    # far more than ALERT_AFTER runs are OK, so the one RECOVERY goes out at 57, and
    # nothing after it.
    assert [len(n.texts(phone)) for phone in PHONES] == [2, 2]
    assert [minute for minute, _ in texts] == [10, 57]
    assert texts[0][1].startswith("[eu2] FLAPPING nodeos: failed 6 of the last 11 runs")
    # From minute 0, the first failure still in the window when it began to flap,
    # to minute 39, the first OK run of the stable stretch.
    assert texts[1][1] == "[eu2] RECOVERED nodeos after 39m", texts


def test_a_single_five_minute_outage_is_not_flapping(node):
    n = node()
    for minute in range(60):
        n.run(minute, down=10 <= minute < 15)
    texts = both_phones_got_the_same(n)
    # Two changes in the window (at most 12%): below the 20% that starts flapping.
    assert [len(n.texts(phone)) for phone in PHONES] == [2, 2]
    assert [minute for minute, _ in texts] == [11, 16]
    assert texts[0][1].startswith("[eu2] CRITICAL nodeos: connection refused")
    assert texts[1][1] == "[eu2] RECOVERED nodeos after 5m"


# --- the pure rules, with small patterns ------------------------------------------------

LETTER_STATUS = {
    "O": Status.OK,
    "W": Status.WARNING,
    "C": Status.CRITICAL,
    "U": Status.UNKNOWN,
}


def notifications(letters: str, policy: Policy) -> list[tuple[int, Notification]]:
    """One check, one run a minute, each run's status a letter; (run, notification)."""
    state, sent = AlertState(), []
    for run, letter in enumerate(letters):
        result = CheckResult("nodeos", LETTER_STATUS[letter], f"{letter} in run {run}")
        state, notes = decide(state, [result], START + timedelta(minutes=run), policy)
        sent += [(run, note) for note in notes]
    return sent


def most_in_any_hour(runs: list[int]) -> int:
    """The most notifications in any 60 consecutive runs (runs are sorted)."""
    return max((sum(1 for r in runs if start <= r < start + 60) for start in runs), default=0)


@st.composite
def half_down_patterns(draw: st.DrawFn) -> str:
    """A period of 2..10 runs, at least half of them down (WARNING or CRITICAL)."""
    period = draw(st.integers(2, 10))
    down = draw(st.sets(st.integers(0, period - 1), min_size=(period + 1) // 2))
    return "".join(draw(st.sampled_from("WC")) if run in down else "O" for run in range(period))


@settings(max_examples=300, deadline=None)
@given(pattern=half_down_patterns(), alert_after=st.integers(1, 3))
def test_half_downtime_is_never_silent(pattern, alert_after):
    """Down at least every other run, repeated for an hour: somebody is texted.

    Either some outage lasts ALERT_AFTER runs (a PROBLEM), or the outages are short and
    so many that the state changes in well over 20% of the runs (FLAPPING, once the
    window holds 10 judged runs and ALERT_AFTER failing ones). Checked exhaustively for
    O/C periods 2..10 and ALERT_AFTER 1..5 while writing this: never silent, and the
    first text came by run 10 (the 11th) at the latest for ALERT_AFTER=2.
    """
    policy = Policy(alert_after=alert_after, remind_every_minutes=60, recipients=(LUKE,))
    letters = (pattern * 60)[:60]
    sent = notifications(letters, policy)
    assert sent, f"{pattern!r} x 60 runs, ALERT_AFTER={alert_after}: never texted"
    assert sent[0][1].kind in (Kind.PROBLEM, Kind.FLAPPING)


def patterns(alphabet: str) -> st.SearchStrategy[str]:
    """200 runs: a repeated period, noise, or stretches (outages and healthy spells)."""
    periodic = (
        st.integers(1, 12)
        .flatmap(lambda period: st.text(alphabet=alphabet, min_size=period, max_size=period))
        .map(lambda period: (period * 200)[:200])
    )
    noise = st.text(alphabet=alphabet, min_size=200, max_size=200)
    stretches = st.lists(
        st.tuples(st.sampled_from(alphabet), st.integers(1, 25)), min_size=1, max_size=200
    ).map(lambda parts: "".join(letter * length for letter, length in parts)[:200].ljust(200, "O"))
    return st.one_of(periodic, noise, stretches)


def most_texts_in_an_hour(letters: str) -> tuple[int, Counter]:
    policy = Policy(alert_after=2, remind_every_minutes=60, recipients=(LUKE,))
    sent = notifications(letters, policy)
    return most_in_any_hour([run for run, _ in sent]), Counter(n.kind.value for _, n in sent)


# The worst found, by exhaustive search of periodic patterns (period <= 10) and by hill
# climbing and annealing over arbitrary ones, while writing these tests.
WORST_UP_DOWN = (
    "OCCOOCCOOOOOCCCCCCCCCCCOOOOOCCCCOOOOOCCCCCCCCCCCCCOOOOCCCOOOOCCCOOOCOOOCOOOCCCOCCCCCOCOOOOOCCCCOCOOO"
).ljust(200, "O")
MOST_UP_DOWN_TEXTS_AN_HOUR = 13


@settings(max_examples=200, deadline=None, derandomize=True)
@given(letters=patterns("OC"))
@example(letters=WORST_UP_DOWN)
def test_no_up_down_pattern_texts_more_than_13_times_an_hour(letters):
    """Up (OK) or down (CRITICAL) for 200 runs: at most 13 texts in any 60 runs.

    ALERT_AFTER=2, REMIND_EVERY_MINUTES=60, one recipient. Why not fewer: flapping
    holds an incident open, but it needs 10 judged runs to be judged at all, and it
    ends at 10% state change while a RECOVERY only needs flapping to be off. So a check
    can go: PROBLEM, RECOVERY, PROBLEM, RECOVERY in its first 9 runs; then FLAPPING;
    stable for ~15 runs, RECOVERY; a short outage below 20%, PROBLEM and RECOVERY;
    a few runs later the changes add up to 20%: FLAPPING again (PROBLEM, RECOVERY and
    FLAPPING within six minutes); and so on: WORST_UP_DOWN texts at runs 2 4 6 8 12 27
    29 33 37 51 55 58 61.
    Periodic patterns do much better (at most 5 an hour: the period "OCCO").
    Derandomized: the bound is the worst found, not a proof, so a run must not fail
    at random; a change to the rules that makes WORST_UP_DOWN worse fails here.
    """
    most, kinds = most_texts_in_an_hour(letters)
    assert most <= MOST_UP_DOWN_TEXTS_AN_HOUR, (letters, most, kinds)


WORST_ANY_STATUS = (
    "OOUWUCOOCWUUUUCOOOOOOOOOOOOOOOOOWWUCOOOOOOOOOOOOOOOOOOOWWOOUWUCUWUWUWWCUCWWWWUWUWOUCUOUOCW"
).ljust(200, "O")
MOST_TEXTS_AN_HOUR = 17


@settings(max_examples=200, deadline=None, derandomize=True)
@given(letters=patterns("OWCU"))
@example(letters=WORST_ANY_STATUS)
def test_no_pattern_of_statuses_texts_more_than_17_times_an_hour(letters):
    """Any status each run (OK, WARNING, UNKNOWN, CRITICAL) for 200 runs: at most 17
    texts in any 60 runs. That is a lot, and reported as such.

    Beyond the up/down case: UNKNOWN ranks between WARNING and CRITICAL, so an outage
    that goes WARNING, UNKNOWN, CRITICAL texts a PROBLEM and two ESCALATIONs in three
    runs, before its three changes reach the 20% that starts flapping; flapping then
    holds it open, but an ESCALATION still goes out while it flaps. WORST_ANY_STATUS:
    PROBLEM, ESCALATION, ESCALATION, RECOVERY, PROBLEM, ESCALATION, ESCALATION in the
    first 15 runs, then every ~24 runs a RECOVERY and another such outage: texts at
    runs 3 4 5 7 9 10 14 30 33 34 35 54 56 58 60 61 62.
    Derandomized, as above: the bound is the worst found, not a proof.

    Not covered: runs that are no evidence (head_block while nodeos is unreachable).
    With 12 or more of them in the 21-run window, fewer than 10 runs are judged, so
    flapping is never judged at all: "CCOOCCOO" then 13 such runs, repeated, texts a
    PROBLEM and a RECOVERY twice every 21 runs, 12 an hour for as long as it goes on.
    """
    most, kinds = most_texts_in_an_hour(letters)
    assert most <= MOST_TEXTS_AN_HOUR, (letters, most, kinds)
