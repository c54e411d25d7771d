"""What `check-status status` shows, built from the state file alone (no probing).

The same document is served by `check-status serve` at /status, so a peer can
see whether this node's checker is still running. It never holds a secret:
phone numbers of recipients are shown, tokens never are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from check_status.alerting.rules import alert_state_from_json, oncall_view
from check_status.config import Config
from check_status.model import format_time, human_duration, recorded_at
from check_status.remote_text import printable


def mask_number(number: str) -> str:
    """`+14155550101` -> `+14***0101`: enough to tell operators apart, not to call them."""
    return f"{number[:3]}***{number[-4:]}" if len(number) > 7 else "***"


def build(
    state: dict[str, Any], config: Config, now: datetime, *, mask_numbers: bool = False
) -> dict[str, Any]:
    alerts = alert_state_from_json(state.get("alerts"))
    last_run = _record(state, "last_run")
    age = _age(last_run, now)
    last_scheduled = _record(state, "last_scheduled_run")
    scheduled_age = _age(last_scheduled, now)

    def shown(number: str) -> str:
        return mask_number(number) if mask_numbers else number

    checks = state.get("checks") if isinstance(state.get("checks"), dict) else {}
    outbox = state.get("outbox") if isinstance(state.get("outbox"), dict) else {}
    incidents = []
    from check_status.runner import oncall_policy

    policy = oncall_policy(config)

    def who(name: str) -> str:  # a bare number is its own name
        return shown(name) if name.startswith("+") else name

    steps = {}
    for step in oncall_view(alerts, policy, now):
        step["told"] = {who(n): t for n, t in step["told"].items()}
        step["called"] = {who(n): t for n, t in step["called"].items()}
        step["acked_by"] = who(step["acked_by"]) if step["acked_by"] else None
        steps[step.pop("check")] = step
    for name, record in sorted(alerts.checks.items()):
        incident = record.incident
        if incident is not None:
            # "Texted" is what the rules decided; whether every phone got it yet
            # is the outbox's to say.
            queued_for = sum(
                1
                for items in outbox.values()
                if isinstance(items, list)
                and any(
                    # An ACK notice queued for the others is not the incident's news.
                    isinstance(i, dict) and i.get("check") == name and i.get("kind") != "ACK"
                    for i in items
                )
            )
            item = {"check": name, **incident.to_json(), "queued_for": queued_for}
            told = item.pop("told") or {}
            item["told"] = {shown(r): s for r, s in told.items()}
            for key in ("paged_at", "told_at", "escalated_at", "called", "acked_by", "acked_at"):
                item.pop(key, None)  # by number: shown by name in "oncall"
            if name in steps:
                item["oncall"] = steps[name]
            incidents.append(item)
    failures = (
        state.get("delivery_failures") if isinstance(state.get("delivery_failures"), dict) else {}
    )
    return {
        "node": config.node_name,
        "time": format_time(now),
        "last_run": {
            "at": last_run.get("at") if last_run else None,
            "status": last_run.get("status") if last_run else None,
            "by": last_run.get("by") if last_run else None,
            "age_seconds": round(age) if age is not None else None,
        },
        # Runs typed at a terminal prove nothing about cron: peers judge this one.
        "last_scheduled_run": {
            "at": last_scheduled.get("at") if last_scheduled else None,
            "age_seconds": round(scheduled_age) if scheduled_age is not None else None,
        },
        "checks": {
            name: {
                "status": item.get("status"),
                "since": item.get("since"),
                "summary": item.get("summary"),
            }
            for name, item in sorted(checks.items())
            if isinstance(item, dict)
        },
        "incidents": incidents,
        "pending_sms": {
            shown(recipient): {
                "queued": len(items),
                "oldest": items[0].get("at") if isinstance(items[0], dict) else None,
            }
            for recipient, items in outbox.items()
            if isinstance(items, list) and items
        },
        "delivery_failures": {
            shown(recipient): item for recipient, item in failures.items() if isinstance(item, dict)
        },
        "delivery_retries": {
            shown(recipient): item
            for recipient, item in _section(state, "delivery_retries").items()
            if isinstance(item, dict)
        },
        "sms_held": _section(state, "sms_held") or None,
        "silences": [s.to_json() for s in alerts.silences if now < s.until or s.end_seen],
        "sms": f"SMS to {len(config.alert_to)} operator(s), texting {config.alert_level} and above"
        if config.sms_configured
        else "SMS not configured",
    }


def _section(state: dict[str, Any], key: str) -> dict[str, Any]:
    value = state.get(key)
    if not isinstance(value, dict):
        return {}
    # The sender's digest is for the runs, not for readers.
    return {k: v for k, v in value.items() if k != "settings"}


def _record(state: dict[str, Any], key: str) -> dict[str, Any] | None:
    record = state.get(key)
    return record if isinstance(record, dict) else None


def _age(record: dict[str, Any] | None, now: datetime) -> float | None:
    at = recorded_at(record)
    return None if at is None else (now - at).total_seconds()


def oncall_line(step: dict[str, Any]) -> str:
    """`told luke 02:05Z; ACKed by luke 02:08Z; next: reminder to luke only at 03:08Z`."""

    def hhmm(at: str | None) -> str:
        return at[11:16] + "Z" if at and len(at) >= 16 else "?"

    told = ", ".join(f"{name} {hhmm(at)}" for name, at in step["told"].items()) or "nobody"
    words = [f"told {told}"]
    if step["acked_by"]:
        words.append(f"ACKed by {step['acked_by']} {hhmm(step['acked_at'])}")
    if step["called"]:
        words.append(f"called {', '.join(step['called'])}")
    due = f" at {hhmm(step['due'])}" if step["due"] else ""
    words.append(f"next: {step['next']}{due}")
    return "; ".join(words)


def render(view: dict[str, Any]) -> str:
    lines = []
    last = view["last_run"]
    if last["at"]:
        ago = human_duration(last["age_seconds"]) if last["age_seconds"] is not None else "?"
        by = " by hand" if last.get("by") == "hand" else ""
        lines.append(f"{view['node']}: last run{by} {last['at']} ({last['status']}), {ago} ago")
        scheduled = view["last_scheduled_run"]
        if by:
            when = f"{scheduled['at']}" if scheduled["at"] else "none recorded"
            lines.append(f"last scheduled (cron) run: {when}")
    else:
        lines.append(f"{view['node']}: no run recorded yet")
    lines.append(view.get("problem") or view["sms"])
    lines.append("")
    lines.append("open incidents:" if view["incidents"] else "open incidents: none")
    for item in view["incidents"]:
        told = (
            f"texted {item['notified_status']} at {item['last_notified_at']}"
            if item["last_notified_at"]
            else "not texted"
        )
        if item.get("queued_for"):
            told += f", not yet delivered to {item['queued_for']} recipient(s)"
        silenced = ", silenced" if item["silenced"] else ""
        lines.append(
            f"  {item['check']} since {item['opened_at']}: {item['summary']} ({told}{silenced})"
        )
        step = item.get("oncall")
        if step:
            lines.append(f"    {oncall_line(step)}")
    if view["pending_sms"]:
        lines.append("pending SMS (retried every run):")
        for recipient, item in view["pending_sms"].items():
            lines.append(
                f"  {recipient}: {item['queued']} notification(s) queued since {item['oldest']}"
            )
    if view.get("sms_held"):
        held = view["sms_held"]
        lines.append(f"SMS held since {held.get('since')}: {held.get('reason')}")
    if view.get("delivery_retries"):
        lines.append("refused by Twilio with an unknown code (given up after 3 tries):")
        for recipient, item in view["delivery_retries"].items():
            lines.append(f"  {recipient}: {item.get('reason')} (tried {item.get('tries')})")
    if view["delivery_failures"]:
        lines.append("permanent delivery failures (fix ALERT_TO):")
        for recipient, item in view["delivery_failures"].items():
            lines.append(f"  {recipient}: {item.get('reason')} at {item.get('at')}")
    lines.append("silences:" if view["silences"] else "silences: none")
    for silence in view["silences"]:
        what = ", ".join(silence["checks"]) or "whole node"
        lines.append(f"  {what} until {silence['until']}: {silence['reason']}")
    # The state may hold text an older version stored raw: nothing reaches the terminal raw.
    return "\n".join(printable(line) for line in lines)
