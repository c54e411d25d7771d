"""The outbox: notifications waiting for each recipient, and their delivery.

Nothing is marked sent until Twilio has accepted it, and each recipient has
their own queue. So:
- a notification that could not be sent (Twilio down, a timeout, a 500) stays
  queued and goes out with the next run's SMS;
- everything queued for a recipient goes out as ONE SMS per run;
- a recipient who got the message is never texted again because another
  recipient failed;
- a permanent failure (an invalid number, STOP) empties that recipient's queue
  and is recorded, instead of being retried forever.

`enqueue` and `apply_outcomes` are pure; `deliver` is the shell that talks to Twilio.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from check_status.alerting.rules import NEWS_OF_A_PROBLEM, Kind, Notification
from check_status.alerting.sms import render_sms
from check_status.config import Config
from check_status.model import format_time
from check_status.notify import NotifyError
from check_status.notify.twilio_sms import TwilioSettings

# A recipient unreachable for days must not grow the state file without end;
# the newest notifications are the ones worth keeping.
MAX_QUEUED_PER_RECIPIENT = 30

# A 2xx from Twilio is an acceptance, even when its body could not be read.
NO_MESSAGE_ID = "sent, but Twilio's answer had no message id"


@dataclass(frozen=True)
class Outcome:
    recipient: str
    # "sent"; "pending" (retried next run); "failed" (for good, for this number);
    # "refused" (a code Twilio's table lacks: see settle_refusal); "held" (the
    # sender or account is misconfigured: nothing can be sent to anyone)
    result: str
    body: str
    detail: str  # the message SID, or why it was not sent


def load_outbox(data: Any, recipients: Sequence[str]) -> dict[str, list[Notification]]:
    """Queued notifications per recipient. A number no longer in ALERT_TO is dropped."""
    outbox: dict[str, list[Notification]] = {r: [] for r in recipients}
    if not isinstance(data, dict):
        return outbox
    for recipient, items in data.items():
        if recipient not in outbox or not isinstance(items, list):
            continue
        for item in items:
            try:
                outbox[recipient].append(Notification.from_json(item))
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
                continue
    return outbox


def outbox_to_json(outbox: dict[str, list[Notification]]) -> dict[str, Any]:
    return {r: [n.to_json() for n in notes] for r, notes in outbox.items() if notes}


def enqueue(
    outbox: dict[str, list[Notification]], notifications: Sequence[Notification]
) -> dict[str, list[Notification]]:
    """Queue each notification for the recipients it is addressed to (None: everyone).

    A CALL is not a text: the run places it (see runner.place_calls), and it
    is never queued here.
    """
    notifications = [n for n in notifications if n.kind is not Kind.CALL]
    return {
        recipient: _cap(
            _supersede([*notes, *(n for n in notifications if n.to is None or recipient in n.to)])
        )
        for recipient, notes in outbox.items()
    }


def _cap(notes: list[Notification]) -> list[Notification]:
    """The newest MAX_QUEUED_PER_RECIPIENT notifications, without orphans.

    When the oldest are dropped, a dropped PROBLEM was never read by this
    recipient, so the reminders and the recovery queued after it would tell of
    a problem they never heard of: they go too, up to that check's next news
    of a problem. A dropped escalation or "silence over" counts the same: either
    can be the first this recipient would have heard of the incident (one that
    opened during a silence has no PROBLEM), and the queue cannot tell. Losing a
    recovery of a problem they did hear of is the lesser harm.
    """
    if len(notes) <= MAX_QUEUED_PER_RECIPIENT:
        return notes
    cut = len(notes) - MAX_QUEUED_PER_RECIPIENT
    untold: set[str] = set()
    for n in notes[:cut]:
        if n.kind in NEWS_OF_A_PROBLEM:
            untold.add(n.check)
        elif n.kind is Kind.RECOVERY:
            untold.discard(n.check)  # that incident is over, told or not
    kept = []
    for n in notes[cut:]:
        if n.check in untold:
            if n.kind not in NEWS_OF_A_PROBLEM:
                continue
            untold.discard(n.check)
        kept.append(n)
    return kept


def _supersede(notes: list[Notification]) -> list[Notification]:
    """Keep only the newest reminder per check: an old "still broken" says nothing new."""
    newest_reminder = {n.check: i for i, n in enumerate(notes) if n.kind is Kind.REMINDER}
    return [
        n
        for i, n in enumerate(notes)
        if n.kind is not Kind.REMINDER or newest_reminder[n.check] == i
    ]


def render_for(node: str, outbox: dict[str, list[Notification]], now: datetime) -> dict[str, str]:
    """The one SMS body each recipient with something queued gets this run."""
    return {r: render_sms(node, notes, now) for r, notes in outbox.items() if notes}


def apply_outcomes(
    outbox: dict[str, list[Notification]],
    outcomes: Sequence[Outcome],
    failures: dict[str, Any],
    now: datetime,
    codes: dict[str, int | None],
) -> tuple[dict[str, list[Notification]], dict[str, Any]]:
    """After a delivery attempt: sent and permanently failed queues are emptied."""
    outbox = dict(outbox)
    failures = dict(failures)
    for outcome in outcomes:
        if outcome.result in ("sent", "failed"):
            outbox[outcome.recipient] = []
        if outcome.result == "failed":
            failures[outcome.recipient] = {
                "code": codes.get(outcome.recipient),
                "reason": outcome.detail,
                "at": format_time(now),
            }
        elif outcome.result == "sent":
            failures.pop(outcome.recipient, None)
    return outbox, failures


# A 4xx with a code not in Twilio's table (notify/twilio_sms.py) may be
# transient or not; it is tried this many times, then given up for that number
# like a permanent failure, instead of being retried every minute forever.
UNKNOWN_CODE_TRIES = 3


def settle_refusal(
    outcome: Outcome, retries: dict[str, Any], now: datetime, code: int | None
) -> tuple[Outcome, dict[str, Any]]:
    """An answer with an unknown code: pending for its first tries, then failed for good."""
    retries = dict(retries)
    if outcome.result != "refused":
        if outcome.result in ("sent", "failed"):
            retries.pop(outcome.recipient, None)
        return outcome, retries
    before = retries.get(outcome.recipient)
    tried = before.get("tries") if isinstance(before, dict) else 0
    tries = (tried if isinstance(tried, int) and tried >= 0 else 0) + 1
    if tries >= UNKNOWN_CODE_TRIES:
        retries.pop(outcome.recipient, None)
        detail = f"{outcome.detail} (refused {UNKNOWN_CODE_TRIES} times: given up)"
        return Outcome(outcome.recipient, "failed", outcome.body, detail), retries
    retries[outcome.recipient] = {"code": code, "reason": outcome.detail, "tries": tries}
    detail = f"{outcome.detail} (try {tries} of {UNKNOWN_CODE_TRIES})"
    return Outcome(outcome.recipient, "pending", outcome.body, detail), retries


def sender_fingerprint(config: Config) -> str:
    """Changes whenever a setting that a configuration error could be about changes.

    A digest, so the state file never holds the token itself.
    """
    import hashlib

    settings = (
        config.twilio_account_sid,
        config.twilio_auth_token,
        config.twilio_from,
        config.twilio_messaging_service_sid,
        config.twilio_api_base_url,
    )
    return hashlib.sha256(repr(settings).encode()).hexdigest()[:16]


def twilio_settings(config: Config) -> TwilioSettings:
    assert config.twilio_account_sid and config.twilio_auth_token
    return TwilioSettings(
        account_sid=config.twilio_account_sid,
        auth_token=config.twilio_auth_token,
        sender_number=config.twilio_from,
        messaging_service_sid=config.twilio_messaging_service_sid,
        api_base_url=config.twilio_api_base_url,
    )


def deliver(
    bodies: dict[str, str],
    settings: TwilioSettings,
    on_outcome: Callable[[Outcome, int | None], None] | None = None,
) -> tuple[list[Outcome], dict[str, int | None]]:
    """Send each body to its recipient, concurrently, each bounded by the Twilio timeout.

    `on_outcome(outcome, code)` is called as soon as Twilio answers for one
    recipient, so the caller can record it before waiting for the slowest.
    """
    from check_status.concurrency import run_concurrently
    from check_status.notify.twilio_sms import make_client, send_sms

    def send(recipient: str, body: str) -> Outcome | NotifyError:
        try:
            client = make_client(settings)
            sid = send_sms(client, settings, recipient, body)
        except NotifyError as error:
            return error
        return Outcome(recipient, "sent", body, sid or NO_MESSAGE_ID)

    codes: dict[str, int | None] = {}

    def outcome_of(recipient: str, answer: Any) -> Outcome:
        if isinstance(answer, Outcome):
            return answer
        if isinstance(answer, NotifyError):
            codes[recipient] = answer.code
            kinds = {"recipient": "failed", "unknown": "refused", "config": "held"}
            result = kinds.get(answer.kind, "pending")
            return Outcome(recipient, result, bodies[recipient], answer.reason)
        # No answer by the deadline, or the client failed before sending (send_sms
        # itself turns every failure after an answer into a NotifyError): still
        # queued, retried next run.
        words = getattr(answer, "reason", "")
        detail = words if words.startswith("probe failed") else "no answer from Twilio in time"
        return Outcome(recipient, "pending", bodies[recipient], detail)

    def answered(recipient: str, answer: Any) -> None:
        if on_outcome is not None:
            on_outcome(outcome_of(recipient, answer), codes.get(recipient))

    tasks = {r: (lambda r=r, b=b: send(r, b)) for r, b in bodies.items()}
    answers = run_concurrently(tasks, settings.timeout + 1, answered)
    outcomes = [outcome_of(recipient, answer) for recipient, answer in answers.items()]
    return outcomes, codes


def place_calls(
    calls: Sequence[Notification], settings: TwilioSettings, node: str, now: datetime
) -> list[tuple[Outcome, tuple[str, ...]]]:
    """One voice call per operator due one, all at once, each bounded by the Twilio timeout.

    Returns (outcome, the checks that call was about) per operator; the outcome
    is "called", "pending" (tried again next run) or "failed" (for good).
    """
    from check_status.alerting.oncall import call_twiml
    from check_status.concurrency import run_concurrently
    from check_status.model import human_duration, worst
    from check_status.notify.twilio_sms import make_client, place_call

    due: dict[str, list[Notification]] = {}
    for n in calls:
        for r in n.to or ():
            due.setdefault(r, []).append(n)

    def about(notes: list[Notification]) -> tuple[str, str]:
        ordered = sorted(notes, key=lambda n: n.status.severity, reverse=True)
        first = ordered[0]
        lasted = human_duration((now - min(n.since for n in notes)).total_seconds())
        problems = [(n.check, n.status.name, n.summary) for n in ordered]
        status = worst(n.status for n in notes).name
        return call_twiml(node, problems, lasted), f"{status} {first.check}"

    def call(recipient: str) -> Outcome | NotifyError:
        twiml, what = about(due[recipient])
        try:
            sid = place_call(make_client(settings), settings, recipient, twiml)
        except NotifyError as error:
            return error
        return Outcome(
            recipient, "called", what, sid or "placed, but Twilio's answer had no call id"
        )

    tasks = {r: (lambda r=r: call(r)) for r in due}
    answers = run_concurrently(tasks, settings.timeout + 1)
    placed = []
    for recipient, notes in due.items():
        answer = answers.get(recipient)
        checks = tuple(n.check for n in notes)
        if isinstance(answer, Outcome):
            placed.append((answer, checks))
            continue
        what = about(notes)[1]
        if isinstance(answer, NotifyError):
            result = "failed" if answer.kind == "recipient" else "pending"
            placed.append((Outcome(recipient, result, what, answer.reason), checks))
        else:
            placed.append(
                (Outcome(recipient, "pending", what, "no answer from Twilio in time"), checks)
            )
    return placed
