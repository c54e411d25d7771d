"""Tests of the flap detector: Nagios's weighted percent state change, with hysteresis.

Histories are strings of one letter per run, oldest first, as in the state file:
"O" OK, "W" WARNING, "C" CRITICAL, "U" UNKNOWN, "-" no evidence.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from check_status.alerting.flapping import (
    FLAP_WINDOW,
    MIN_JUDGED_RUNS,
    STATUS_LETTERS,
    FlapPolicy,
    failed_runs,
    is_flapping,
    percent_state_change,
    push_history,
)
from check_status.model import Status

DEFAULT = FlapPolicy()
STATES = "OWCU"
LETTERS = STATES + "-"


def run(letters: Iterable[str], policy: FlapPolicy = DEFAULT) -> list[bool]:
    """Drive the detector as the runner would, one run a minute: flapping after each run."""
    history, flapping, answers = "", False, []
    for letter in letters:
        history = push_history(history, letter)
        flapping = is_flapping(history, flapping, policy)
        answers.append(flapping)
    return answers


def with_changes(*positions: int) -> str:
    """A full window of OK/CRITICAL with a change between runs p-1 and p for each p (1..20)."""
    letters, state = [], "O"
    for position in range(FLAP_WINDOW):
        if position in positions:
            state = "C" if state == "O" else "O"
        letters.append(state)
    return "".join(letters)


# --- percent state change ----------------------------------------------------


@pytest.mark.parametrize(
    ("history", "percent"),
    [
        ("", 0.0),
        ("-" * FLAP_WINDOW, 0.0),
        ("C" * FLAP_WINDOW, 0.0),
        ("OC" * 10 + "O", 100.0),
        ("CW" * 10 + "C", 100.0),  # CRITICAL/WARNING alternation is a change every run
        # Nagios's curve: 0.75 for the oldest possible change, 1.25 for the newest, of 20.
        (with_changes(1), 3.75),
        (with_changes(FLAP_WINDOW - 1), 6.25),
        (with_changes(10, 11), 10.0),
        (with_changes(3, 6, 9, 12, 15, 18), 30.0),
        # Short histories are padded with their first state, as Nagios fills a new
        # check's history: only the changes seen count, at the weight of their age.
        ("O", 0.0),
        ("OC", 6.25),
        ("-----OC", 6.25),
        # "-" is no evidence: the letters either side are compared, no change into it.
        ("O" * 19 + "-O", 0.0),
        ("O" * 19 + "-C", 6.25),
        ("O" * 18 + "C-C", 100 * (0.75 + 17 * 0.5 / 19) / 20),  # a change 3 runs ago
        # Only the last FLAP_WINDOW runs count.
        ("OC" * 30 + "C" * FLAP_WINDOW, 0.0),
        ("C" * 30 + "OC" * 10 + "O", 100.0),
        ("C" + "-" * (FLAP_WINDOW - 1) + "O", 0.0),  # the CRITICAL run has left the window
    ],
)
def test_percent_state_change(history: str, percent: float) -> None:
    assert percent_state_change(history) == pytest.approx(percent)


@pytest.mark.parametrize(
    ("name", "history", "low", "high"),
    [
        ("down every other minute", "OC" * 10 + "O", 100, 100),
        ("down every other minute, other phase", "CO" * 10 + "C", 100, 100),
        ("down 2 minutes, up 2", ("OOCC" * 6)[:FLAP_WINDOW], 49.3, 50.7),
        ("down 2 minutes, up 2, other phase", ("OCCO" * 6)[:FLAP_WINDOW], 49.3, 50.7),
        ("one outage, then its recovery", "O" * 6 + "C" * 5 + "O" * 10, 9.4, 9.5),
        ("one outage, just recovered", "O" * 15 + "C" * 5 + "O", 11.8, 11.9),
    ],
)
def test_percent_of_the_patterns_the_defaults_were_chosen_on(
    name: str, history: str, low: float, high: float
) -> None:
    assert len(history) == FLAP_WINDOW
    assert low <= percent_state_change(history) <= high, name


def test_a_recent_change_weighs_more_than_an_old_one() -> None:
    oldest = percent_state_change(with_changes(1))
    newest = percent_state_change(with_changes(FLAP_WINDOW - 1))
    assert newest > oldest
    # Nagios's own values (low_curve_value 0.75, high_curve_value 1.25), out of 20 changes.
    assert (oldest, newest) == (3.75, 6.25)
    # Linear in between: every step one position newer adds the same weight.
    steps = [percent_state_change(with_changes(p)) for p in range(1, FLAP_WINDOW)]
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(steps)}
    assert gaps == {round(2.5 / 19, 9)}


# --- is_flapping -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "letters", "flapping_at_the_end"),
    [
        ("down every other minute", "OC" * 20, True),
        ("down every other minute, from CRITICAL", "CO" * 20, True),
        ("down 2 minutes, up 2", "OOCC" * 10, True),
        ("down 2 minutes, up 2, phase 1", "OCCO" * 10, True),
        ("down 2 minutes, up 2, phase 2", "CCOO" * 10, True),
        ("down 2 minutes, up 2, phase 3", "COOC" * 10, True),
        ("CRITICAL half its runs, WARNING the rest", "CW" * 20, True),
        ("down every other judged run, a consequence between", "O-C-" * 10, True),
        ("a steady outage", "C" * 40, False),
        ("always OK", "O" * 40, False),
        ("one outage", "O" * 10 + "C" * 5 + "O" * 10, False),
        # Four changes reach 20%: held as one incident, not texted as two.
        ("one outage with one OK run in it", "O" * 10 + "C" + "O" + "C" * 4 + "O" * 10, True),
        ("down 4, up 4", "CCCCOOOO" * 5, True),
    ],
)
def test_flapping_with_the_default_thresholds(
    name: str, letters: str, flapping_at_the_end: bool
) -> None:
    answers = run(letters)
    assert answers[-1] is flapping_at_the_end, name
    if not flapping_at_the_end:
        assert not any(answers), f"{name}: flapping at run {answers.index(True) + 1}"


@pytest.mark.parametrize(
    ("history", "was_flapping", "expected"),
    [
        # Between low (10) and high (30) the previous answer stands.
        (with_changes(4, 8, 12, 16), False, False),
        (with_changes(4, 8, 12, 16), True, True),
        # At or above high it starts (Nagios compares with >=) ...
        (with_changes(3, 6, 9, 12, 15, 18), False, True),
        ("OC" * 10 + "O", False, True),
        ("OC" * 10 + "O", True, True),
        # ... at or below low it stops (<=).
        (with_changes(10, 11), True, False),
        ("O" * FLAP_WINDOW, True, False),
        ("O" * FLAP_WINDOW, False, False),
    ],
)
def test_hysteresis(history: str, was_flapping: bool, expected: bool) -> None:
    assert is_flapping(history, was_flapping, DEFAULT) is expected


def test_the_band_between_the_thresholds_is_where_the_answer_is_kept() -> None:
    assert DEFAULT.low_percent < percent_state_change(with_changes(4, 8, 12, 16)) < 30


@pytest.mark.parametrize("was_flapping", [False, True])
@pytest.mark.parametrize(
    "history",
    [
        "",
        "-" * FLAP_WINDOW,
        "OC" * 4 + "O",  # 9 runs
        "O-C-O-C-O-C-O-C-O",  # 17 runs, 9 judged
        "-" * 12 + "OCOCOCOCO",
    ],
)
def test_too_little_evidence_keeps_the_previous_answer(history: str, was_flapping: bool) -> None:
    assert len(history.replace("-", "")) < MIN_JUDGED_RUNS
    assert is_flapping(history, was_flapping, DEFAULT) is was_flapping


@pytest.mark.parametrize("was_flapping", [False, True])
def test_enough_evidence_decides(was_flapping: bool) -> None:
    assert is_flapping("OC" * 5, was_flapping, DEFAULT) is True
    assert is_flapping("O" * MIN_JUDGED_RUNS, was_flapping, DEFAULT) is False


def test_equal_thresholds_stop_flapping_as_in_nagios() -> None:
    policy = FlapPolicy(high_percent=10.0, low_percent=10.0)
    assert is_flapping(with_changes(10, 11), True, policy) is False


@pytest.mark.parametrize(("low", "high"), [(30.0, 10.0), (-1.0, 10.0), (10.0, 101.0)])
def test_thresholds_out_of_order_are_refused(low: float, high: float) -> None:
    with pytest.raises(ValueError, match="flap thresholds"):
        FlapPolicy(high_percent=high, low_percent=low)


def test_the_policy_is_a_frozen_value() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.high_percent = 1.0  # type: ignore[misc]


# --- push_history and failed_runs --------------------------------------------


@pytest.mark.parametrize(
    ("history", "state", "expected"),
    [
        ("", "O", "O"),
        ("OC", "-", "OC-"),
        ("O" * (FLAP_WINDOW - 1), "C", "O" * (FLAP_WINDOW - 1) + "C"),
        ("W" + "O" * (FLAP_WINDOW - 1), "C", "O" * (FLAP_WINDOW - 1) + "C"),
        ("W" * 40, "U", "W" * (FLAP_WINDOW - 1) + "U"),
    ],
)
def test_push_history(history: str, state: str, expected: str) -> None:
    assert push_history(history, state) == expected


@pytest.mark.parametrize("state", ["", "X", "OK", "o", "CC"])
def test_push_history_refuses_what_is_not_one_run(state: str) -> None:
    with pytest.raises(ValueError, match="letter"):
        push_history("O", state)


def test_every_status_has_a_distinct_letter() -> None:
    assert set(STATUS_LETTERS) == set(Status)
    assert sorted(STATUS_LETTERS.values()) == sorted(STATES)


@pytest.mark.parametrize(
    ("history", "problem_letters", "expected"),
    [
        ("", "C", (0, 0)),
        ("-" * 5, "C", (0, 0)),
        ("OCOC", "C", (2, 4)),
        ("OWCU", "WCU", (3, 4)),
        ("OWCU", "CU", (2, 4)),
        # A consequence run neither failed nor counts in the total.
        ("C-C-O", "C", (2, 3)),
        ("C-C-O", "C-", (2, 3)),
        # Only the window.
        ("C" * 10 + "O" * FLAP_WINDOW, "C", (0, FLAP_WINDOW)),
        ("CO" * 20, "C", (10, FLAP_WINDOW)),
    ],
)
def test_failed_runs(history: str, problem_letters: str, expected: tuple[int, int]) -> None:
    assert failed_runs(history, problem_letters) == expected


# --- properties --------------------------------------------------------------

histories = st.text(alphabet=LETTERS, max_size=3 * FLAP_WINDOW)


@given(histories)
def test_percent_is_between_0_and_100(history: str) -> None:
    assert 0.0 <= percent_state_change(history) <= 100.0


@given(st.text(max_size=3 * FLAP_WINDOW))
def test_percent_is_between_0_and_100_whatever_the_state_file_holds(history: str) -> None:
    assert 0.0 <= percent_state_change(history) <= 100.0


@given(st.text(alphabet=LETTERS, min_size=FLAP_WINDOW, max_size=3 * FLAP_WINDOW), st.booleans())
def test_only_the_runs_push_history_keeps_count(history: str, was: bool) -> None:
    kept = history[-FLAP_WINDOW:]
    assert percent_state_change(history) == percent_state_change(kept)
    assert is_flapping(history, was, DEFAULT) is is_flapping(kept, was, DEFAULT)
    assert failed_runs(history, "WCU") == failed_runs(kept, "WCU")


@given(st.sampled_from(STATES), st.lists(st.booleans(), max_size=3 * FLAP_WINDOW))
def test_a_constant_history_gives_0(state: str, dashes: list[bool]) -> None:
    history = "".join("-" if dash else state for dash in dashes)
    assert percent_state_change(history) == 0.0
    assert not any(run(history))


@given(histories, st.sampled_from(LETTERS))
def test_push_history_keeps_the_last_window(history: str, state: str) -> None:
    pushed = push_history(history, state)
    assert len(pushed) <= FLAP_WINDOW
    assert pushed == (history + state)[-FLAP_WINDOW:]


@given(st.lists(st.sampled_from(LETTERS), max_size=4 * FLAP_WINDOW))
def test_pushing_run_after_run_never_grows_past_the_window(letters: list[str]) -> None:
    history = ""
    for letter in letters:
        history = push_history(history, letter)
        assert len(history) <= FLAP_WINDOW
    assert len(history) == min(len(letters), FLAP_WINDOW)


@given(st.sampled_from(STATES), st.sampled_from(STATES))
def test_an_alternating_history_of_21_gives_100(first: str, second: str) -> None:
    if first == second:
        second = next(s for s in STATES if s != first)
    history = (first + second) * (FLAP_WINDOW // 2) + first
    assert len(history) == FLAP_WINDOW
    assert percent_state_change(history) == 100.0


@given(histories, st.booleans())
def test_between_the_thresholds_the_previous_answer_stands(history: str, was: bool) -> None:
    percent = percent_state_change(history)
    judged = len(history[-FLAP_WINDOW:].replace("-", ""))
    answer = is_flapping(history, was, DEFAULT)
    if judged < MIN_JUDGED_RUNS or DEFAULT.low_percent < percent < DEFAULT.high_percent:
        assert answer is was
    else:
        assert answer is (percent >= DEFAULT.high_percent)
