"""SHELL: one run, start to end: probe -> judge -> remember -> report.

The data flows one way. Probes run concurrently in daemon threads, each with
its own timeout, and the whole probe phase has a hard deadline, so eight hung
endpoints cost one timeout, not eight, and a hung DNS lookup or NFS mount
cannot keep a cron run alive past the next one.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from check_status.alerting.rules import (
    AlertState,
    Kind,
    Notification,
    Policy,
    acknowledge,
    alert_state_from_json,
    alert_state_to_json,
    call_failed,
    decide,
    explain,
    oncall_view,
    refused_for_good,
)
from check_status.checks.chain_id import judge_chain_id
from check_status.checks.disk import judge_disk
from check_status.checks.endpoint import judge_endpoint
from check_status.checks.head_block import judge_head_block
from check_status.checks.lib import judge_lib
from check_status.checks.nodeos import judge_nodeos
from check_status.checks.state_db import judge_state_db
from check_status.concurrency import run_concurrently
from check_status.config import Config
from check_status.model import (
    CheckResult,
    ProbeFailure,
    Status,
    format_time,
    recorded_at,
    worst,
)
from check_status.probes.disk import probe_disk
from check_status.probes.nodeos import ChainInfo, fetch_chain_info, fetch_db_size

if TYPE_CHECKING:
    from check_status.delivery import Outcome
    from check_status.state import StateStore

# Features that are off by default (log scan, peers, SMS) are imported only
# when configured: cron starts this process 1,440 times a day, and import time
# is most of a healthy run's cost.

# Beyond each probe's own timeout, how long the run waits for a straggler
# (a statvfs on a hung NFS mount, which no HTTP timeout covers).
PROBE_GRACE_SECONDS = 1.0
# Starting Python, reading the state, importing twilio, saving: the rest of a run.
RUN_OVERHEAD_SECONDS = 3


def worst_case_seconds(config: Config) -> float:
    """The longest a run takes, whatever hangs, as one number of the settings:

        (HTTP_TIMEOUT_SECONDS + 1)  probes, all at once, each ended at its deadline
      + (10 + 1)                    Twilio, all recipients at once
      + 5                           the heartbeat ping
      + 3                           everything else

    With SMS and a heartbeat set: 23 s at the default timeout of 3 s, 40 s at
    the largest, 20 s. Each phase ends itself within its share; the CLI kills
    a run that still outlasts the sum, so cron runs never pile up.
    """
    from check_status.notify import HEARTBEAT_TIMEOUT_SECONDS, SEND_TIMEOUT_SECONDS

    probes = config.http_timeout_seconds + PROBE_GRACE_SECONDS
    # Texts and calls go out at once, in the same slot; the ACK replies are
    # read during the probes, within their timeout.
    twilio = SEND_TIMEOUT_SECONDS + 1 if config.sms_configured else 0
    heartbeat = HEARTBEAT_TIMEOUT_SECONDS if config.heartbeat_url else 0
    return probes + twilio + heartbeat + RUN_OVERHEAD_SECONDS


@dataclass(frozen=True)
class RunReport:
    node: str
    now: datetime
    results: tuple[CheckResult, ...]
    state_file: str
    notes: tuple[str, ...] = ()  # problems of the checker itself: state moved aside, not saved
    remarks: tuple[str, ...] = ()  # worth showing, not worth a WARNING: a missed heartbeat ping
    decisions: tuple[tuple[str, str], ...] = ()  # (check, what the alerting rules did and why)
    deliveries: tuple[Outcome, ...] = ()
    sms: str = "SMS not configured"
    dry_run: bool = False
    open_incidents: int = 0
    lock_problem: str | None = None  # the run lock could not be opened: nothing sent or saved
    # STATE_FILE names what must not be touched (a directory, a device, the env
    # file, a directory others can write to): alerting goes on from the fallback
    # copy, but the setting is wrong and stays wrong until fixed.
    state_problem: str | None = None
    calls: tuple[Outcome, ...] = ()  # the voice calls placed (or due, in a dry run)
    oncall: tuple[dict[str, Any], ...] = ()  # per texted incident: told, ACK, next step

    @property
    def status(self) -> Status:
        # A checker that lost or could not save its memory may miss or repeat
        # an alert: never report that as plain OK.
        if self.lock_problem or self.state_problem:
            return Status.UNKNOWN
        floor = Status.WARNING if self.notes else Status.OK
        return worst([floor, *(r.status for r in self.results)])


def probe_everything(
    config: Config, memory: dict[str, Any], replies_since: datetime | None = None
) -> dict[str, Any]:
    """Every probe at once. With `replies_since`, the SMS replies to TWILIO_FROM
    since then are read too, as one more probe, within the same timeout."""
    timeout = config.http_timeout_seconds
    tasks: dict[str, Callable[[], Any]] = {
        "get_info": lambda: fetch_chain_info(config.nodeos_url, timeout),
        "db_size": lambda: fetch_db_size(config.nodeos_url, timeout),
    }
    for url in config.endpoints:
        for attempt in range(config.endpoint_requests):
            tasks[f"endpoint {url} #{attempt}"] = lambda url=url: fetch_chain_info(url, timeout)
    for path in config.disk_paths:
        tasks[f"disk {path}"] = lambda path=path: probe_disk(path)
    if config.peers:
        from check_status.probes.peer import fetch_peer_status
    for name, url in config.peers:
        tasks[f"peer {name}"] = lambda url=url: fetch_peer_status(url, timeout)
    if config.nodeos_log:
        from check_status.probes.log import LogPosition, read_new_lines

        log_memory = memory.get("nodeos_log")
        position = LogPosition.from_json(
            log_memory.get("position") if isinstance(log_memory, dict) else None
        )
        tasks["nodeos_log"] = lambda: read_new_lines(config.nodeos_log, position)
    if replies_since is not None:
        tasks["replies"] = lambda: _read_replies(config, replies_since)
    return run_concurrently(tasks, timeout + PROBE_GRACE_SECONDS)


def _read_replies(config: Config, since: datetime) -> Any:
    from check_status.delivery import twilio_settings
    from check_status.notify import NotifyError
    from check_status.notify.twilio_sms import read_replies

    settings = dataclasses.replace(twilio_settings(config), timeout=config.http_timeout_seconds)
    try:
        return read_replies(settings, since)
    except NotifyError as error:
        return error


def replies_since(config: Config, alerts: Any) -> datetime | None:
    """When to read SMS replies from, or None: only while an incident that was
    texted is open and not acknowledged, and only where a reply can arrive
    (TWILIO_FROM; a messaging service's replies come through serve's webhook)."""
    if not (config.sms_configured and config.twilio_from and config.twilio_auth_token):
        return None
    waiting = [
        record.incident.paged_at
        for record in alert_state_from_json(alerts).checks.values()
        if record.incident is not None
        and record.incident.paged_at is not None
        and record.incident.acked_by is None
        and not record.incident.silenced
    ]
    return min(waiting) if waiting else None


def judge_everything(
    config: Config, facts: dict[str, Any], memory: dict[str, Any], now: datetime
) -> tuple[list[CheckResult], dict[str, Any]]:
    """CORE: every check, as pure functions of the facts. Returns results and new memory."""
    info: ChainInfo | ProbeFailure = facts["get_info"]
    new_memory: dict[str, Any] = {}
    results = [judge_nodeos(info, config.nodeos_url)]

    head, new_memory["head_block"] = judge_head_block(info, memory.get("head_block"), now, config)
    lib, new_memory["lib"] = judge_lib(info, memory.get("lib"), now, config)
    results += [head, lib]
    if config.expected_chain_id:
        results.append(judge_chain_id(info, config.expected_chain_id))
    results.append(judge_state_db(facts["db_size"], isinstance(info, ChainInfo), config))

    local_chain = config.expected_chain_id or (
        info.chain_id if isinstance(info, ChainInfo) else None
    )
    for url in config.endpoints:
        answers = [facts[f"endpoint {url} #{n}"] for n in range(config.endpoint_requests)]
        results.append(judge_endpoint(url, answers, local_chain, now, config))
    for path in config.disk_paths:
        results.append(judge_disk(path, facts[f"disk {path}"], config))
    if config.peers:
        from check_status.checks.peer import judge_peer
    for name, _url in config.peers:
        results.append(judge_peer(name, facts[f"peer {name}"], now))
    if config.nodeos_log:
        from check_status.checks.nodeos_log import fatal_hold_seconds, judge_nodeos_log

        log_result, new_memory["nodeos_log"] = judge_nodeos_log(
            facts["nodeos_log"],
            memory.get("nodeos_log"),
            now,
            fatal_hold_seconds(config.alert_after),
        )
        results.append(log_result)
    return _unique_names(results), {k: v for k, v in new_memory.items() if v is not None}


def _unique_names(results: list[CheckResult]) -> list[CheckResult]:
    """Two ENDPOINTS entries with the same host (http and https, say) keep apart."""
    seen: dict[str, int] = {}
    unique = []
    for result in results:
        count = seen.get(result.name, 0)
        seen[result.name] = count + 1
        if count:
            result = dataclasses.replace(result, name=f"{result.name}#{count + 1}")
        unique.append(result)
    return unique


def track_statuses(
    previous: dict[str, Any], results: list[CheckResult], now: datetime
) -> dict[str, dict[str, Any]]:
    """CORE: per check, its status, since when, and how many runs in a row it failed or passed."""
    tracked: dict[str, dict[str, Any]] = {}
    for result in results:
        before = previous.get(result.name)
        before = before if isinstance(before, dict) else {}
        failing = result.status is not Status.OK
        same = before.get("status") == result.status.name
        tracked[result.name] = {
            "status": result.status.name,
            "since": before.get("since", format_time(now)) if same else format_time(now),
            "failing_runs": (_count(before, "failing_runs") + 1) if failing else 0,
            "ok_runs": 0 if failing else _count(before, "ok_runs") + 1,
            "summary": result.summary,
        }
    return tracked


def _count(record: dict[str, Any], key: str) -> int:
    value = record.get(key)
    return value if isinstance(value, int) and value >= 0 else 0


def run_once(
    config: Config,
    now: datetime,
    *,
    dry_run: bool = False,
    notes: tuple[str, ...] = (),
    scheduled: bool = True,
    lock_problem: str | None = None,
) -> RunReport:
    """One whole run. The caller holds the run lock; `notes` are its problems so far.

    `scheduled` is False for a run typed at a terminal: it is recorded as the
    last run, but not as the last scheduled one, which alone proves cron works.

    `lock_problem` says the run lock could not be opened: the run then judges
    and reports like a dry run, and sends and saves nothing, since overlapping
    runs without a lock would each text everyone.

    The state is saved before any SMS goes out and again as each recipient's
    outcome comes back, so a run killed mid-delivery never re-sends a text
    that Twilio already accepted; if the state file cannot be written, a copy
    is kept in the fallback directory (see StateStore).
    """
    from check_status.state import StateStore

    notes = [lock_problem, *notes] if lock_problem else list(notes)
    acts = not dry_run and lock_problem is None  # this run may send and save
    store = StateStore(config.state_file, config.state_fallback_dir, config.env_file)
    loaded = store.load(now, move_aside=acts)
    if loaded.warning:
        notes.append(loaded.warning)
    state = loaded.data
    memory = state.get("memory", {})
    last_saved_at = recorded_at(state.get("last_run"))

    facts = probe_everything(config, memory, replies_since(config, state.get("alerts")))
    results, new_memory = judge_everything(config, facts, memory, now)

    state["checks"] = track_statuses(state.get("checks", {}), results, now)
    state["memory"] = new_memory
    state["last_run"] = {
        "at": format_time(now),
        "status": worst(r.status for r in results).name,
        "by": "schedule" if scheduled else "hand",
    }
    if scheduled:
        state["last_scheduled_run"] = {"at": state["last_run"]["at"]}

    alerts = alert_operators(
        config,
        state,
        results,
        now,
        store=store if acts else None,
        last_saved_at=last_saved_at,
        replies=facts.get("replies"),
    )
    notes += alerts.notes

    remarks: list[str] = list(alerts.remarks)
    if acts:
        notes += store.problems  # alert_operators saved the state
    report = RunReport(
        config.node_name,
        now,
        tuple(results),
        config.state_file,
        tuple(notes),
        tuple(remarks),
        alerts.decisions,
        () if lock_problem else alerts.deliveries,
        "nothing sent: the run lock could not be opened" if lock_problem else alerts.sms,
        dry_run,
        alerts.open_incidents,
        lock_problem,
        calls=() if lock_problem else alerts.calls,
        oncall=alerts.oncall,
    )
    if config.prometheus_textfile and acts:
        from check_status.prometheus import render, write_problem, write_textfile

        try:
            write_textfile(config.prometheus_textfile, render(report, alerts.open_incidents))
        except OSError as error:
            # A WARNING, not a remark: the file left behind goes stale, and the
            # only sign in Prometheus would be an alert about a stopped checker.
            # Written before the ping, so the heartbeat's body says so too.
            note = write_problem(config.prometheus_textfile, error)
            report = dataclasses.replace(report, notes=(*report.notes, note))
    if config.heartbeat_url and not dry_run:
        # After the save, so the ping can tell of a checker that cannot write
        # its state file or take its lock: the heartbeat service is then the
        # one left to say so. The body is the run's own line (without perfdata).
        trouble = (
            "run lock unavailable, nothing texted"
            if lock_problem
            else "state file not saved"
            if store.where != "file"
            else "SMS held: Twilio refuses the sender or account"
            if isinstance(state.get("sms_held"), dict)
            else None
        )
        ping_notes, ping_remarks = ping_heartbeat(config.heartbeat_url, report, trouble)
        report = dataclasses.replace(
            report,
            notes=(*report.notes, *ping_notes),
            remarks=(*report.remarks, *ping_remarks),
        )
    if store.refused:
        report = dataclasses.replace(report, state_problem=store.refused)
    return report


_UNSENT = {
    "failed": "failed for good",
    "called": "placed",
    "pending": "not sent, will retry",
    "refused": "refused, will retry",
    "held": "held",
}

# A run that can save its state nowhere does not know what the runs before it
# texted. The first such run (its state was saved a minute ago) sends as usual;
# later ones send only in the first run of each REMIND_EVERY_MINUTES window
# counted from the last save, so nobody gets the same text every minute.
FRESH_STATE_SECONDS = 90

# A sender or account problem (Twilio 21606, 20003, 30002...) fails every text
# alike: while the settings stay the same, Twilio is asked again this often,
# in case it was fixed in Twilio's console.
HELD_RETRY_SECONDS = 600


@dataclass(frozen=True)
class AlertReport:
    decisions: tuple[tuple[str, str], ...]
    deliveries: tuple[Outcome, ...]
    sms: str
    notes: tuple[str, ...]
    open_incidents: int = 0
    remarks: tuple[str, ...] = ()
    calls: tuple[Outcome, ...] = ()
    oncall: tuple[dict[str, Any], ...] = ()


def oncall_policy(config: Config) -> Policy:
    """The alerting rules' settings, with the on-call roster when SMS is set."""
    recipients = config.alert_to if config.sms_configured else ()
    # A call needs a number to call from: a messaging service cannot place one.
    calls = config.call_on != "NEVER" and bool(config.twilio_from)
    return Policy(
        alert_level=Status[config.alert_level],
        alert_after=config.alert_after,
        remind_every_minutes=config.remind_every_minutes,
        recipients=recipients,
        operators=config.operators,
        waking_hours=config.waking_hours,
        escalate_after_minutes=config.escalate_after_minutes,
        call_on=Status[config.call_on] if calls else None,
    )


def take_replies(
    replies: Any, config: Config, alerts: AlertState, now: datetime, policy: Policy
) -> tuple[AlertState, list[Notification], list[str], list[str]]:
    """Apply the ACKs among the SMS replies read this run.

    Returns the state, the ACK texts for the others, remarks (what each ACK
    did) and notes: replies that could not be read leave the escalation going
    although somebody may have answered, so the operator must see it.
    """
    if replies is None:
        return alerts, [], [], []
    from check_status.alerting.oncall import Ack, read_ack
    from check_status.notify import NotifyError

    if isinstance(replies, NotifyError | ProbeFailure) or not isinstance(replies, list):
        why = getattr(replies, "reason", None) or "no answer from Twilio in time"
        note = (
            f"SMS replies not read ({why}): an ACK by reply is not seen, and the escalation"
            " goes on; ACK with check-status ack CHECK --by NAME"
        )
        return alerts, [], [], [note]
    acks = []
    for reply in replies:
        is_ack, check = read_ack(reply.body)
        if is_ack:
            acks.append(Ack(reply.sender, check, reply.sent_at, "sms"))
    if not acks:
        return alerts, [], [], []
    alerts, texts, lines = acknowledge(alerts, acks, now, policy)
    return alerts, texts, lines, []


def alert_operators(
    config: Config,
    state: dict[str, Any],
    results: list[CheckResult],
    now: datetime,
    *,
    store: StateStore | None,
    last_saved_at: datetime | None = None,
    replies: Any = None,
) -> AlertReport:
    """Decide what to text, queue it per recipient, send it; update `state` in place.

    The state is saved here, once before anything is sent and again as each
    recipient's outcome comes back. With no `store` (a dry run, or no lock)
    nothing is sent and nothing saved.
    """
    policy = oncall_policy(config)
    previous = alert_state_from_json(state.get("alerts"))
    previous, ack_texts, remarks, notes = take_replies(replies, config, previous, now, policy)
    alert_state, notifications = decide(previous, results, now, policy)
    notifications = ack_texts + notifications
    state["alerts"] = alert_state_to_json(alert_state)
    oncall = tuple(oncall_view(alert_state, policy, now))
    decisions = tuple(
        (
            r.name,
            explain(alert_state, r, notifications, now, policy, config.sms_configured),
        )
        for r in results
        if r.status is not Status.OK or any(n.check == r.name for n in notifications)
    )
    open_incidents = sum(1 for record in alert_state.checks.values() if record.incident is not None)
    if not config.sms_configured:
        state.pop("outbox", None)
        if store is not None:
            store.save(state)
        return AlertReport(decisions, (), "SMS not configured", (), open_incidents)
    calls = [n for n in notifications if n.kind is Kind.CALL]

    from check_status.delivery import (
        Outcome,
        apply_outcomes,
        deliver,
        enqueue,
        load_outbox,
        outbox_to_json,
        render_for,
        sender_fingerprint,
        settle_refusal,
        twilio_settings,
    )

    queued_before = load_outbox(state.get("outbox"), config.alert_to)
    outbox = enqueue(queued_before, notifications)
    bodies = render_for(config.node_name, outbox, now)
    state["outbox"] = outbox_to_json(outbox)
    if store is None:
        would = tuple(Outcome(r, "would send", body, "dry run") for r, body in bodies.items())
        would_call = tuple(
            Outcome(r, "would call", n.check, "dry run") for n in calls for r in n.to or ()
        )
        return AlertReport(
            decisions,
            would,
            "dry run: nothing sent",
            tuple(notes),
            open_incidents,
            tuple(remarks),
            would_call,
            oncall,
        )
    store.save(state)  # what is about to be sent is on disk before it is sent
    if store.where is None and not (last_saved_at and _fresh(now, last_saved_at)):
        # Nowhere to save, and the runs since the last save decided from the
        # same old state: failing runs cannot be counted without a memory, so
        # decide as if ALERT_AFTER were 1, and send only in the first run of
        # each window, since the runs before this one sent the same texts.
        alert_state, notifications = decide(
            previous, results, now, dataclasses.replace(policy, alert_after=1)
        )
        notifications = ack_texts + notifications
        calls = [n for n in notifications if n.kind is Kind.CALL]
        outbox = enqueue(queued_before, notifications)
        bodies = render_for(config.node_name, outbox, now)
        if bodies and not _may_send_unsaved(now, last_saved_at, policy):
            notes.append(
                f"SMS to {', '.join(sorted(bodies))} held back: the state cannot be saved, "
                "so this run cannot tell what the last one texted; "
                "texts go out once per REMIND_EVERY_MINUTES"
            )
            bodies = {}
    if calls and store.where is None:
        # A call decided but not saved would be decided, and placed, every run.
        notes.append(
            "calls held back: the state cannot be saved, so each run would call again;"
            " fix the state file"
        )
        calls = []

    held = state.get("sms_held")
    if bodies and isinstance(held, dict) and held.get("settings") == sender_fingerprint(config):
        tried_at = recorded_at({"at": held.get("tried_at")})
        if tried_at is not None and 0 <= (now - tried_at).total_seconds() < HELD_RETRY_SECONDS:
            # The sender or the account is wrong: every text would fail alike.
            bodies = {}
    failures = state.get("delivery_failures")
    retries = state.get("delivery_retries")
    progress = {
        "outbox": outbox,
        "failures": failures if isinstance(failures, dict) else {},
        "retries": retries if isinstance(retries, dict) else {},
        "alerts": alert_state,
    }

    def record(outcome: Outcome, code: int | None) -> None:
        # Called as each recipient's answer arrives, one at a time, in a worker
        # thread: a failure here must reach the run's line, not a traceback.
        try:
            remember(outcome, code)
        except Exception as error:
            notes.append(
                f"could not record the SMS outcome for {outcome.recipient}"
                f" ({type(error).__name__}): it may be sent again next run"
            )

    def remember(outcome: Outcome, code: int | None) -> None:
        outcome, progress["retries"] = settle_refusal(outcome, progress["retries"], now, code)
        settled[outcome.recipient] = outcome
        sent_notes = progress["outbox"].get(outcome.recipient, [])
        progress["outbox"], progress["failures"] = apply_outcomes(
            progress["outbox"], [outcome], progress["failures"], now, {outcome.recipient: code}
        )
        if outcome.result == "failed":
            progress["alerts"] = refused_for_good(progress["alerts"], outcome.recipient, sent_notes)
        state["outbox"] = outbox_to_json(progress["outbox"])
        state["delivery_failures"] = progress["failures"]
        state["delivery_retries"] = progress["retries"]
        state["alerts"] = alert_state_to_json(progress["alerts"])
        if outcome.result == "held":
            state["sms_held"] = {
                "reason": outcome.detail,
                "code": code,
                "since": held.get("since") if isinstance(held, dict) else format_time(now),
                "tried_at": format_time(now),
                "settings": sender_fingerprint(config),
            }
        elif outcome.result == "sent":
            state.pop("sms_held", None)
        if store.where is not None:
            store.save(state)

    settled: dict[str, Outcome] = {}
    calling = _start_calls(calls, config, now)  # at the same time as the texts
    answers, _codes = deliver(bodies, twilio_settings(config), record) if bodies else ([], {})
    placed = calling()
    if placed:
        alerts_after = progress["alerts"]
        for outcome, checks in placed:
            if outcome.result == "called":
                continue
            for check in checks:
                alerts_after = call_failed(
                    alerts_after, outcome.recipient, check, outcome.result == "failed"
                )
        state["alerts"] = alert_state_to_json(alerts_after)
        if store.where is not None:
            store.save(state)
        notes += [
            f"call to {policy.name_of(o.recipient)} "
            + (
                "failed for good"
                if o.result == "failed"
                # A timeout may still have rung: said, since the retry may ring twice.
                else "not confirmed, will retry (it may have rung already)"
                if o.detail == "no answer from Twilio in time"
                else "not placed, will retry"
            )
            + f": {o.detail}"
            for o, _ in placed
            if o.result != "called"
        ]
    # An answer that came too late for `record` (the run's deadline) stays pending.
    outcomes = [settled.get(o.recipient, o) for o in answers]
    state["delivery_failures"] = progress["failures"]
    held = state.get("sms_held")
    if isinstance(held, dict):
        notes.append(
            f"SMS held since {held.get('since')}: {held.get('reason')}; nothing can be texted"
            " until this is fixed (retried every 10 minutes, and at once when the settings change)"
        )
    # One note per reason: a bad token or a Twilio outage fails every recipient
    # alike, and the operator needs to read it once, not once per phone.
    unsent: dict[tuple[str, str], list[str]] = {}
    for o in outcomes:
        if o.result != "sent":
            unsent.setdefault((o.result, o.detail), []).append(o.recipient)
    notes += [
        f"SMS to {', '.join(recipients)} {_UNSENT[result]}: {detail}"
        for (result, detail), recipients in unsent.items()
        if result != "held"  # said once, above
    ]
    sent = sum(1 for o in outcomes if o.result == "sent")
    summary = f"SMS sent to {sent} of {len(outcomes)}" if outcomes else "no SMS due"
    if placed:
        called = sum(1 for o, _ in placed if o.result == "called")
        summary += f"; called {called} of {len(placed)}"
    return AlertReport(
        decisions,
        tuple(outcomes),
        summary,
        tuple(notes),
        open_incidents,
        tuple(remarks),
        tuple(o for o, _ in placed),
        oncall,
    )


def _start_calls(
    calls: list[Notification], config: Config, now: datetime
) -> Callable[[], list[tuple[Outcome, tuple[str, ...]]]]:
    """Start placing the calls in the background; the returned function waits for them.

    The calls share the texts' time slot (runner.worst_case_seconds): each is
    bounded by the same Twilio timeout, and they run at the same time.
    """
    if not calls:
        return list
    import threading

    from check_status.delivery import place_calls, twilio_settings

    placed: list[tuple[Outcome, tuple[str, ...]]] = []

    def work() -> None:
        try:
            placed.extend(place_calls(calls, twilio_settings(config), config.node_name, now))
        except Exception as error:  # every call stays due, and is tried again next run
            from check_status.delivery import Outcome

            reason = f"calls failed ({type(error).__name__})"
            for n in calls:
                placed.extend(
                    (Outcome(r, "pending", n.check, reason), (n.check,)) for r in n.to or ()
                )

    worker = threading.Thread(target=work, daemon=True)
    worker.start()

    def wait() -> list[tuple[Outcome, tuple[str, ...]]]:
        from check_status.notify import SEND_TIMEOUT_SECONDS

        worker.join(SEND_TIMEOUT_SECONDS + 2)
        done = list(placed)
        if worker.is_alive():  # not expected: place_calls ends itself in time
            from check_status.delivery import Outcome

            answered = {o.recipient for o, _ in done}
            for n in calls:
                done += [
                    (Outcome(r, "pending", n.check, "no answer from Twilio in time"), (n.check,))
                    for r in n.to or ()
                    if r not in answered
                ]
        return done

    return wait


def _fresh(now: datetime, last_saved_at: datetime) -> bool:
    return 0 <= (now - last_saved_at).total_seconds() < FRESH_STATE_SECONDS


def _may_send_unsaved(now: datetime, last_saved_at: datetime | None, policy: Policy) -> bool:
    """For a run that can save nowhere: is it the first run of its window?

    Windows of REMIND_EVERY_MINUTES start with the second run after the last
    save (the first one decided as usual), so a first PROBLEM goes out within
    two minutes, and then at most once a window.
    """
    if last_saved_at is not None and _fresh(now, last_saved_at):
        return True
    anchor = last_saved_at or datetime(1970, 1, 1, tzinfo=UTC)
    window = max(policy.remind_every_minutes, 1) * 60
    return ((now - anchor).total_seconds() - FRESH_STATE_SECONDS) % window < 60


# The service's answers that no later ping can change: every ping is lost
# until HEARTBEAT_URL is fixed, so the service reports the node down (or,
# with a check that does not exist, never reports anything at all).
# 408 and 429 are not among them: a slow or rate-limited ping may pass next minute.
_PING_REFUSED = {
    400: "the service rejects the ping",
    401: "the service refuses the ping key",
    403: "the service refuses the ping key",
    404: "the check does not exist",
    405: "the URL is not a ping URL",
    410: "the check was deleted",
}
# healthchecks.io keeps at most 100 kB of a ping's body; the line is far shorter.
MAX_PING_BODY_BYTES = 9_000


def ping_body(report: RunReport, trouble: str | None) -> str:
    """What the ping carries: the run's one line, as printed, without the perfdata."""
    from check_status.output import nagios_line  # output imports this module

    # The whole text, not line one's 1,023 bytes: the service keeps far more.
    line = nagios_line(report, limit=MAX_PING_BODY_BYTES).partition(" | ")[0]
    if trouble:
        line = f"{line} / {trouble}"
    return line.encode()[:MAX_PING_BODY_BYTES].decode(errors="ignore")


def ping_heartbeat(url: str, report: RunReport, trouble: str | None) -> tuple[list[str], list[str]]:
    """Ping the dead-man's switch: `/fail` for a CRITICAL run, or one whose `trouble`
    (no state file, no lock) may stop or repeat its texts. Returns (notes, remarks).

    A ping the service refuses (a 4xx: a deleted check, a mistyped key) is a
    note, a WARNING on the run's line: every later ping is lost too. A timeout
    or a 5xx is only a remark: the service itself alerts when pings stop.
    Failures name only the host: the URL's path is a secret token.
    """
    from check_status.notify import NotifyError
    from check_status.notify.heartbeat import ping

    status = worst(r.status for r in report.results)
    if trouble:
        status = Status.CRITICAL
    try:
        ping(url, status, ping_body(report, trouble))
    except NotifyError as error:
        # heartbeat.PingRefused carries the HTTP status; the reason names it too.
        code = getattr(error, "status", None) or error.code or _http_status(error.reason)
        if code is not None and 400 <= code < 500 and code not in (408, 429):
            why = _PING_REFUSED.get(code, "the service refuses every ping")
            return [f"{error.reason}: {why}; fix HEARTBEAT_URL"], []
        return [], [error.reason]
    return [], []


def _http_status(reason: str) -> int | None:
    found = re.search(r"\bHTTP (\d{3})\b", reason)
    return int(found.group(1)) if found else None
