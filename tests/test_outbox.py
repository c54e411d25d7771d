"""The outbox's pure parts: queue per recipient, one body each, and what a delivery changes.

Each test goes through the state file's JSON between runs, as the runner does.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from check_status.alerting.rules import Kind, Notification
from check_status.delivery import (
    MAX_QUEUED_PER_RECIPIENT,
    Outcome,
    apply_outcomes,
    enqueue,
    load_outbox,
    outbox_to_json,
    render_for,
)
from check_status.model import Status, format_time

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ALICE = "+15005550001"
BOB = "+15005550002"
CAROL = "+15005550003"
NODE = "eu2"

Outbox = dict[str, list[Notification]]


def at(minute: int) -> datetime:
    return START + timedelta(minutes=minute)


def note(kind: Kind, check: str, summary: str, minute: int, since: int = 0) -> Notification:
    status = Status.OK if kind is Kind.RECOVERY else Status.CRITICAL
    return Notification(kind, check, status, summary, at(since), at(minute))


def through_state_file(outbox: Outbox, recipients: list[str]) -> Outbox:
    return load_outbox(json.loads(json.dumps(outbox_to_json(outbox))), recipients)


def outcomes_for(bodies: dict[str, str], results: dict[str, str]) -> list[Outcome]:
    return [Outcome(r, results[r], body, f"detail for {r}") for r, body in bodies.items()]


# --- one body per recipient, nothing lost, nothing sent twice -------------------


def test_pending_recipient_gets_old_and_new_in_one_body_sent_recipient_only_new() -> None:
    recipients = [ALICE, BOB]
    first = note(Kind.PROBLEM, "nodeos", "connection refused", 1)
    outbox = enqueue(load_outbox(None, recipients), [first])
    bodies = render_for(NODE, outbox, at(1))
    assert set(bodies) == {ALICE, BOB}
    assert bodies[ALICE] == bodies[BOB] == "[eu2] CRITICAL nodeos: connection refused"

    # Alice's SMS was accepted; Bob's timed out.
    outbox, failures = apply_outcomes(
        outbox, outcomes_for(bodies, {ALICE: "sent", BOB: "pending"}), {}, at(1), {BOB: None}
    )
    assert outbox[ALICE] == []
    assert outbox[BOB] == [first]
    assert failures == {}

    # The next run decides something new.
    outbox = through_state_file(outbox, recipients)
    second = note(Kind.PROBLEM, "endpoint:eu.example.io", "HTTP 503 NODEOS_UNREACHABLE", 2)
    outbox = enqueue(outbox, [second])
    assert outbox[ALICE] == [second]
    assert outbox[BOB] == [first, second]
    bodies = render_for(NODE, outbox, at(2))
    assert bodies == {
        ALICE: "[eu2] CRITICAL endpoint eu.example.io: HTTP 503 NODEOS_UNREACHABLE",
        BOB: "[eu2] CRITICAL nodeos: connection refused; "
        "endpoint eu.example.io: HTTP 503 NODEOS_UNREACHABLE",
    }

    outbox, _ = apply_outcomes(
        outbox, outcomes_for(bodies, {ALICE: "sent", BOB: "sent"}), failures, at(2), {}
    )
    assert outbox == {ALICE: [], BOB: []}
    assert render_for(NODE, outbox, at(3)) == {}
    assert outbox_to_json(outbox) == {}


def test_nothing_queued_nothing_rendered() -> None:
    outbox = enqueue(load_outbox(None, [ALICE, BOB]), [])
    assert outbox == {ALICE: [], BOB: []}
    assert render_for(NODE, outbox, START) == {}


def test_a_pending_recipient_keeps_the_queue_run_after_run() -> None:
    recipients = [ALICE]
    outbox = load_outbox(None, recipients)
    queued: list[Notification] = []
    for minute in range(1, 5):
        new = note(Kind.PROBLEM, f"chk{minute}", "down", minute)
        queued.append(new)
        outbox = enqueue(through_state_file(outbox, recipients), [new])
        bodies = render_for(NODE, outbox, at(minute))
        outbox, _ = apply_outcomes(
            outbox, outcomes_for(bodies, {ALICE: "pending"}), {}, at(minute), {ALICE: None}
        )
        assert outbox[ALICE] == queued
    assert all(f"chk{m}" in bodies[ALICE] for m in range(1, 5))


# --- permanent failures ----------------------------------------------------------


def test_failed_recipient_is_emptied_and_recorded_others_untouched() -> None:
    recipients = [ALICE, BOB]
    problem = note(Kind.PROBLEM, "nodeos", "connection refused", 1)
    outbox = enqueue(load_outbox(None, recipients), [problem])
    bodies = render_for(NODE, outbox, at(1))
    outcomes = [
        Outcome(ALICE, "failed", bodies[ALICE], "invalid 'To' phone number"),
        Outcome(BOB, "pending", bodies[BOB], "HTTP 500"),
    ]
    outbox, failures = apply_outcomes(outbox, outcomes, {}, at(1), {ALICE: 21211, BOB: None})
    assert outbox == {ALICE: [], BOB: [problem]}
    assert failures == {
        ALICE: {"code": 21211, "reason": "invalid 'To' phone number", "at": format_time(at(1))}
    }


def test_a_later_sent_clears_the_failure_record() -> None:
    failures: dict[str, Any] = {
        ALICE: {"code": 21610, "reason": "recipient sent STOP", "at": format_time(at(1))},
        BOB: {"code": 21614, "reason": "not a mobile number", "at": format_time(at(1))},
    }
    outbox = enqueue(
        load_outbox(None, [ALICE, BOB]), [note(Kind.PROBLEM, "nodeos", "connection refused", 5)]
    )
    bodies = render_for(NODE, outbox, at(5))
    outbox, after = apply_outcomes(
        outbox, outcomes_for(bodies, {ALICE: "sent", BOB: "pending"}), failures, at(5), {}
    )
    assert ALICE not in after
    assert after[BOB] == failures[BOB]  # still failing as far as we know
    assert ALICE in failures  # the caller's dict is not changed in place


def test_failure_record_is_replaced_by_the_newest() -> None:
    old = {ALICE: {"code": 21211, "reason": "old", "at": format_time(at(1))}}
    outbox = enqueue(load_outbox(None, [ALICE]), [note(Kind.PROBLEM, "nodeos", "x", 9)])
    outcome = Outcome(ALICE, "failed", "body", "STOP")
    _, failures = apply_outcomes(outbox, [outcome], old, at(9), {ALICE: 21610})
    assert failures == {ALICE: {"code": 21610, "reason": "STOP", "at": format_time(at(9))}}


# --- what a queue keeps ---------------------------------------------------------


def test_only_the_newest_reminder_per_check_survives() -> None:
    problem = note(Kind.PROBLEM, "nodeos", "connection refused", 1)
    disk_reminder = note(Kind.REMINDER, "disk:/", "91% used", 30)
    reminders = [note(Kind.REMINDER, "nodeos", f"refused {m}", m) for m in (61, 121, 181)]
    outbox = load_outbox(None, [ALICE])
    outbox = enqueue(outbox, [problem, reminders[0]])
    outbox = enqueue(outbox, [disk_reminder, reminders[1]])
    outbox = enqueue(outbox, [reminders[2]])
    assert outbox[ALICE] == [problem, disk_reminder, reminders[2]]


def test_reminder_superseding_keeps_problems_and_recoveries() -> None:
    notes = [
        note(Kind.PROBLEM, "nodeos", "refused", 1),
        note(Kind.REMINDER, "nodeos", "refused", 61),
        note(Kind.ESCALATION, "nodeos", "refused", 70),
        note(Kind.REMINDER, "nodeos", "refused", 130),
        note(Kind.RECOVERY, "nodeos", "ok", 140),
    ]
    outbox = enqueue(load_outbox(None, [ALICE]), notes)
    assert [n.kind for n in outbox[ALICE]] == [
        Kind.PROBLEM,
        Kind.ESCALATION,
        Kind.REMINDER,
        Kind.RECOVERY,
    ]
    assert outbox[ALICE][2].at == at(130)


@pytest.mark.parametrize(
    ("already", "new"),
    [(0, MAX_QUEUED_PER_RECIPIENT + 5), (MAX_QUEUED_PER_RECIPIENT - 1, 2), (20, 20), (30, 1)],
)
def test_queue_is_capped_keeping_the_newest(already: int, new: int) -> None:
    def problems(first: int, count: int) -> list[Notification]:
        return [note(Kind.PROBLEM, f"chk{i}", "down", i) for i in range(first, first + count)]

    outbox = enqueue(load_outbox(None, [ALICE]), problems(0, already))
    outbox = enqueue(outbox, problems(already, new))
    total = already + new
    kept = min(total, MAX_QUEUED_PER_RECIPIENT)
    assert len(outbox[ALICE]) == kept
    assert [n.check for n in outbox[ALICE]] == [f"chk{i}" for i in range(total - kept, total)]


def test_capping_never_leaves_a_recovery_of_a_problem_that_was_dropped() -> None:
    # A recipient unreachable for a long while, and a flapping check: the PROBLEM
    # that opened the incident falls off the front of the queue. Its reminder and
    # recovery would tell of a problem this recipient never heard of.
    filler = [note(Kind.PROBLEM, f"chk{i}", "down", i) for i in range(1, MAX_QUEUED_PER_RECIPIENT)]
    opened = note(Kind.PROBLEM, "nodeos", "connection refused", 0)
    reminder = note(Kind.REMINDER, "nodeos", "connection refused", 40)
    recovered = note(Kind.RECOVERY, "nodeos", "", 41)
    reopened = note(Kind.PROBLEM, "nodeos", "timeout", 42)
    closed_again = note(Kind.RECOVERY, "nodeos", "", 43)
    outbox = enqueue(load_outbox(None, [ALICE]), [opened, *filler])
    assert outbox[ALICE][0] == opened  # exactly full: nothing dropped yet
    outbox = enqueue(outbox, [reminder, recovered, reopened, closed_again])
    kept = outbox[ALICE]
    assert opened not in kept
    assert reminder not in kept and recovered not in kept
    # The next incident of the same check was queued whole: it stays.
    assert kept[-2:] == [reopened, closed_again]
    assert len(kept) <= MAX_QUEUED_PER_RECIPIENT


@pytest.mark.parametrize(
    ("dropped_kind", "recovery_kept"),
    [
        # A reminder only follows news of the problem: the recipient had that news.
        (Kind.REMINDER, True),
        # Either may be the first this recipient would have heard of the incident
        # (one that opened during a silence has no PROBLEM): its recovery goes too.
        (Kind.ESCALATION, False),
        (Kind.SILENCE_ENDED, False),
    ],
)
def test_capping_drops_a_recovery_only_when_its_news_may_have_been_the_first(
    dropped_kind: Kind, recovery_kept: bool
) -> None:
    earlier_news = note(dropped_kind, "nodeos", "still down", 1)
    filler = [
        note(Kind.PROBLEM, f"chk{i}", "down", i + 2) for i in range(MAX_QUEUED_PER_RECIPIENT - 1)
    ]
    recovered = note(Kind.RECOVERY, "nodeos", "", 45)
    outbox = enqueue(load_outbox(None, [ALICE]), [earlier_news, *filler])
    outbox = enqueue(outbox, [recovered])
    assert earlier_news not in outbox[ALICE]
    assert (recovered in outbox[ALICE]) is recovery_kept


def test_capping_keeps_a_recovery_of_a_problem_already_delivered() -> None:
    # The recipient got the PROBLEM in an earlier SMS: the queue holds only the
    # recovery, which must survive the cap like any other newest item.
    filler = [note(Kind.PROBLEM, f"chk{i}", "down", i) for i in range(MAX_QUEUED_PER_RECIPIENT)]
    recovered = note(Kind.RECOVERY, "nodeos", "", 45)
    outbox = enqueue(load_outbox(None, [ALICE]), filler)
    outbox = enqueue(outbox, [recovered])
    assert outbox[ALICE][-1] == recovered
    assert len(outbox[ALICE]) == MAX_QUEUED_PER_RECIPIENT


# --- the state file -------------------------------------------------------------


def test_outbox_round_trips_and_omits_empty_queues() -> None:
    outbox = {
        ALICE: [note(Kind.PROBLEM, "nodeos", "refused", 1), note(Kind.RECOVERY, "nodeos", "", 9)],
        BOB: [],
    }
    data = json.loads(json.dumps(outbox_to_json(outbox)))
    assert set(data) == {ALICE}
    assert load_outbox(data, [ALICE, BOB]) == outbox


def test_load_outbox_drops_numbers_no_longer_in_the_recipients() -> None:
    data = outbox_to_json(
        {
            ALICE: [note(Kind.PROBLEM, "nodeos", "refused", 1)],
            CAROL: [note(Kind.PROBLEM, "nodeos", "refused", 1)],
        }
    )
    outbox = load_outbox(data, [ALICE, BOB])
    assert set(outbox) == {ALICE, BOB}
    assert len(outbox[ALICE]) == 1
    assert outbox[BOB] == []


@pytest.mark.parametrize("data", [None, [], "outbox", 7, {ALICE: "junk"}, {ALICE: None}])
def test_load_outbox_from_garbage_gives_empty_queues(data: object) -> None:
    assert load_outbox(data, [ALICE, BOB]) == {ALICE: [], BOB: []}


def test_load_outbox_skips_garbage_items_and_keeps_good_ones() -> None:
    good = note(Kind.PROBLEM, "nodeos", "refused", 1)
    good_json = good.to_json()
    data = {
        ALICE: [
            "junk",
            None,
            5,
            ["PROBLEM"],
            {},
            good_json | {"kind": "NOPE"},
            good_json | {"status": "BROKEN"},
            good_json | {"since": "yesterday"},
            good_json,
        ]
    }
    assert load_outbox(data, [ALICE]) == {ALICE: [good]}


@pytest.mark.parametrize("field", ["since", "at"])
@pytest.mark.parametrize("value", [None, 1714564800])
def test_load_outbox_skips_items_with_a_non_string_time(field: str, value: object) -> None:
    good = note(Kind.PROBLEM, "nodeos", "refused", 1)
    data = {ALICE: [good.to_json() | {field: value}, good.to_json()]}
    assert load_outbox(data, [ALICE]) == {ALICE: [good]}
