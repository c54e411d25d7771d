"""CORE: which runs text whom. One pure function, `decide`.

    decide(previous alert state, this run's results, now, policy)
        -> (next alert state, notifications)

Every rule about paging lives here, in one page:

- a check becomes an incident after ALERT_AFTER consecutive runs at or above
  ALERT_LEVEL, and that run texts it (PROBLEM);
- within an incident, a move up (WARNING to CRITICAL) texts once more
  (ESCALATION); a move down does not;
- while it lasts, a REMINDER goes out every REMIND_EVERY_MINUTES;
- it closes after ALERT_AFTER consecutive OK runs, with a RECOVERY, but only
  if somebody was told about it. A check flapping OK/CRITICAL every other run
  thus keeps one incident open instead of texting every other minute;
- a result caused by another failing check (head_block UNKNOWN while nodeos is
  unreachable) is no evidence either way: it neither opens nor closes anything;
- a silenced check is tracked but not texted; when the silence ends and the
  problem is still there, one SILENCE_ENDED text says so.

And who gets each text, the on-call steps (see oncall.py for the operators):

1. first in line: news of a problem goes to the operators within their waking
   hours; if none is awake, to all of them;
2. escalation: no ACK after ESCALATE_AFTER_MINUTES from the first text, and
   everyone not yet told gets it, marked ESCALATED;
3. the call: no ACK after another ESCALATE_AFTER_MINUTES, and the problem is at
   or above CALL_ON: every operator gets a voice call, once per status;
4. after an ACK: no escalation, no call, reminders to the one who ACKed only;
   the RECOVERY still goes to everyone who was told.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from check_status.alerting.flapping import (
    NO_EVIDENCE,
    STATUS_LETTERS,
    FlapPolicy,
    failed_runs,
    is_flapping,
    push_history,
)
from check_status.alerting.oncall import DEFAULT_WAKING_HOURS, Ack, Operator, first_in_line, matches
from check_status.model import CheckResult, Status, format_time, parse_time


class Kind(enum.StrEnum):
    PROBLEM = "PROBLEM"
    FLAPPING = "FLAPPING"
    ESCALATION = "ESCALATION"
    REMINDER = "REMINDER"
    RECOVERY = "RECOVERY"
    SILENCE_ENDED = "SILENCE_ENDED"
    ACK = "ACK"  # to the others who were told: "[eu2] ACK nodeos by luke"
    CALL = "CALL"  # a voice call, not a text: never queued in the SMS outbox


@dataclass(frozen=True)
class Policy:
    alert_level: Status = Status.WARNING
    alert_after: int = 2
    remind_every_minutes: int = 60
    flap: FlapPolicy = field(default_factory=FlapPolicy)
    # The operators' numbers (ALERT_TO) when SMS can be sent. With none, every
    # notification is addressed to "everyone" and nobody is recorded as told:
    # a problem decided before the Twilio keys were filled in is then told late.
    recipients: tuple[str, ...] = ()
    # Who each recipient is: name, time zone, waking hours. A recipient with no
    # Operator here has no zone, so is always first in line.
    operators: tuple[Operator, ...] = ()
    waking_hours: tuple[int, int] = DEFAULT_WAKING_HOURS
    escalate_after_minutes: int = 10
    # The lowest status whose last step is a voice call; None: never call
    # (CALL_ON=never, or no TWILIO_FROM to call from). The settings' default
    # is CRITICAL (config.CALL_ON); a Policy built by hand calls only if asked.
    call_on: Status | None = None

    def roster(self) -> tuple[Operator, ...]:
        """One Operator per recipient, in ALERT_TO's order."""
        known = {o.number: o for o in self.operators}
        return tuple(known.get(r, Operator(r, r)) for r in self.recipients)

    def name_of(self, number: str | None) -> str:
        if number is None:
            return "nobody"
        return next((o.name for o in self.operators if o.number == number), number)


@dataclass(frozen=True)
class Notification:
    kind: Kind
    check: str
    status: Status
    summary: str
    since: datetime  # when the problem began: reminders and recoveries say how long it lasted
    at: datetime  # when this notification was decided
    ended: datetime | None = None  # for a RECOVERY: the first OK run
    # Who gets it; None: every recipient. Set by `decide` when it knows the recipients.
    to: tuple[str, ...] | None = None
    # A PROBLEM for a recipient who missed the first one (keys set late, a
    # number added or fixed mid-incident): the text says since when.
    late: bool = False
    # A PROBLEM sent at the escalation step, to those not told first: it says
    # for how long nobody has acknowledged it.
    escalated: bool = False

    @property
    def lasted_seconds(self) -> float:
        return ((self.ended or self.at) - self.since).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "check": self.check,
            "status": self.status.name,
            "summary": self.summary,
            "since": format_time(self.since),
            "at": format_time(self.at),
            "ended": format_time(self.ended) if self.ended else None,
            "late": self.late,
            "escalated": self.escalated,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        return cls(
            Kind(data["kind"]),
            str(data["check"]),
            Status[data["status"]],
            str(data["summary"]),
            parse_time(data["since"]),
            parse_time(data["at"]),
            parse_time(data["ended"]) if data.get("ended") else None,
            late=bool(data.get("late", False)),
            escalated=bool(data.get("escalated", False)),
        )


@dataclass(frozen=True)
class Silence:
    checks: tuple[str, ...]  # empty: the whole node
    until: datetime
    reason: str
    created_at: datetime
    # A run saw `until` passed. The silence ends only when the next run sees it
    # passed too: one run whose clock jumped hours ahead (NTP, a bad RTC) must
    # not end a maintenance silence for good, nor text "(silence over)" during it.
    end_seen: bool = False

    def covers(self, check: str, now: datetime) -> bool:
        if now >= self.until and not self.end_seen:
            return False
        import fnmatch  # only when a silence exists

        return not self.checks or any(
            fnmatch.fnmatchcase(check, pattern) for pattern in self.checks
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "checks": list(self.checks),
            "until": format_time(self.until),
            "reason": self.reason,
            "created_at": format_time(self.created_at),
            "end_seen": self.end_seen,
        }

    def without(self, checks: tuple[str, ...]) -> Silence | None:
        """This silence less the named checks; None once nothing is left of it.

        A whole-node silence has no list to take a check out of: only a bare
        `unsilence` ends it.
        """
        if not self.checks:
            return self
        rest = tuple(c for c in self.checks if c not in checks)
        if not rest:
            return None
        return self if rest == self.checks else replace(self, checks=rest)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Silence:
        return cls(
            tuple(str(c) for c in data.get("checks", [])),
            parse_time(data["until"]),
            str(data.get("reason", "")),
            parse_time(data["created_at"]),
            bool(data.get("end_seen", False)),
        )


@dataclass(frozen=True)
class Incident:
    opened_at: datetime  # when the first failing run was seen
    notified_status: Status | None  # the highest status texted; None: nobody was told yet
    last_notified_at: datetime | None
    summary: str
    silenced: bool = False  # opened or kept during a silence: SILENCE_ENDED is due when it ends
    # Per recipient: the highest status of the news queued for them (a queue is
    # retried until Twilio accepts it), or FAILED when Twilio refused that number
    # for good. A recipient missing here was never told: they get a late PROBLEM,
    # and no RECOVERY. None: a state written before this was recorded, read as
    # "every recipient was told", so an upgrade texts nobody twice.
    told: dict[str, str] | None = field(default_factory=dict)
    # The on-call steps. paged_at: the first text, from which escalation counts.
    # told_at: per recipient, when they were first told. called: per recipient,
    # the status of the call placed (or FAILED). acked_by: the number that ACKed.
    paged_at: datetime | None = None
    told_at: dict[str, datetime] = field(default_factory=dict)
    escalated_at: datetime | None = None
    called: dict[str, str] = field(default_factory=dict)
    acked_by: str | None = None
    acked_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        def at(value: datetime | None) -> str | None:
            return format_time(value) if value else None

        return {
            "paged_at": at(self.paged_at),
            "told_at": {r: format_time(t) for r, t in self.told_at.items()},
            "escalated_at": at(self.escalated_at),
            "called": self.called,
            "acked_by": self.acked_by,
            "acked_at": at(self.acked_at),
            "opened_at": format_time(self.opened_at),
            "notified_status": self.notified_status.name if self.notified_status else None,
            "last_notified_at": format_time(self.last_notified_at)
            if self.last_notified_at
            else None,
            "summary": self.summary,
            "silenced": self.silenced,
            "told": self.told,
        }


@dataclass(frozen=True)
class CheckRecord:
    """What the rules remember of one check between runs."""

    problem_runs: int = 0  # consecutive runs at or above ALERT_LEVEL
    ok_runs: int = 0  # consecutive OK runs
    problem_since: datetime | None = None
    ok_since: datetime | None = None  # the first of the current OK runs
    incident: Incident | None = None
    history: str = ""  # one letter per run, the last 21 (see flapping.py)
    flapping: bool = False
    last_problem: str = ""  # the summary of the last failing run, for a FLAPPING text
    # The first failing run still in the history: when a flapping problem began,
    # since each OK run in between clears problem_since.
    failing_since: datetime | None = None


@dataclass(frozen=True)
class AlertState:
    checks: dict[str, CheckRecord] = field(default_factory=dict)
    silences: tuple[Silence, ...] = ()


def decide(
    previous: AlertState, results: Iterable[CheckResult], now: datetime, policy: Policy
) -> tuple[AlertState, list[Notification]]:
    silences = _age_silences(previous.silences, now)
    notifications: list[Notification] = []
    records: dict[str, CheckRecord] = {}
    for result in results:
        before = _observe(previous.checks.get(result.name, CheckRecord()), result, now, policy)
        silenced = any(s.covers(result.name, now) for s in silences)
        record, notification = _decide_one(before, result, now, policy, silenced)
        if record.flapping:
            record, notification = _while_flapping(
                before, record, notification, result, now, policy, silenced
            )
        record, addressed = _address(before.incident, record, notification, result, now, policy)
        records[result.name] = record
        notifications += addressed
    # A check no longer run (an endpoint removed from ENDPOINTS) is forgotten quietly.
    return AlertState(records, silences), notifications


def _age_silences(silences: Iterable[Silence], now: datetime) -> tuple[Silence, ...]:
    """Silences still in force: one whose end has passed holds for one more run."""
    kept = []
    for silence in silences:
        if now < silence.until:
            kept.append(replace(silence, end_seen=False))  # a clock that stepped back
        elif not silence.end_seen:
            kept.append(replace(silence, end_seen=True))
        # else: two runs in a row saw it over: it ends now.
    return tuple(kept)


FAILED = "FAILED"  # in Incident.told: Twilio refused this number for good


def _address(
    incident_before: Incident | None,
    record: CheckRecord,
    note: Notification | None,
    result: CheckResult,
    now: datetime,
    policy: Policy,
) -> tuple[CheckRecord, list[Notification]]:
    """Who gets this check's news, per recipient, and who has now been told.

    - news of a problem (PROBLEM, ESCALATION, SILENCE_ENDED) goes to those
      first in line and anyone already told; once escalated, to everyone;
      once acknowledged, to the one who ACKed;
    - a REMINDER goes to those told (after an ACK, to the one who ACKed); a
      recipient now due to know who was never told gets a late PROBLEM instead;
    - with no news due, a recipient due to know of an open incident that was
      texted (keys set late, a number added to ALERT_TO, someone whose waking
      hours began) gets a late PROBLEM; one Twilio refused for good is retried
      only with the reminders;
    - the escalation and the call follow (see `_escalate`);
    - a RECOVERY goes only to those told of the problem.
    """
    recipients = policy.recipients
    if not recipients:
        return record, [note] if note is not None else []
    if note is not None and note.kind is Kind.RECOVERY:
        told = _told(incident_before, recipients)
        to = tuple(r for r in recipients if told.get(r, FAILED) != FAILED)
        return record, [replace(note, to=to)] if to else []
    incident = record.incident
    if incident is None:
        return record, [note] if note is not None else []
    told = _told(incident, recipients)
    told_at = {r: t for r, t in incident.told_at.items() if r in recipients}
    if note is not None and note.kind is Kind.ESCALATION and incident.acked_by is not None:
        # Worse than what was ACKed (a WARNING disk ACKed for the morning is now
        # CRITICAL): the ACK was for the lesser problem, so the steps start again.
        incident = replace(incident, acked_by=None, acked_at=None, paged_at=None, escalated_at=None)
    acker = incident.acked_by
    addressed: list[Notification] = []

    def mark(to: Iterable[str], status: Status) -> None:
        for r in to:
            told[r] = _higher_name(told.get(r), status)
            told_at.setdefault(r, now)

    in_line = set(first_in_line(policy.roster(), now, policy.waking_hours))

    def due_to_know(r: str) -> bool:
        return acker is None and (incident.escalated_at is not None or r in in_line)

    # The escalation is due this run: those never told get its ESCALATED text
    # from _escalate, not a late PROBLEM that would not say nobody answered.
    escalating = (
        acker is None
        and incident.escalated_at is None
        and incident.paged_at is not None
        and not incident.silenced
        and _is_problem(result, policy)
        and now >= incident.paged_at + timedelta(minutes=policy.escalate_after_minutes)
    )
    late: tuple[str, ...] = ()
    if note is not None and note.kind in NEWS_OF_A_PROBLEM:
        if acker is not None:
            to = (acker,) if acker in recipients else tuple(told)
        else:
            to = tuple(r for r in recipients if r in told or due_to_know(r))
        if to:
            addressed.append(replace(note, to=to))
        mark(to, note.status)
        incident = replace(incident, paged_at=incident.paged_at or now)
    elif note is not None:  # a REMINDER
        if acker is not None:
            reminded: tuple[str, ...] = (acker,) if acker in recipients else ()
        else:
            reminded = tuple(r for r in recipients if told.get(r, FAILED) != FAILED)
        if reminded:
            addressed.append(replace(note, to=reminded))
        late = tuple(
            r
            for r in recipients
            if r not in reminded and (told.get(r) == FAILED or r not in told) and due_to_know(r)
        )
    elif (
        incident.notified_status is not None
        and not incident.silenced
        and _is_problem(result, policy)
    ):
        late = tuple(r for r in recipients if r not in told and due_to_know(r))
    if escalating:
        late = tuple(r for r in late if r in told)  # a number refused before, retried
    if late:
        addressed.append(
            Notification(
                Kind.PROBLEM,
                result.name,
                result.status,
                result.summary,
                record.problem_since or now,
                now,
                to=late,
                late=True,
            )
        )
        for r in late:
            told[r] = _higher_name(None if told.get(r) == FAILED else told.get(r), result.status)
            told_at.setdefault(r, now)
    incident = replace(incident, told=told, told_at=told_at)
    incident, stepped = _escalate(incident, record, result, now, policy)
    return replace(record, incident=incident), addressed + stepped


def _escalate(
    incident: Incident, record: CheckRecord, result: CheckResult, now: datetime, policy: Policy
) -> tuple[Incident, list[Notification]]:
    """Steps 2 and 3 of an unacknowledged incident: escalation, then the call.

    Each is due ESCALATE_AFTER_MINUTES after the step before it, and only while
    the check still fails: an incident on its way to recovery wakes nobody.
    """
    if (
        incident.acked_by is not None
        or incident.paged_at is None
        or incident.silenced
        or not _is_problem(result, policy)
    ):
        return incident, []
    wait = timedelta(minutes=policy.escalate_after_minutes)
    since = record.problem_since or incident.opened_at
    stepped: list[Notification] = []
    if incident.escalated_at is None:
        if now < incident.paged_at + wait:
            return incident, []
        told = dict(incident.told or {})
        told_at = dict(incident.told_at)
        untold = tuple(r for r in policy.recipients if r not in told)
        if untold:
            stepped.append(
                Notification(
                    Kind.PROBLEM,
                    result.name,
                    result.status,
                    result.summary,
                    since,
                    now,
                    to=untold,
                    escalated=True,
                )
            )
            for r in untold:
                told[r] = result.status.name
                told_at[r] = now
        incident = replace(incident, escalated_at=now, told=told, told_at=told_at)
        if stepped:  # a text about it: the reminders count from here
            incident = replace(incident, last_notified_at=now)
        return incident, stepped
    status = _higher(incident.notified_status, result.status)
    if (
        policy.call_on is None
        or status.severity < policy.call_on.severity
        or now < incident.escalated_at + wait
    ):
        return incident, []
    called = dict(incident.called)
    # Once per operator per incident, and again only when it gets worse.
    to_call = tuple(
        r
        for r in policy.recipients
        if called.get(r) != FAILED
        and (r not in called or Status[called[r]].severity < status.severity)
    )
    if not to_call:
        return incident, []
    for r in to_call:
        called[r] = status.name
    call = Notification(Kind.CALL, result.name, status, result.summary, since, now, to=to_call)
    return replace(incident, called=called), [call]


# The kinds that tell a recipient about a problem; a reminder or a recovery only
# makes sense to somebody who got one of these.
NEWS_OF_A_PROBLEM = (Kind.PROBLEM, Kind.FLAPPING, Kind.ESCALATION, Kind.SILENCE_ENDED)


def _told(incident: Incident | None, recipients: tuple[str, ...]) -> dict[str, str]:
    """The incident's told record, for the current recipients only."""
    if incident is None:
        return {}
    if incident.told is None:  # written before told was recorded: everyone was
        status = incident.notified_status.name if incident.notified_status else None
        return {r: status for r in recipients} if status else {}
    return {r: s for r, s in incident.told.items() if r in recipients}


def _higher_name(told: str | None, status: Status) -> str:
    if told is None or told == FAILED:
        return status.name
    return told if Status[told].severity >= status.severity else status.name


def refused_for_good(
    state: AlertState, recipient: str, notes: Iterable[Notification]
) -> AlertState:
    """Twilio refused `recipient` for good: the news in `notes` never reached them.

    They are then not told of those incidents: no reminder, no recovery, and a
    late PROBLEM with the next reminder, in case the number works again by then.
    """
    checks = {n.check for n in notes if n.kind in NEWS_OF_A_PROBLEM}
    records = dict(state.checks)
    for name in checks:
        record = records.get(name)
        if record is None or record.incident is None or record.incident.told is None:
            continue
        told = {**record.incident.told, recipient: FAILED}
        records[name] = replace(record, incident=replace(record.incident, told=told))
    return replace(state, checks=records)


def _observe(
    record: CheckRecord, result: CheckResult, now: datetime, policy: Policy
) -> CheckRecord:
    """Add this run to the check's history, and judge whether it flaps."""
    letter = NO_EVIDENCE if result.caused_by is not None else STATUS_LETTERS[result.status]
    history = push_history(record.history, letter)
    flapping = is_flapping(history, record.flapping, policy.flap)
    failed, _ = failed_runs(history, _problem_letters(policy))
    # A check that flaps between OK and a status below ALERT_LEVEL pages nobody.
    flapping = flapping and failed >= policy.alert_after
    failing = _is_problem(result, policy)
    last_problem = result.summary if failing else record.last_problem
    failing_since = (record.failing_since or now) if failing else record.failing_since
    if not failed:
        failing_since = None  # no failing run left in the window
    return replace(
        record,
        history=history,
        flapping=flapping,
        last_problem=last_problem,
        failing_since=failing_since,
    )


def _problem_letters(policy: Policy) -> str:
    return "".join(
        letter
        for status, letter in STATUS_LETTERS.items()
        if status.severity >= policy.alert_level.severity and status is not Status.OK
    )


def _flap_summary(record: CheckRecord, policy: Policy) -> str:
    failed, judged = failed_runs(record.history, _problem_letters(policy))
    return f"failed {failed} of the last {judged} runs ({record.last_problem})"


def _while_flapping(
    before: CheckRecord,
    record: CheckRecord,
    note: Notification | None,
    result: CheckResult,
    now: datetime,
    policy: Policy,
    silenced: bool,
) -> tuple[CheckRecord, Notification | None]:
    """A flapping check keeps one incident open: one FLAPPING text, reminders, no recovery.

    The usual rules would open and close it with every swing (a PROBLEM and a
    RECOVERY every few minutes), or never open it at all when it is down every
    other run and so never reaches ALERT_AFTER failing runs in a row.
    """
    if before.incident is not None and record.incident is None:
        # No recovery while it flaps: the incident stays open until it is stable.
        record = replace(record, incident=before.incident, problem_since=before.problem_since)
        note = None
    summary = _flap_summary(record, policy)
    incident = record.incident
    if incident is not None and incident.notified_status is not None:
        if note is not None and note.kind is Kind.REMINDER:
            note = replace(note, summary=summary)
        return record, note
    if incident is not None and incident.silenced:
        return record, note  # SILENCE_ENDED tells of it when the silence ends
    if not _is_problem(result, policy):
        return record, note  # told on its next failing run, never right after a recovery
    since = (incident.opened_at if incident else None) or record.failing_since or now
    if silenced:
        return replace(record, incident=Incident(since, None, None, summary, silenced=True)), None
    letters = set(record.history) - {NO_EVIDENCE, "O"}
    status = max(
        (s for s, letter in STATUS_LETTERS.items() if letter in letters),
        key=lambda s: s.severity,
        default=result.status,
    )
    opened = Incident(since, status, now, summary)
    record = replace(record, incident=opened, problem_since=since)
    return record, Notification(Kind.FLAPPING, result.name, status, summary, since, now)


def _is_problem(result: CheckResult, policy: Policy) -> bool:
    return result.caused_by is None and result.status.severity >= policy.alert_level.severity


def _decide_one(
    record: CheckRecord, result: CheckResult, now: datetime, policy: Policy, silenced: bool
) -> tuple[CheckRecord, Notification | None]:
    if result.caused_by is not None:
        return record, None  # a consequence is no evidence either way

    if _is_problem(result, policy):
        record = replace(
            record,
            problem_runs=record.problem_runs + 1,
            ok_runs=0,
            ok_since=None,
            problem_since=record.problem_since or now,
        )
    elif result.status is Status.OK:
        record = replace(
            record, ok_runs=record.ok_runs + 1, problem_runs=0, ok_since=record.ok_since or now
        )
        if record.incident is None:
            record = replace(record, problem_since=None)
    else:
        # Below ALERT_LEVEL but not OK (a WARNING when only CRITICAL pages):
        # it neither builds towards a new incident nor counts towards recovery.
        record = replace(record, problem_runs=0, ok_runs=0, ok_since=None)
        if record.incident is None:
            record = replace(record, problem_since=None)

    incident = record.incident
    since = record.problem_since or now

    def notify(kind: Kind) -> Notification:
        return Notification(kind, result.name, result.status, result.summary, since, now)

    # --- no incident yet: does this run open one? ---
    if incident is None:
        if record.problem_runs < policy.alert_after:
            return record, None
        if silenced:
            opened = Incident(since, None, None, result.summary, silenced=True)
            return replace(record, incident=opened), None
        opened = Incident(since, result.status, now, result.summary)
        return replace(record, incident=opened), notify(Kind.PROBLEM)

    # --- an incident is open ---
    if record.ok_runs >= policy.alert_after:
        closed = replace(record, incident=None, problem_since=None)
        # ok_since stays: it is when the problem ended, for the recovery text.
        if silenced:
            # Told or not, no SMS during a silence; keep the incident until it
            # ends so a recovery of a problem somebody was told about still goes out.
            if incident.notified_status is None:
                return closed, None
            return replace(record, incident=replace(incident, silenced=True)), None
        if incident.notified_status is None:
            return closed, None  # never a recovery for a problem nobody was told about
        return closed, replace(notify(Kind.RECOVERY), ended=record.ok_since)

    still_a_problem = _is_problem(result, policy)
    if silenced:
        return replace(
            record, incident=replace(incident, silenced=True, summary=result.summary)
        ), None

    if incident.silenced:
        # The silence is over.
        if not still_a_problem and incident.notified_status is None:
            # Nobody was told and it is fine right now: keep the flag, so that if
            # it fails again before closing, SILENCE_ENDED still tells somebody.
            return record, None
        incident = replace(incident, silenced=False)
        if still_a_problem:
            told = replace(
                incident, notified_status=_higher(incident.notified_status, result.status)
            )
            told = replace(told, last_notified_at=now, summary=result.summary)
            return replace(record, incident=told), notify(Kind.SILENCE_ENDED)
        record = replace(record, incident=incident)

    if not still_a_problem or incident.notified_status is None:
        return record, None

    if result.status.severity > incident.notified_status.severity:
        raised = replace(
            incident, notified_status=result.status, last_notified_at=now, summary=result.summary
        )
        return replace(record, incident=raised), notify(Kind.ESCALATION)

    if policy.remind_every_minutes and incident.last_notified_at is not None:
        due = incident.last_notified_at + timedelta(minutes=policy.remind_every_minutes)
        # A clock that went back would make `due` unreachable for an hour; a
        # reminder timer measured from a future time is reset instead.
        if now < incident.last_notified_at:
            incident = replace(incident, last_notified_at=now)
        elif now >= due:
            reminded = replace(incident, last_notified_at=now, summary=result.summary)
            return replace(record, incident=reminded), notify(Kind.REMINDER)
    return replace(record, incident=replace(incident, summary=result.summary)), None


def explain(
    state: AlertState,
    result: CheckResult,
    notifications: list[Notification],
    now: datetime,
    policy: Policy,
    sms_configured: bool = True,
) -> str:
    """What the rules did with one check this run, and why, in words."""
    record = state.checks.get(result.name)
    sent = [n for n in notifications if n.check == result.name]
    if sent:
        words = []
        for n in sent:
            kind = "escalated" if n.escalated else n.kind.value.lower().replace("_", " ")
            who = f" to {', '.join(policy.name_of(r) for r in n.to)}" if n.to else ""
            verb = "called" if n.kind is Kind.CALL else "texted"
            words.append(f"{verb} ({kind}){who}")
        if not sms_configured:
            return f"due ({sent[0].kind.value.lower()}), but SMS is not configured"
        return "; ".join(words) + _step_words(record, policy)
    if result.caused_by is not None:
        return f"not texted: consequence of {result.caused_by}"
    if result.status.severity < policy.alert_level.severity:
        return f"not texted: below ALERT_LEVEL={policy.alert_level.name}"
    silence = next((s for s in state.silences if s.covers(result.name, now)), None)
    if silence is not None:
        return f"silenced until {format_time(silence.until)} ({silence.reason})"
    if record is None or record.incident is None:
        runs = record.problem_runs if record else 0
        return f"not texted yet: {runs} of {policy.alert_after} failing runs"
    incident = record.incident
    if incident.last_notified_at is None:
        return "not texted"
    told = f"texted at {format_time(incident.last_notified_at)}"
    if incident.acked_by is not None:
        told += f", ACKed by {policy.name_of(incident.acked_by)}"
    if not policy.remind_every_minutes:
        return f"{told}; reminders off" + _step_words(record, policy)
    due = incident.last_notified_at + timedelta(minutes=policy.remind_every_minutes)
    return f"{told}; next reminder at {format_time(due)}" + _step_words(record, policy)


def _step_words(record: CheckRecord | None, policy: Policy) -> str:
    """'; next: escalate to michael, rob unless ACKed at 02:15Z', for an unACKed incident."""
    incident = record.incident if record else None
    if not policy.recipients or incident is None or incident.notified_status is None:
        return ""
    if incident.acked_by is not None:
        return ""
    untold = [r for r in policy.recipients if r not in (incident.told or {})]
    step, due = _next_step(
        incident, policy, untold, timedelta(minutes=policy.escalate_after_minutes)
    )
    return f"; next: {step}" + (f" at {format_time(due)}" if due else "")


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SILENCE_SECONDS = 30 * 86400


def parse_duration(text: str) -> int:
    """`45s`, `30m`, `2h`, `1d`, or combined: `1h30m`. Seconds, at most 30 days."""
    cleaned = text.strip().lower()
    parts = re.findall(r"(\d+)\s*([smhd])", cleaned)
    if not parts or re.sub(r"\d+\s*[smhd]", "", cleaned).strip():
        raise ValueError(f"{text!r} is not a duration: use forms such as 45s, 30m, 2h, 1d")
    seconds = sum(int(number) * _DURATION_UNITS[unit] for number, unit in parts)
    if not 0 < seconds <= MAX_SILENCE_SECONDS:
        raise ValueError(f"{text!r}: a silence lasts from 1s to 30d")
    return seconds


def _higher(a: Status | None, b: Status) -> Status:
    return b if a is None or b.severity > a.severity else a


# --- the state file's "alerts" section ---------------------------------------


def alert_state_to_json(state: AlertState) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    for name, record in state.checks.items():
        item = asdict(record)
        item["problem_since"] = format_time(record.problem_since) if record.problem_since else None
        item["ok_since"] = format_time(record.ok_since) if record.ok_since else None
        item["failing_since"] = format_time(record.failing_since) if record.failing_since else None
        if record.incident is not None:
            item["incident"] = record.incident.to_json()
        checks[name] = item
    return {"checks": checks, "silences": [s.to_json() for s in state.silences]}


def alert_state_from_json(data: Any) -> AlertState:
    """Read the section back; a damaged entry is dropped, not fatal."""
    if not isinstance(data, dict):
        return AlertState()
    checks: dict[str, CheckRecord] = {}
    raw_checks = data.get("checks")
    for name, item in (raw_checks if isinstance(raw_checks, dict) else {}).items():
        try:
            checks[str(name)] = _record_from_json(item)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            continue
    silences = []
    raw_silences = data.get("silences")
    for item in raw_silences if isinstance(raw_silences, list) else []:
        try:
            silences.append(Silence.from_json(item))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            continue
    return AlertState(checks, tuple(silences))


def _record_from_json(item: dict[str, Any]) -> CheckRecord:
    incident = None
    raw = item.get("incident")
    if raw:
        incident = Incident(
            opened_at=parse_time(raw["opened_at"]),
            notified_status=Status[raw["notified_status"]] if raw.get("notified_status") else None,
            last_notified_at=parse_time(raw["last_notified_at"])
            if raw.get("last_notified_at")
            else None,
            summary=str(raw.get("summary", "")),
            silenced=bool(raw.get("silenced", False)),
            told=_told_from_json(raw["told"]) if "told" in raw else None,
            paged_at=_time_or_none(raw.get("paged_at")),
            told_at=_times_from_json(raw.get("told_at")),
            escalated_at=_time_or_none(raw.get("escalated_at")),
            called=_told_from_json(raw.get("called")),
            acked_by=str(raw["acked_by"]) if raw.get("acked_by") else None,
            acked_at=_time_or_none(raw.get("acked_at")),
        )
        if incident.notified_status is not None and "paged_at" not in raw:
            # Written before the on-call steps, when everyone was told at once:
            # the escalation step (due at once) then tells nobody new, and the
            # call counts from that run, not from a time already past.
            incident = replace(incident, paged_at=incident.last_notified_at or incident.opened_at)
    since = item.get("problem_since")
    ok_since = item.get("ok_since")
    history = item.get("history", "")
    return CheckRecord(
        history=history[-21:] if isinstance(history, str) and set(history) <= set("OWCU-") else "",
        flapping=bool(item.get("flapping", False)),
        last_problem=str(item.get("last_problem", "")),
        failing_since=parse_time(item["failing_since"]) if item.get("failing_since") else None,
        problem_runs=max(0, int(item.get("problem_runs", 0))),
        ok_runs=max(0, int(item.get("ok_runs", 0))),
        problem_since=parse_time(since) if since else None,
        ok_since=parse_time(ok_since) if ok_since else None,
        incident=incident,
    )


def _told_from_json(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {
        str(r): str(s)
        for r, s in raw.items()
        if isinstance(s, str) and (s == FAILED or s in Status.__members__)
    }


def _time_or_none(raw: Any) -> datetime | None:
    return parse_time(raw) if isinstance(raw, str) and raw else None


def _times_from_json(raw: Any) -> dict[str, datetime]:
    if not isinstance(raw, dict):
        return {}
    times = {}
    for r, t in raw.items():
        try:
            times[str(r)] = parse_time(t)
        except (TypeError, ValueError, AttributeError, OverflowError):
            continue
    return times


# --- ACKs and calls, applied between runs of decide ---------------------------


def acknowledge(
    state: AlertState, acks: Iterable[Ack], now: datetime, policy: Policy
) -> tuple[AlertState, list[Notification], list[str]]:
    """Apply ACKs to the open incidents they name. Pure, like `decide`.

    Returns the new state, the `[eu2] ACK nodeos by luke` texts for the others
    who were told, and one line per ACK saying what it did. An ACK from a
    number not in ALERT_TO, or of an incident texted after it was sent, does
    nothing; an incident already acknowledged keeps its first ACK.
    """
    numbers = set(policy.recipients) | {o.number for o in policy.operators}
    records = dict(state.checks)
    texts: list[Notification] = []
    lines: list[str] = []
    for ack in sorted(acks, key=lambda a: a.at):
        if ack.number not in numbers:
            lines.append(f"ACK from {_masked(ack.number)} ignored: not a number in ALERT_TO")
            continue
        name = policy.name_of(ack.number)
        done = []
        for check, record in records.items():
            incident = record.incident
            if incident is None or incident.notified_status is None:
                continue
            if incident.acked_by is not None:
                continue
            if ack.check is not None and not matches(check, ack.check):
                continue
            if incident.paged_at is not None and ack.at < incident.paged_at:
                # Sent before this incident's first text (or before it got worse
                # than what was ACKed): an answer to something else. Replies are
                # read again every run, so no allowance: a reply the clocks make
                # look early leaves the escalation going, which is the safe side.
                continue
            acked = replace(incident, acked_by=ack.number, acked_at=ack.at)
            # (told None: a state from before `told` was kept, when everyone was told.)
            if (
                ack.number in policy.recipients
                and incident.told is not None
                and incident.told.get(ack.number) in (None, FAILED)
            ):
                # ACKed before any text reached them (from the terminal, asleep):
                # they are on it now, so they hear of its reminders and its end.
                told_now = {**(incident.told or {}), ack.number: incident.notified_status.name}
                told_at = {**incident.told_at, ack.number: incident.told_at.get(ack.number, now)}
                acked = replace(acked, told=told_now, told_at=told_at)
            records[check] = replace(record, incident=acked)
            done.append(check)
            told = _told(incident, policy.recipients)
            others = tuple(
                r for r in policy.recipients if r != ack.number and told.get(r, FAILED) != FAILED
            )
            if others:
                texts.append(
                    Notification(
                        Kind.ACK,
                        check,
                        incident.notified_status,
                        name,
                        incident.opened_at,
                        now,
                        to=others,
                    )
                )
        what = f"ACK {ack.check}" if ack.check else "ACK"
        if done:
            lines.append(f"{what} by {name} ({ack.via}): acknowledged {', '.join(done)}")
        else:
            lines.append(f"{what} by {name} ({ack.via}): no open incident to acknowledge")
    return replace(state, checks=records), texts, lines


def _masked(number: str) -> str:
    """A stranger's number, shown enough to recognise: +44******0123."""
    return number[:3] + "*" * max(0, len(number) - 7) + number[-4:]


def call_failed(state: AlertState, recipient: str, check: str, for_good: bool) -> AlertState:
    """A call that Twilio did not place: tried again next run, or never (for_good)."""
    record = state.checks.get(check)
    if record is None or record.incident is None or recipient not in record.incident.called:
        return state
    called = dict(record.incident.called)
    if for_good:
        called[recipient] = FAILED
    else:
        del called[recipient]
    records = {
        **state.checks,
        check: replace(record, incident=replace(record.incident, called=called)),
    }
    return replace(state, checks=records)


def oncall_view(state: AlertState, policy: Policy, now: datetime) -> list[dict[str, Any]]:
    """Per open incident that was texted: who was told and when, who ACKed, who
    was called, and the next step with when it is due. For `status`, -v and --json."""
    view = []
    wait = timedelta(minutes=policy.escalate_after_minutes)
    for check, record in state.checks.items():
        incident = record.incident
        if incident is None or incident.notified_status is None:
            continue
        told = incident.told or {}
        untold = [r for r in policy.recipients if r not in told]
        step, due = _next_step(incident, policy, untold, wait)
        view.append(
            {
                "check": check,
                "status": incident.notified_status.name,
                "since": format_time(incident.opened_at),
                "told": {
                    policy.name_of(r): format_time(t)
                    for r, t in sorted(incident.told_at.items(), key=lambda item: item[1])
                },
                "acked_by": policy.name_of(incident.acked_by) if incident.acked_by else None,
                "acked_at": format_time(incident.acked_at) if incident.acked_at else None,
                "called": {policy.name_of(r): s for r, s in incident.called.items() if s != FAILED},
                "next": step,
                "due": format_time(due) if due else None,
            }
        )
    return view


def _next_step(
    incident: Incident, policy: Policy, untold: list[str], wait: timedelta
) -> tuple[str, datetime | None]:
    names = ", ".join(policy.name_of(r) for r in untold)
    if incident.acked_by is not None:
        who = policy.name_of(incident.acked_by)
        if policy.remind_every_minutes and incident.last_notified_at:
            due = incident.last_notified_at + timedelta(minutes=policy.remind_every_minutes)
            return f"reminder to {who} only (ACKed)", due
        return f"none: ACKed by {who}", None
    if incident.silenced:
        return "none while silenced", None
    if incident.paged_at is None:
        return "none", None
    if incident.escalated_at is None:
        if untold:
            return f"escalate to {names} unless ACKed", incident.paged_at + wait
        return "escalate (everyone was told), then the call", incident.paged_at + wait
    if policy.call_on is None:
        return "none: calls are off; waiting for an ACK", None
    if incident.notified_status.severity < policy.call_on.severity:
        return f"none: calls are for {policy.call_on.name} and above; waiting for an ACK", None
    if all(r in incident.called for r in policy.recipients):
        return "none: everyone was called; waiting for an ACK", None
    return "call everyone unless ACKed", incident.escalated_at + wait
