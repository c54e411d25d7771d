"""Table tests of the alerting rules: `decide(previous, results, now, policy)`.

Each test drives a scripted sequence of runs, one a minute on a controlled clock,
feeding the state each run returns into the next, and asserts which run texted what.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from check_status.alerting.rules import (
    AlertState,
    CheckRecord,
    Incident,
    Kind,
    Notification,
    Policy,
    Silence,
    alert_state_from_json,
    alert_state_to_json,
    decide,
    explain,
    parse_duration,
)
from check_status.model import CheckResult, Status

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
OK, WARN, CRIT, UNKNOWN = Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN
# A consequence: head_block cannot be judged while nodeos is unreachable.
CONSEQUENCE = "consequence"

Run = Sequence[CheckResult]


def at(minute: float) -> datetime:
    return START + timedelta(minutes=minute)


def result(status: Status | str, name: str = "nodeos", summary: str | None = None) -> CheckResult:
    if status == CONSEQUENCE:
        return CheckResult(name, UNKNOWN, "nodeos unreachable", caused_by="nodeos")
    assert isinstance(status, Status)
    return CheckResult(name, status, summary or f"{name} is {status.name}")


def runs_of(statuses: Iterable[Status | str], name: str = "nodeos") -> list[Run]:
    """One check's status in successive runs."""
    return [[result(s, name)] for s in statuses]


def drive(
    runs: Sequence[Run],
    policy: Policy,
    *,
    state: AlertState | None = None,
    times: Sequence[datetime] | None = None,
) -> tuple[AlertState, list[list[Notification]]]:
    """Run `decide` once per run (a minute apart unless `times` is given)."""
    state = state if state is not None else AlertState()
    times = times if times is not None else [at(i) for i in range(len(runs))]
    assert len(times) == len(runs)
    per_run: list[list[Notification]] = []
    for now, results in zip(times, runs, strict=True):
        state, notes = decide(state, results, now, policy)
        per_run.append(notes)
    return state, per_run


def sent(per_run: Sequence[Sequence[Notification]]) -> dict[int, list[str]]:
    """{run index: [kinds texted]} for the runs that texted anything."""
    return {i: [n.kind.value for n in notes] for i, notes in enumerate(per_run) if notes}


def sent_for(per_run: Sequence[Sequence[Notification]], check: str) -> dict[int, list[str]]:
    return sent([[n for n in notes if n.check == check] for notes in per_run])


def policy(level: Status = WARN, after: int = 2, remind: int = 60) -> Policy:
    return Policy(alert_level=level, alert_after=after, remind_every_minutes=remind)


# --- when a problem is texted ---------------------------------------------------


@pytest.mark.parametrize("alert_after", [1, 2, 3])
@pytest.mark.parametrize("failing_runs", [1, 2, 3, 4, 6])
def test_problem_goes_out_on_the_alert_after_th_failing_run(
    alert_after: int, failing_runs: int
) -> None:
    runs = runs_of([OK, *[CRIT] * failing_runs])
    _, per_run = drive(runs, policy(after=alert_after))
    expected = {alert_after: ["PROBLEM"]} if failing_runs >= alert_after else {}
    assert sent(per_run) == expected


@pytest.mark.parametrize("alert_after", [1, 2, 3])
def test_problem_notification_names_the_first_failing_run(alert_after: int) -> None:
    runs = runs_of([OK, OK, *[CRIT] * alert_after])
    _, per_run = drive(runs, policy(after=alert_after))
    (problem,) = per_run[-1]
    assert problem.kind is Kind.PROBLEM
    assert problem.status is CRIT
    assert problem.since == at(2)
    assert problem.at == at(1 + alert_after)


@pytest.mark.parametrize(
    ("alert_after", "statuses"),
    [
        (2, [OK, CRIT, OK, OK]),
        (2, [OK, CRIT, OK, CRIT, OK, CRIT, OK]),  # flapping before it ever became an incident
        (2, [OK, WARN, OK, UNKNOWN, OK, CRIT, OK]),
        (3, [OK, CRIT, CRIT, OK, CRIT, CRIT, OK]),
    ],
)
def test_failing_runs_interrupted_by_ok_never_text(
    alert_after: int, statuses: list[Status]
) -> None:
    _, per_run = drive(runs_of(statuses), policy(after=alert_after))
    assert sent(per_run) == {}


# --- ALERT_LEVEL ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "statuses", "expected"),
    [
        (CRIT, [WARN] * 10, {}),
        (CRIT, [WARN, WARN, CRIT, CRIT], {3: ["PROBLEM"]}),
        (CRIT, [CRIT, WARN, CRIT, WARN], {}),  # a WARNING breaks the run of failures
        (CRIT, [UNKNOWN] * 10, {}),  # UNKNOWN ranks below CRITICAL
        (WARN, [WARN, WARN], {1: ["PROBLEM"]}),
        (WARN, [UNKNOWN, UNKNOWN], {1: ["PROBLEM"]}),
        (WARN, [WARN, UNKNOWN], {1: ["PROBLEM"]}),
        (WARN, [OK] * 10, {}),
    ],
)
def test_alert_level(level: Status, statuses: list[Status], expected: dict[int, list[str]]) -> None:
    _, per_run = drive(runs_of(statuses), policy(level=level))
    assert sent(per_run) == expected


def test_unknown_that_is_not_a_consequence_is_texted_with_its_status() -> None:
    _, per_run = drive(runs_of([UNKNOWN, UNKNOWN]), policy(level=WARN))
    assert [(n.kind, n.status) for n in per_run[1]] == [(Kind.PROBLEM, UNKNOWN)]


# --- escalation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([WARN, WARN, CRIT], {1: ["PROBLEM"], 2: ["ESCALATION"]}),
        ([WARN, WARN, WARN, CRIT, CRIT, CRIT], {1: ["PROBLEM"], 3: ["ESCALATION"]}),
        ([CRIT, CRIT, WARN, WARN, WARN], {1: ["PROBLEM"]}),  # a move down says nothing
        (
            [WARN, WARN, CRIT, WARN, CRIT, WARN, CRIT],
            {1: ["PROBLEM"], 2: ["ESCALATION"]},
        ),
        ([WARN, CRIT], {1: ["PROBLEM"]}),  # the first text already says CRITICAL
    ],
)
def test_escalation(statuses: list[Status], expected: dict[int, list[str]]) -> None:
    _, per_run = drive(runs_of(statuses), policy(level=WARN, remind=0))
    assert sent(per_run) == expected


def test_escalation_carries_the_new_status_and_the_original_since() -> None:
    _, per_run = drive(runs_of([OK, WARN, WARN, WARN, CRIT]), policy(remind=0))
    (escalation,) = per_run[4]
    assert escalation.kind is Kind.ESCALATION
    assert escalation.status is CRIT
    assert escalation.since == at(1)


# --- reminders ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remind", "reminder_minutes"),
    [
        (15, [16, 31, 46]),
        (20, [21, 41]),
        (30, [31]),
        (60, []),
        (0, []),
        (1, list(range(2, 61))),
    ],
)
def test_reminders_over_a_61_minute_incident(remind: int, reminder_minutes: list[int]) -> None:
    # Failing at minutes 0..60 (61 runs); ALERT_AFTER=2 texts the PROBLEM at minute 1.
    _, per_run = drive(runs_of([CRIT] * 61), policy(after=2, remind=remind))
    expected = {1: ["PROBLEM"]} | {m: ["REMINDER"] for m in reminder_minutes}
    assert sent(per_run) == expected
    for minute in reminder_minutes:
        (reminder,) = per_run[minute]
        assert reminder.since == at(0)
        assert reminder.at == at(minute)


def test_escalation_restarts_the_reminder_timer() -> None:
    statuses = [WARN, WARN, *[WARN] * 9, *[CRIT] * 20]  # CRITICAL from minute 11
    _, per_run = drive(runs_of(statuses), policy(remind=15))
    assert sent(per_run) == {1: ["PROBLEM"], 11: ["ESCALATION"], 26: ["REMINDER"]}


# --- recovery -------------------------------------------------------------------


@pytest.mark.parametrize("alert_after", [1, 2, 3])
def test_recovery_after_alert_after_ok_runs(alert_after: int) -> None:
    statuses = [OK, *[CRIT] * alert_after, *[OK] * (alert_after + 3)]
    _, per_run = drive(runs_of(statuses), policy(after=alert_after, remind=0))
    first_ok = 1 + alert_after
    recovery_run = first_ok + alert_after - 1
    assert sent(per_run) == {alert_after: ["PROBLEM"], recovery_run: ["RECOVERY"]}
    (recovery,) = per_run[recovery_run]
    assert recovery.since == at(1)  # the first failing run
    assert recovery.ended == at(first_ok)  # the first OK run
    assert recovery.at == at(recovery_run)


def test_recovery_closes_the_incident() -> None:
    state, per_run = drive(runs_of([CRIT, CRIT, OK, OK]), policy())
    assert sent(per_run) == {1: ["PROBLEM"], 3: ["RECOVERY"]}
    assert state.checks["nodeos"].incident is None
    # A new problem afterwards is a new incident, texted again.
    _, later = drive(runs_of([CRIT, CRIT]), policy(), state=state, times=[at(10), at(11)])
    assert sent(later) == {1: ["PROBLEM"]}
    assert later[1][0].since == at(10)


def test_flapping_keeps_one_incident_and_recovers_once() -> None:
    opening = [CRIT, CRIT]
    flapping = [OK, CRIT] * 10  # 20 runs, never two OK in a row
    statuses = [*opening, *flapping, *[OK] * 30]
    _, per_run = drive(runs_of(statuses), policy(after=2, remind=60))
    texted = sent(per_run)
    assert list(texted.values()) == [["PROBLEM"], ["RECOVERY"]]
    # The recovery waits until the check is stable, not just ALERT_AFTER OK runs.
    (recovered_at,) = [i for i, kinds in texted.items() if kinds == ["RECOVERY"]]
    assert recovered_at > 23
    assert per_run[recovered_at][0].since == at(0)


@pytest.mark.parametrize(
    ("alert_after", "statuses"),
    [
        (2, [CRIT, OK, OK, OK]),
        (3, [CRIT, CRIT, OK, OK, OK, OK]),
        (3, [WARN, UNKNOWN, OK, OK, OK]),
    ],
)
def test_no_recovery_for_a_problem_shorter_than_alert_after(
    alert_after: int, statuses: list[Status]
) -> None:
    _, per_run = drive(runs_of(statuses), policy(after=alert_after))
    assert sent(per_run) == {}


def test_below_alert_level_neither_opens_nor_recovers() -> None:
    # ALERT_LEVEL=CRITICAL: an incident drifting to WARNING is not yet recovered...
    statuses = [CRIT, CRIT, WARN, WARN, WARN, WARN, OK, OK]
    _, per_run = drive(runs_of(statuses), policy(level=CRIT, remind=0))
    # ...and recovers only after two OK runs.
    assert sent(per_run) == {1: ["PROBLEM"], 7: ["RECOVERY"]}


# --- consequences ---------------------------------------------------------------


def test_consequence_never_opens_or_texts() -> None:
    runs = [
        [result(CRIT, "nodeos", "connection refused"), result(CONSEQUENCE, "head_block")]
        for _ in range(30)
    ]
    state, per_run = drive(runs, policy(after=2, remind=15))
    assert sent_for(per_run, "head_block") == {}
    assert sent_for(per_run, "nodeos") != {}  # the cause itself does text
    record = state.checks["head_block"]
    assert record.incident is None
    assert record.problem_runs == 0


def test_consequence_never_closes_or_reminds_an_open_incident() -> None:
    opening = runs_of([CRIT, CRIT], "head_block")
    consequences = runs_of([CONSEQUENCE] * 30, "head_block")
    state, per_run = drive([*opening, *consequences], policy(after=1, remind=15))
    assert sent(per_run) == {0: ["PROBLEM"]}
    assert state.checks["head_block"].incident is not None
    assert state.checks["head_block"].incident.notified_status is CRIT


@pytest.mark.parametrize(
    "before",
    [
        [CRIT],  # building towards an incident
        [CRIT, CRIT],  # incident open, texted
        [CRIT, CRIT, OK],  # recovering
        [OK, OK],
    ],
)
def test_consequence_leaves_the_record_as_it_was(before: list[Status]) -> None:
    state, _ = drive(runs_of(before, "head_block"), policy())
    after, notes = decide(state, runs_of([CONSEQUENCE], "head_block")[0], at(30), policy())
    assert notes == []
    # Only its history grows, by a run that is no evidence.
    record = after.checks["head_block"]
    assert record.history == state.checks["head_block"].history + "-"
    assert replace(record, history="") == replace(state.checks["head_block"], history="")


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        # The runs either side of a consequence are still consecutive.
        ([CRIT, CONSEQUENCE, CRIT], {2: ["PROBLEM"]}),
        ([CRIT, CRIT, OK, CONSEQUENCE, OK], {1: ["PROBLEM"], 4: ["RECOVERY"]}),
    ],
)
def test_consequence_is_no_evidence_either_way(
    statuses: list[Status | str], expected: dict[int, list[str]]
) -> None:
    _, per_run = drive(runs_of(statuses, "head_block"), policy(after=2))
    assert sent(per_run) == expected


def test_consequence_does_not_count_as_ok() -> None:
    # Told about head_block; then only consequences for 30 runs: no recovery.
    statuses = [CRIT, CRIT, *[CONSEQUENCE] * 30]
    state, per_run = drive(runs_of(statuses, "head_block"), policy(after=2))
    assert [k for kinds in sent(per_run).values() for k in kinds] == ["PROBLEM"]
    assert state.checks["head_block"].ok_runs == 0


# --- silences -------------------------------------------------------------------


def silenced_state(*checks: str, until_minute: float, reason: str = "upgrade") -> AlertState:
    return AlertState(silences=(Silence(tuple(checks), at(until_minute), reason, START),))


@pytest.mark.parametrize(
    ("silence_checks", "check", "covered"),
    [
        ((), "nodeos", True),
        ((), "endpoint:eu.example.io", True),
        (("nodeos",), "nodeos", True),
        (("nodeos",), "head_block", False),
        (("endpoint:*",), "endpoint:eu.example.io", True),
        (("endpoint:*",), "endpoint:10.0.0.5:8888", True),
        (("endpoint:*",), "nodeos", False),
        (("disk:*", "nodeos"), "nodeos", True),
        (("disk:/srv",), "disk:/srv/data", False),
    ],
)
def test_silence_covers(silence_checks: tuple[str, ...], check: str, covered: bool) -> None:
    state = silenced_state(*silence_checks, until_minute=30)
    _, per_run = drive(runs_of([CRIT] * 10, check), policy(), state=state)
    assert sent(per_run) == ({} if covered else {1: ["PROBLEM"]})


def test_per_check_silence_leaves_the_other_checks_texting() -> None:
    state = silenced_state("endpoint:*", until_minute=30)
    runs = [
        [result(CRIT, "endpoint:eu.example.io"), result(CRIT, "nodeos")],
        [result(CRIT, "endpoint:eu.example.io"), result(CRIT, "nodeos")],
    ]
    _, per_run = drive(runs, policy(), state=state)
    assert [(n.kind, n.check) for n in per_run[1]] == [(Kind.PROBLEM, "nodeos")]
    assert per_run[0] == []


@pytest.mark.parametrize("silence_checks", [(), ("nodeos",), ("node*",)])
def test_problem_still_there_when_the_silence_ends_texts_once(
    silence_checks: tuple[str, ...],
) -> None:
    state = silenced_state(*silence_checks, until_minute=10)
    _, per_run = drive(runs_of([CRIT] * 40), policy(remind=60), state=state)
    # Minute 10 is the first run past the end; it ends at the second, minute 11.
    assert sent(per_run) == {11: ["SILENCE_ENDED"]}
    (ended,) = per_run[11]
    assert ended.since == at(0)
    assert ended.status is CRIT


def test_problem_texted_before_the_silence_and_still_there_after_it() -> None:
    # Texted at minute 1; silenced from minute 5 to 20; still failing: one SILENCE_ENDED.
    state, first = drive(runs_of([CRIT] * 5), policy(remind=0))
    state = AlertState(state.checks, (Silence((), at(20), "replay", at(5)),))
    times = [at(m) for m in range(5, 40)]
    _, per_run = drive(runs_of([CRIT] * 35), policy(remind=0), state=state, times=times)
    assert sent(first) == {1: ["PROBLEM"]}
    assert sent(per_run) == {16: ["SILENCE_ENDED"]}  # minute 21, the second run past its end


def test_no_reminders_during_a_silence() -> None:
    state, first = drive(runs_of([CRIT] * 5), policy(remind=15))
    state = AlertState(state.checks, (Silence((), at(65), "resync", at(5)),))
    times = [at(m) for m in range(5, 65)]
    _, per_run = drive(runs_of([CRIT] * 60), policy(remind=15), state=state, times=times)
    assert sent(first) == {1: ["PROBLEM"]}
    assert sent(per_run) == {}


@pytest.mark.parametrize(
    "statuses",
    [
        [CRIT] * 5 + [OK] * 5,  # fully recovered inside the silence
        [CRIT] * 5 + [OK],  # the second OK run comes just after the silence
    ],
)
def test_problem_that_started_and_ended_inside_the_silence_texts_nothing(
    statuses: list[Status],
) -> None:
    state = silenced_state(until_minute=len(statuses))
    after = [OK] * 10
    state, per_run = drive(runs_of([*statuses, *after]), policy(), state=state)
    assert sent(per_run) == {}
    assert state.checks["nodeos"].incident is None


def test_problem_that_returns_just_after_the_silence_is_texted() -> None:
    # Failing through a silence that ends at minute 10; OK exactly at minute 10; failing
    # again from minute 11 on. Somebody must hear about it.
    state = silenced_state(until_minute=10)
    statuses = [*[CRIT] * 10, OK, *[CRIT] * 30]
    _, per_run = drive(runs_of(statuses), policy(after=2, remind=60), state=state)
    kinds = [k for kinds in sent(per_run).values() for k in kinds]
    assert kinds in (["PROBLEM"], ["SILENCE_ENDED"])


def test_recovery_during_the_silence_is_sent_after_it() -> None:
    # Texted at minute 1; silenced 3..10; OK from minute 5: the RECOVERY is caught up at 11,
    # the second run past the silence's end.
    state, first = drive(runs_of([CRIT, CRIT, CRIT]), policy(remind=0))
    state = AlertState(state.checks, (Silence((), at(10), "upgrade", at(3)),))
    times = [at(m) for m in range(3, 20)]
    statuses = [CRIT, CRIT, *[OK] * 15]  # minutes 3, 4 failing; OK from 5
    state, per_run = drive(runs_of(statuses), policy(remind=0), state=state, times=times)
    assert sent(first) == {1: ["PROBLEM"]}
    assert sent(per_run) == {8: ["RECOVERY"]}  # minute 11
    (recovery,) = per_run[8]
    assert recovery.since == at(0)
    assert recovery.ended == at(5)
    assert state.checks["nodeos"].incident is None


def test_problem_only_during_a_silence_never_recovers() -> None:
    state = silenced_state("nodeos", until_minute=8)
    statuses = [*[CRIT] * 5, *[OK] * 10]
    _, per_run = drive(runs_of(statuses), policy(), state=state)
    assert sent(per_run) == {}


@pytest.mark.parametrize(
    ("minute", "kept"),
    [(4, True), (4.99, True), (5, False), (100, False)],
)
def test_expired_silences_are_dropped(minute: float, kept: bool) -> None:
    """A silence ends when two runs in a row see its end passed, not one."""
    silence = Silence((), at(5), "upgrade", START)
    other = Silence(("nodeos",), at(60 * 24), "long", START)
    state, _ = decide(AlertState(silences=(silence, other)), [result(OK)], at(minute), policy())
    if kept:
        assert state.silences == (silence, other)
        return
    # The first run past the end keeps it, marked; the next run past the end drops it.
    assert state.silences == (replace(silence, end_seen=True), other)
    assert state.silences[0].covers("nodeos", at(minute))
    state, _ = decide(state, [result(OK)], at(minute + 1), policy())
    assert state.silences == (other,)


def test_a_clock_that_jumps_hours_ahead_for_one_run_ends_no_silence() -> None:
    # A 2 h maintenance silence from minute 0; a failing check texted nothing so far.
    state = silenced_state(until_minute=120)
    times = [at(m) for m in range(0, 10)] + [at(10 + 180)] + [at(m) for m in range(11, 30)]
    state, per_run = drive(
        runs_of([CRIT] * len(times)), policy(remind=60), state=state, times=times
    )
    assert sent(per_run) == {}  # no "(silence over)" during the maintenance
    assert [s.until for s in state.silences] == [at(120)]
    assert not state.silences[0].end_seen


# --- the clock ------------------------------------------------------------------


def test_clock_jumping_back_an_hour_sends_no_extra_notifications() -> None:
    before = [at(m) for m in range(0, 21)]  # minutes 0..20
    after = [at(m - 60) for m in range(20, 60)]  # the clock is back an hour, 40 runs
    times = [*before, *after]
    _, per_run = drive(runs_of([CRIT] * len(times)), policy(remind=15), times=times)
    texted = sent(per_run)
    kinds = [k for ks in texted.values() for k in ks]
    assert kinds.count("PROBLEM") == 1
    assert "RECOVERY" not in kinds
    # Reminders keep a 15-run spacing across the jump: no storm, no hour-long gap.
    indices = [i for i, ks in texted.items() if ks == ["REMINDER"]]
    assert all(b - a >= 15 for a, b in zip([1, *indices], indices, strict=False))
    assert len([i for i in indices if i > 20]) == 2  # 40 runs after the jump


def test_clock_jumping_back_does_not_fake_a_recovery() -> None:
    times = [at(0), at(1), at(2), at(-58), at(-57), at(-56)]
    _, per_run = drive(runs_of([CRIT] * 6), policy(remind=0), times=times)
    assert sent(per_run) == {1: ["PROBLEM"]}


# --- checks that disappear ------------------------------------------------------


def test_a_check_no_longer_run_is_forgotten_quietly() -> None:
    endpoint = "endpoint:eu.example.io"
    both = [result(CRIT, "nodeos"), result(CRIT, endpoint)]
    state, per_run = drive([both, both], policy())
    assert set(state.checks) == {"nodeos", endpoint}
    assert len(per_run[1]) == 2
    state, notes = decide(state, [result(CRIT, "nodeos")], at(2), policy())
    assert notes == []
    assert set(state.checks) == {"nodeos"}


# --- the state file -------------------------------------------------------------


def test_alert_state_round_trips_through_json() -> None:
    state = AlertState(
        checks={
            "nodeos": CheckRecord(
                problem_runs=4,
                ok_runs=0,
                problem_since=at(0),
                incident=Incident(at(0), CRIT, at(1), "connection refused"),
            ),
            "endpoint:eu.example.io": CheckRecord(
                problem_runs=0,
                ok_runs=1,
                problem_since=at(2),
                ok_since=at(7),
                incident=Incident(at(2), None, None, "HTTP 503", silenced=True),
            ),
            "disk:/": CheckRecord(problem_runs=1, problem_since=at(7)),
            "head_block": CheckRecord(ok_runs=12),
        },
        silences=(
            Silence((), at(60), "upgrade to spring 1.1", at(-5)),
            Silence(("endpoint:*", "disk:/"), at(120), "LB work", at(3)),
        ),
    )
    text = json.dumps(alert_state_to_json(state))
    assert alert_state_from_json(json.loads(text)) == state


def test_decisions_are_the_same_through_the_state_file() -> None:
    statuses = [OK, CRIT, CRIT, WARN, CRIT, *[CRIT] * 20, OK, CRIT, OK, OK, OK]
    silence = Silence(("disk:*",), at(12), "resize", START)
    in_memory = AlertState(silences=(silence,))
    persisted = in_memory
    pol = policy(remind=10)
    for minute, status in enumerate(statuses):
        results = [result(status, "nodeos"), result(status, "disk:/")]
        in_memory, expected = decide(in_memory, results, at(minute), pol)
        persisted, notes = decide(persisted, results, at(minute), pol)
        persisted = alert_state_from_json(json.loads(json.dumps(alert_state_to_json(persisted))))
        assert notes == expected
        assert persisted == in_memory


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        [],
        "alerts",
        42,
        {},
        {"checks": None, "silences": None},
        {"checks": {"x": "bad"}},
        {"checks": {"x": {"problem_runs": "many"}}},
        {"checks": {"x": {"incident": {"opened_at": "yesterday"}}}},
        {
            "checks": {
                "x": {"incident": {"opened_at": "2024-05-01T12:00:00Z", "notified_status": 7}}
            }
        },
        {"silences": [{"until": "soon"}, "bad", None, {"checks": []}]},
    ],
)
def test_alert_state_from_garbage_is_usable(garbage: object) -> None:
    state = alert_state_from_json(garbage)
    assert isinstance(state, AlertState)
    assert "x" not in state.checks
    assert state.silences == ()
    state, per_run = drive(runs_of([CRIT, CRIT]), policy(), state=state)
    assert sent(per_run) == {1: ["PROBLEM"]}


def test_alert_state_from_json_keeps_good_entries_next_to_bad_ones() -> None:
    good = alert_state_to_json(
        AlertState(
            {"nodeos": CheckRecord(problem_runs=1, problem_since=at(0))},
            (Silence((), at(30), "upgrade", START),),
        )
    )
    good["checks"]["broken"] = {"ok_runs": None}
    good["silences"].append({"until": 5})
    state = alert_state_from_json(good)
    assert set(state.checks) == {"nodeos"}
    assert len(state.silences) == 1


@pytest.mark.parametrize("garbage", [{"checks": ["x"]}, {"checks": "x"}, {"silences": 5}])
def test_alert_state_from_json_with_a_damaged_section(garbage: object) -> None:
    assert alert_state_from_json(garbage) == AlertState()


# --- durations ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45),
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        (" 2H ", 7200),
        ("30d", 30 * 86400),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "   ", "1x", "0s", "31d", "-5m", "5", "m", "1h 30", "1.5h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# --- explain --------------------------------------------------------------------


def explain_last(
    runs: Sequence[Run], pol: Policy, check: str, state: AlertState | None = None
) -> str:
    state = state if state is not None else AlertState()
    notes: list[Notification] = []
    now = START
    for i, results in enumerate(runs):
        now = at(i)
        state, notes = decide(state, results, now, pol)
    last = next(r for r in runs[-1] if r.name == check)
    return explain(state, last, notes, now, pol)


@pytest.mark.parametrize(
    ("runs", "pol", "silences", "expected"),
    [
        (
            [[result(CRIT, "nodeos"), result(CONSEQUENCE, "head_block")]],
            policy(),
            (),
            "not texted: consequence of nodeos",
        ),
        (
            runs_of([WARN], "head_block"),
            policy(level=CRIT),
            (),
            "not texted: below ALERT_LEVEL=CRITICAL",
        ),
        (
            runs_of([CRIT, CRIT], "head_block"),
            policy(),
            (Silence((), at(30), "upgrade", START),),
            "silenced until 2024-05-01T12:30:00Z (upgrade)",
        ),
        (
            runs_of([CRIT], "head_block"),
            policy(after=2),
            (),
            "not texted yet: 1 of 2 failing runs",
        ),
        (runs_of([CRIT, CRIT], "head_block"), policy(after=2), (), "texted (problem)"),
        (
            runs_of([CRIT, CRIT, CRIT], "head_block"),
            policy(remind=15),
            (),
            "texted at 2024-05-01T12:01:00Z; next reminder at 2024-05-01T12:16:00Z",
        ),
        (
            runs_of([CRIT, CRIT, CRIT], "head_block"),
            policy(remind=0),
            (),
            "texted at 2024-05-01T12:01:00Z; reminders off",
        ),
    ],
)
def test_explain(
    runs: list[Run], pol: Policy, silences: tuple[Silence, ...], expected: str
) -> None:
    assert explain_last(runs, pol, "head_block", AlertState(silences=silences)) == expected
