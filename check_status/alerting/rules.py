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
from check_status.model import CheckResult, Status, format_time, parse_time


class Kind(enum.StrEnum):
    PROBLEM = "PROBLEM"
    FLAPPING = "FLAPPING"
    ESCALATION = "ESCALATION"
    REMINDER = "REMINDER"
    RECOVERY = "RECOVERY"
    SILENCE_ENDED = "SILENCE_ENDED"


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

    def to_json(self) -> dict[str, Any]:
        return {
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

    - news of a problem (PROBLEM, ESCALATION, SILENCE_ENDED) goes to everyone;
    - a REMINDER goes to those told; anyone not told gets a late PROBLEM instead;
    - with no news due, a recipient never told of an open incident that was
      texted (keys set late, a number added to ALERT_TO) gets a late PROBLEM;
      one Twilio refused for good is retried only with the reminders;
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
    addressed: list[Notification] = []
    late: tuple[str, ...] = ()
    if note is not None and note.kind in NEWS_OF_A_PROBLEM:
        addressed.append(replace(note, to=recipients))
        for r in recipients:
            told[r] = _higher_name(told.get(r), note.status)
    elif note is not None:  # a REMINDER
        reminded = tuple(r for r in recipients if told.get(r, FAILED) != FAILED)
        if reminded:
            addressed.append(replace(note, to=reminded))
        late = tuple(r for r in recipients if r not in reminded)
    elif (
        incident.notified_status is not None
        and not incident.silenced
        and _is_problem(result, policy)
    ):
        late = tuple(r for r in recipients if r not in told)
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
    return replace(record, incident=replace(incident, told=told)), addressed


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
        kind = sent[0].kind.value.lower().replace("_", " ")
        return f"texted ({kind})" if sms_configured else f"due ({kind}), but SMS is not configured"
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
    if not policy.remind_every_minutes:
        return f"{told}; reminders off"
    due = incident.last_notified_at + timedelta(minutes=policy.remind_every_minutes)
    return f"{told}; next reminder at {format_time(due)}"


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
        )
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
