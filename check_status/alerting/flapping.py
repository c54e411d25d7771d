"""Flap detection: is a check going up and down too often to text each change?

Nagios's rule, as in its base/flapping.c (check_for_service_flapping):

- keep the states of the last FLAP_WINDOW (21) runs, so 20 possible changes;
- weight each change by how recent it is, linearly from 0.75 for the oldest
  possible change to 1.25 for the newest (the weights average exactly 1, so a
  state change in every run gives 100%);
- the percent state change is the sum of the weights of the changes seen, out
  of the 20 possible;
- a check starts flapping at or above the high threshold and stops at or below
  the low one; in between it keeps its previous answer (hysteresis), so a check
  near one threshold does not start and stop flapping, and text, every other run.

The history is a plain str kept in the state file, one letter per run, oldest
first: "O" OK, "W" WARNING, "C" CRITICAL, "U" UNKNOWN, "-" no evidence (the
result was a consequence of another failing check). Any two consecutive judged
runs with different letters are a change, so CRITICAL/WARNING alternation flaps
too: with ALERT_LEVEL=CRITICAL that check would otherwise never page.
"""

from __future__ import annotations

from dataclasses import dataclass

from check_status.model import Status

FLAP_WINDOW = 21  # runs kept: Nagios's MAX_STATE_HISTORY_ENTRIES
NO_EVIDENCE = "-"
STATUS_LETTERS = {
    Status.OK: "O",
    Status.WARNING: "W",
    Status.CRITICAL: "C",
    Status.UNKNOWN: "U",
}
_LETTERS = frozenset(STATUS_LETTERS.values()) | {NO_EVIDENCE}

# Fewer judged runs than this and the answer stays what it was: a fresh state
# file, a check just added or one that was a consequence for most of the window
# has too little evidence to start flapping, or to stop. Ten is about half the
# window: enough to see a check going down every 2 minutes go down five times.
MIN_JUDGED_RUNS = 10

# Nagios's curve (low_curve_value 0.75, high_curve_value 1.25), in whole
# units of 1/76 (0.75 = 57/76, each step 2/76, 1.25 = 95/76), so that the sum
# is exact: a history changing every run gives exactly 100, none exactly 0.
# (Integers, not fractions.Fraction: its import costs every cron run 12 ms.)
_UNITS_PER_WEIGHT = 76
_OLDEST_WEIGHT = 57
_STEP = 2
_POSSIBLE_CHANGES = FLAP_WINDOW - 1


@dataclass(frozen=True)
class FlapPolicy:
    """Thresholds on the percent state change, 0..100.

    Each change weighs 3.75 to 6.25 points, so 20% is about four changes in
    the last 21 runs. That catches a check down every other run (100%), down
    2 up 2 (49-51%), down 3 up 3 (30-35%) and down 4 up 4 (24-26%), which would
    otherwise text a PROBLEM and a RECOVERY every few minutes. One outage stays
    below (at most 12%). An outage with one OK run inside it, or two outages ten
    minutes apart, may reach it (19-24%): that keeps the first incident open
    instead of texting a second one, and delays its RECOVERY until the check is
    stable, which is the lesser harm at 2 am.

    10% is about two changes: flapping stops once the check has kept one state
    for most of the window, and the gap keeps it from stopping and starting
    again, with a text each time, while it still flaps.
    """

    high_percent: float = 20.0
    low_percent: float = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.low_percent <= self.high_percent <= 100:
            raise ValueError(
                f"flap thresholds need 0 <= low ({self.low_percent}) "
                f"<= high ({self.high_percent}) <= 100"
            )


def push_history(history: str, state: str) -> str:
    """Append one run's state letter, keep the last FLAP_WINDOW."""
    if state not in _LETTERS:
        raise ValueError(f"not a run's letter: {state!r} (one of O, W, C, U, -)")
    return (history + state)[-FLAP_WINDOW:]


def percent_state_change(history: str) -> float:
    """Nagios's weighted percent state change of a history string, 0..100.

    A "-" run is no evidence either way: it is taken to be in the state last
    seen, so the letters on either side of it are compared and no change is
    counted into or out of it. A history shorter than the window is padded on
    the old side with its first judged state, as Nagios fills the history of a
    new check with its first state: a short history shows only the changes seen.
    """
    states = _judged_states(history[-FLAP_WINDOW:])
    if not states:
        return 0.0
    states = [states[0]] * (FLAP_WINDOW - len(states)) + states
    weight = 0
    for position in range(1, FLAP_WINDOW):
        if states[position] != states[position - 1]:
            weight += _weight(position)
    return weight * 100 / (_POSSIBLE_CHANGES * _UNITS_PER_WEIGHT)


def is_flapping(history: str, was_flapping: bool, policy: FlapPolicy) -> bool:
    """Hysteresis: start at or above high, stop at or below low, else as before.

    With fewer than MIN_JUDGED_RUNS judged runs in the window the answer stays
    was_flapping: too little evidence to change it either way.
    """
    if judged_runs(history) < MIN_JUDGED_RUNS:
        return was_flapping
    percent = percent_state_change(history)
    # Low before high, as in Nagios: with equal thresholds a check stops flapping.
    if percent <= policy.low_percent:
        return False
    if percent >= policy.high_percent:
        return True
    return was_flapping


def failed_runs(history: str, problem_letters: str) -> tuple[int, int]:
    """(runs whose letter is in problem_letters, runs in history), for the text
    'failed 10 of the last 20 runs'.

    Both count judged runs in the window only: a "-" run neither failed nor
    passed, and counting it in the total would make a check look healthier.
    """
    window = history[-FLAP_WINDOW:]
    failed = sum(1 for letter in window if letter != NO_EVIDENCE and letter in problem_letters)
    return failed, judged_runs(window)


def judged_runs(history: str) -> int:
    """Runs in the window whose result was evidence (not "-")."""
    window = history[-FLAP_WINDOW:]
    return len(window) - window.count(NO_EVIDENCE)


def _judged_states(window: str) -> list[str]:
    """The window with each "-" replaced by the state last seen, leading ones dropped."""
    states: list[str] = []
    for letter in window:
        if letter != NO_EVIDENCE:
            states.append(letter)
        elif states:
            states.append(states[-1])
    return states


def _weight(position: int) -> int:
    """Weight of the change between runs position-1 and position of a full window.

    Linear from the oldest possible change (position 1) to the newest (20): the
    same expression as Nagios's, ((x - 1) * (high - low) / 19) + low, in units
    of 1/76.
    """
    return _OLDEST_WEIGHT + (position - 1) * _STEP
