"""Property tests of the whole alerting pipeline (issue 6), as the runner drives it:

    rules.decide -> delivery.enqueue -> render_for -> (Twilio) -> apply_outcomes

over any sequence of 1 to 60 runs. The alert state and the outbox go through the
state file's JSON between runs, as in the runner. Twilio is simulated per run and
per recipient: delivery works this run or not (pending), and one recipient may be
permanently invalid (21211: failed for good whenever Twilio is reached).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from check_status.alerting.flapping import FlapPolicy
from check_status.alerting.rules import (
    NEWS_OF_A_PROBLEM,
    AlertState,
    Kind,
    Notification,
    Policy,
    Silence,
    alert_state_from_json,
    alert_state_to_json,
    decide,
    refused_for_good,
)
from check_status.alerting.sms import HARD_LIMIT
from check_status.delivery import (
    Outcome,
    apply_outcomes,
    enqueue,
    load_outbox,
    outbox_to_json,
    render_for,
)
from check_status.model import CheckResult, Status

START = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
NODE = "eu2"
CHECK_NAMES = ("nodeos", "head_block", "disk:/data")
RECIPIENTS = ("+14155550101", "+821055550102", "+15005550001")
TOLD = NEWS_OF_A_PROBLEM  # PROBLEM (also late), FLAPPING, ESCALATION, SILENCE_ENDED
STATUSES = (Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN)


@dataclass(frozen=True)
class Run:
    results: tuple[CheckResult, ...]
    minutes: int  # since the previous run: 1, or negative when the clock went back
    delivery_works: tuple[bool, ...]  # per recipient


@dataclass(frozen=True)
class SilenceAt:
    """`check-status silence CHECKS --for MINUTES` typed just before run `run`."""

    run: int
    checks: tuple[str, ...]  # empty: the whole node
    minutes: int


@dataclass(frozen=True)
class Scenario:
    policy: Policy
    checks: tuple[str, ...]
    recipients: tuple[str, ...]
    invalid: str | None  # a recipient Twilio always refuses (21211)
    silence: SilenceAt | None
    runs: tuple[Run, ...]


@st.composite
def scenarios(
    draw: st.DrawFn,
    delivery_always_works: bool = False,
    silence: bool | None = None,
    long_outage: bool = False,
) -> Scenario:
    """Any sequence of runs. `long_outage`: the first recipient cannot be reached
    until the last runs while every check flaps, so that recipient's queue passes
    its cap (MAX_QUEUED_PER_RECIPIENT) and the oldest texts must be dropped."""
    policy = Policy(
        alert_level=draw(st.sampled_from([Status.WARNING, Status.CRITICAL])),
        alert_after=1 if long_outage else draw(st.integers(1, 3)),
        remind_every_minutes=draw(st.sampled_from([0, 5, 15])),
        # A long outage needs its texts to pile up: flap detection, which would
        # hold each check's incident open, is off there (nothing is at or below 100%).
        flap=FlapPolicy(100.0, 100.0) if long_outage else FlapPolicy(),
    )
    checks = CHECK_NAMES[: 3 if long_outage else draw(st.integers(2, 3))]
    recipients = RECIPIENTS[: draw(st.integers(1, 3))]
    invalid = recipients[-1] if len(recipients) > 1 and draw(st.booleans()) else None
    count = draw(st.integers(40, 60) if long_outage else st.integers(1, 60))
    # In a long outage each check flaps on a rhythm of its own (CRITICAL one run in
    # every `period`), so the queue piles up however hypothesis shrinks it.
    rhythms = {name: (draw(st.integers(2, 4)), draw(st.integers(0, 3))) for name in checks}
    runs = []
    # Statuses last a while, as real ones do: each run a check keeps its status or,
    # now and then, takes a new one. Incidents, recoveries and silences then happen.
    current = dict.fromkeys(checks, Status.OK)
    for index in range(count):
        for name in checks:
            if long_outage:
                period, phase = rhythms[name]
                failing = (index + phase) % period == 0
                current[name] = Status.CRITICAL if failing else Status.OK
            elif draw(st.integers(0, 3)) == 0:
                current[name] = draw(st.sampled_from(STATUSES))
        results = [CheckResult("nodeos", current["nodeos"], f"nodeos {current['nodeos'].name}")]
        for name in checks[1:]:
            if current["nodeos"] is not Status.OK and draw(st.booleans()):
                results.append(
                    CheckResult(
                        name,
                        Status.UNKNOWN,
                        "not judged while nodeos is failing",
                        caused_by="nodeos",
                    )
                )
            else:
                status = current[name]
                results.append(CheckResult(name, status, f"{name} {status.name}"))
        # Now and then the clock goes back (not in a long outage: it must pile up).
        jump = not long_outage and draw(st.integers(0, 12)) == 0
        minutes = -draw(st.sampled_from([1, 5, 30, 60, 61])) if jump else 1
        works = tuple(
            True
            if delivery_always_works
            else (index >= count - 3 if long_outage and n == 0 else draw(st.booleans()))
            for n in range(len(recipients))
        )
        runs.append(Run(tuple(results), minutes, works))
    window = None
    if long_outage:
        silence = False  # a silence would stop the pile-up the test needs
    if silence if silence is not None else draw(st.booleans()):
        window = SilenceAt(
            run=draw(st.integers(0, count // 2)),
            checks=draw(st.sampled_from([(), ("nodeos",), ("head_block", "disk:*")])),
            minutes=draw(st.integers(1, 12)),
        )
    return Scenario(policy, checks, recipients, invalid, window, tuple(runs))


@dataclass
class Trace:
    """What happened in each run, for the properties to read."""

    nows: list[datetime]
    results: list[dict[str, CheckResult]]
    silenced: list[dict[str, bool]]  # as decide saw it: a silence covering the check at `now`
    notifications: list[list[Notification]]
    bodies: list[dict[str, str]]
    outcomes: list[list[Outcome]]
    outbox_after: list[dict[str, list[Notification]]]
    delivered: list[dict[str, list[Notification]]]  # what each recipient got in that run's SMS
    flapping: list[dict[str, bool]]  # as decide judged it after the run


def play(scenario: Scenario) -> Trace:
    trace = Trace([], [], [], [], [], [], [], [], [])
    state: dict = {"alerts": None, "outbox": None, "delivery_failures": {}}
    now = START
    for index, run in enumerate(scenario.runs):
        if index:
            now += timedelta(minutes=run.minutes)
        previous = alert_state_from_json(state["alerts"])
        if scenario.silence is not None and scenario.silence.run == index:
            wanted = scenario.silence
            silence = Silence(
                wanted.checks, now + timedelta(minutes=wanted.minutes), "maintenance", now
            )
            previous = AlertState(previous.checks, (*previous.silences, silence))
        # With its recipients, as a run with SMS configured decides: who was told is per phone.
        policy = dataclasses.replace(scenario.policy, recipients=scenario.recipients)
        alert_state, notifications = decide(previous, run.results, now, policy)
        state["alerts"] = json.loads(json.dumps(alert_state_to_json(alert_state)))

        outbox = enqueue(load_outbox(state["outbox"], scenario.recipients), notifications)
        bodies = render_for(NODE, outbox, now)
        outcomes, codes = [], {}
        for recipient, body in bodies.items():
            works = run.delivery_works[scenario.recipients.index(recipient)]
            if not works:
                outcomes.append(Outcome(recipient, "pending", body, "Twilio 20500"))
            elif recipient == scenario.invalid:
                outcomes.append(Outcome(recipient, "failed", body, "Twilio 21211"))
                codes[recipient] = 21211
            else:
                outcomes.append(Outcome(recipient, "sent", body, "SM" + "0" * 32))
        delivered = {o.recipient: list(outbox[o.recipient]) for o in outcomes if o.result == "sent"}
        for o in outcomes:
            if o.result == "failed":  # as the run does: that number was not told
                alert_state = refused_for_good(alert_state, o.recipient, outbox[o.recipient])
        state["alerts"] = json.loads(json.dumps(alert_state_to_json(alert_state)))
        outbox, failures = apply_outcomes(outbox, outcomes, state["delivery_failures"], now, codes)
        state["outbox"] = json.loads(json.dumps(outbox_to_json(outbox)))
        state["delivery_failures"] = failures

        trace.nows.append(now)
        trace.results.append({r.name: r for r in run.results})
        trace.flapping.append({name: r.flapping for name, r in alert_state.checks.items()})
        trace.silenced.append(
            {
                # A silence holds until two runs in a row have seen its end passed.
                r.name: any(
                    s.covers(r.name, s.until - timedelta(seconds=1))  # its patterns only
                    for s in previous.silences
                    if now < s.until or not s.end_seen
                )
                for r in run.results
            }
        )
        trace.notifications.append(notifications)
        trace.bodies.append(bodies)
        trace.outcomes.append(outcomes)
        trace.outbox_after.append(load_outbox(state["outbox"], scenario.recipients))
        trace.delivered.append(delivered)
    return trace


def is_problem(result: CheckResult, policy: Policy) -> bool:
    return result.caused_by is None and result.status.severity >= policy.alert_level.severity


# --- the properties ------------------------------------------------------------------


def one_sms_per_recipient_per_run(scenario: Scenario, trace: Trace) -> None:
    for index, outcomes in enumerate(trace.outcomes):
        recipients = [o.recipient for o in outcomes]
        assert len(recipients) == len(set(recipients)), (index, recipients)
        assert set(recipients) == set(trace.bodies[index])
        for body in trace.bodies[index].values():
            assert body.startswith(f"[{NODE}] ")
            assert len(body) <= HARD_LIMIT, body  # one text, never over two segments


def no_recovery_without_an_earlier_problem(scenario: Scenario, trace: Trace) -> None:
    # Per incident: decide texts a RECOVERY only after telling somebody about it.
    told = dict.fromkeys(scenario.checks, False)
    for index, notifications in enumerate(trace.notifications):
        # At most one notification per check for each recipient (a REMINDER to
        # those told and a late PROBLEM to the others may share a run).
        for recipient in scenario.recipients:
            mine = [
                n
                for n in notifications
                if n.kind is not Kind.CALL and (n.to is None or recipient in n.to)
            ]
            assert len({n.check for n in mine}) == len(mine), notifications
        for n in notifications:
            if n.kind in TOLD:
                told[n.check] = True
            elif n.kind is Kind.RECOVERY:
                assert told[n.check], (index, n)
                told[n.check] = False
    # Per recipient: a RECOVERY that reaches somebody follows a problem that reached
    # them, in this SMS or an earlier one, whatever the outbox had to drop meanwhile.
    heard: dict[str, set[str]] = {r: set() for r in scenario.recipients}
    for index in range(len(trace.notifications)):
        for recipient, got in trace.delivered[index].items():
            for n in got:
                if n.kind in TOLD:
                    heard[recipient].add(n.check)
                elif n.kind is Kind.RECOVERY:
                    assert n.check in heard[recipient], (index, recipient, n)
                    heard[recipient].discard(n.check)


def every_lasting_incident_is_texted(scenario: Scenario, trace: Trace) -> None:
    """ALERT_AFTER consecutive runs at or above ALERT_LEVEL (not consequences) in a row:
    on every such run that is not silenced, the open incident has been texted."""
    policy = scenario.policy
    for check in scenario.checks:
        streak = 0
        told = False  # a PROBLEM/ESCALATION/SILENCE_ENDED since the last RECOVERY
        for index in range(len(trace.nows)):
            result = trace.results[index][check]
            streak = streak + 1 if is_problem(result, policy) else 0
            for n in trace.notifications[index]:
                if n.check == check and n.kind is not Kind.CALL:  # a call tells, but is no text
                    told = n.kind in TOLD or (told and n.kind is Kind.REMINDER)
            if streak >= policy.alert_after and not trace.silenced[index][check]:
                assert told, (check, index, streak)


def reminders_never_storm(scenario: Scenario, trace: Trace) -> None:
    """A REMINDER comes at least REMIND_EVERY_MINUTES runs after the last text about that
    check, even when the clock went back in between (runs never move it forward by more
    than a minute, so this is the timer counted in runs)."""
    for check in scenario.checks:
        last_texted: int | None = None
        for index, notifications in enumerate(trace.notifications):
            for n in notifications:
                if n.check != check or n.kind is Kind.CALL:  # a call is not a text
                    continue
                if n.kind is Kind.REMINDER:
                    assert scenario.policy.remind_every_minutes, (index, n)
                    assert last_texted is not None, (index, n)
                    assert index - last_texted >= scenario.policy.remind_every_minutes, (
                        check,
                        last_texted,
                        index,
                    )
                last_texted = index if n.kind is not Kind.RECOVERY else None


def every_texted_incident_gets_its_recovery(scenario: Scenario, trace: Trace) -> None:
    """The other side: ALERT_AFTER OK runs in a row, not silenced, close a texted
    incident with a RECOVERY (one that recovered during a silence, once it is over);
    and a RECOVERY comes only after ALERT_AFTER OK runs, so a flapping check does
    not text every other minute."""
    policy = scenario.policy
    for check in scenario.checks:
        ok_streak = 0  # OK runs in a row; a consequence neither counts nor breaks it
        told = False
        for index in range(len(trace.nows)):
            result = trace.results[index][check]
            if result.caused_by is None:
                ok_streak = ok_streak + 1 if result.status is Status.OK else 0
            for n in trace.notifications[index]:
                if n.check != check or n.kind is Kind.CALL:
                    continue
                if n.kind is Kind.RECOVERY:
                    assert told and ok_streak >= policy.alert_after, (check, index, ok_streak)
                told = n.kind is not Kind.RECOVERY
            # A consequence decides nothing, so the recovery waits for a run that judged it.
            # A flapping check keeps its incident until it is stable (flapping.py).
            judged = result.caused_by is None and not trace.flapping[index].get(check)
            if judged and ok_streak >= policy.alert_after and not trace.silenced[index][check]:
                assert not told, (check, index, ok_streak)


def nothing_stays_queued_when_delivery_works(scenario: Scenario, trace: Trace) -> None:
    for index, run in enumerate(scenario.runs):
        if all(run.delivery_works):
            assert all(not queue for queue in trace.outbox_after[index].values()), index


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_never_more_than_one_sms_per_recipient_per_run(scenario: Scenario) -> None:
    one_sms_per_recipient_per_run(scenario, play(scenario))


@settings(max_examples=200, deadline=None)
@given(st.one_of(scenarios(), scenarios(silence=True)))
def test_no_recovery_is_delivered_without_an_earlier_problem(scenario: Scenario) -> None:
    no_recovery_without_an_earlier_problem(scenario, play(scenario))


@settings(max_examples=200, deadline=None)
@given(st.one_of(scenarios(), scenarios(silence=True)))
def test_every_incident_of_alert_after_runs_is_texted_unless_silenced(
    scenario: Scenario,
) -> None:
    every_lasting_incident_is_texted(scenario, play(scenario))


@settings(max_examples=200, deadline=None)
@given(st.one_of(scenarios(), scenarios(silence=True)))
def test_every_texted_incident_gets_one_recovery_after_alert_after_ok_runs(
    scenario: Scenario,
) -> None:
    every_texted_incident_gets_its_recovery(scenario, play(scenario))


@settings(max_examples=50, deadline=None)
@given(scenarios(long_outage=True))
def test_a_long_outage_of_one_phone_never_brings_it_a_recovery_of_an_unheard_problem(
    scenario: Scenario,
) -> None:
    trace = play(scenario)
    assert max(len(queue) for queue in trace.outbox_after[-4].values()) >= 20  # it did pile up
    no_recovery_without_an_earlier_problem(scenario, trace)
    one_sms_per_recipient_per_run(scenario, trace)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_reminders_never_storm_even_when_the_clock_goes_back(scenario: Scenario) -> None:
    reminders_never_storm(scenario, play(scenario))


@settings(max_examples=200, deadline=None)
@given(scenarios(delivery_always_works=True))
def test_with_delivery_always_working_nothing_stays_in_the_outbox(scenario: Scenario) -> None:
    trace = play(scenario)
    nothing_stays_queued_when_delivery_works(scenario, trace)
    # Every recipient that Twilio accepts got each notification exactly once.
    for recipient in scenario.recipients:
        if recipient == scenario.invalid:
            continue
        got = [n for delivered in trace.delivered for n in delivered.get(recipient, [])]
        decided = [
            n for notes in trace.notifications for n in notes if n.to is None or recipient in n.to
        ]
        assert got == decided
