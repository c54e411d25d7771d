"""CORE: turn one run's notifications into one SMS body.

    [eu2] CRITICAL nodeos: connection refused; endpoint eu.example.io: HTTP 503 NODEOS_UNREACHABLE

Rules:
- GSM-7 characters only. One em dash, curly quote or non-breaking space
  switches the whole message to UCS-2 (70 characters a segment), doubling the
  cost, so they are replaced.
- At most 160 GSM-7 characters (one segment) where the content allows, never
  over 320: summaries are shortened first, then trailing items become "+N more".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from check_status.alerting.rules import Kind, Notification
from check_status.model import human_duration, worst

ONE_SEGMENT = 160
HARD_LIMIT = 320

# The GSM 03.38 basic character set, and the extension set (two characters each).
_GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€")
_REPLACEMENTS = {
    "\u2014": "-",  # em dash
    "\u2013": "-",  # en dash
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u00a0": " ",  # non-breaking space
    "\u2026": "...",
    "\t": " ",
}


def to_gsm7(text: str) -> str:
    """Replace everything outside GSM-7 by a plain look-alike, or '?'."""
    out = []
    for char in text:
        char = _REPLACEMENTS.get(char, char)
        out.append(char if all(c in _GSM7_BASIC or c in _GSM7_EXTENDED for c in char) else "?")
    return "".join(out)


def gsm7_length(text: str) -> int:
    """Characters as the network counts them: the extension set takes two."""
    return sum(2 if c in _GSM7_EXTENDED else 1 for c in text)


def sms_check_name(check: str) -> str:
    """`endpoint:eu.example.io` reads as `endpoint eu.example.io` in a text."""
    return (
        check.replace(":", " ", 1) if check.startswith(("endpoint:", "disk:", "peer:")) else check
    )


def _shorten(summary: str, limit: int | None) -> str:
    if limit is None or len(summary) <= limit:
        return summary
    return summary[: limit - 2].rstrip(" ,;:") + ".."


def _sections(
    notes: Sequence[Notification], now: datetime, limit: int | None
) -> list[tuple[str, list[str]]]:
    """(header, items) in the order an operator needs them: problems, reminders, recoveries."""
    notes = [n for n in notes if n.kind is not Kind.CALL]  # a call is spoken, not texted
    escalated = [n for n in notes if n.kind is Kind.PROBLEM and n.escalated]
    problems = [
        n
        for n in notes
        if n.kind in (Kind.PROBLEM, Kind.ESCALATION, Kind.SILENCE_ENDED) and not n.escalated
    ]
    acks = [n for n in notes if n.kind is Kind.ACK]
    flapping = [n for n in notes if n.kind is Kind.FLAPPING]
    reminders = [n for n in notes if n.kind is Kind.REMINDER]
    recoveries = [n for n in notes if n.kind is Kind.RECOVERY]
    sections: list[tuple[str, list[str]]] = []
    if escalated:
        # "ESCALATED CRITICAL nodeos: connection refused (12m, no ACK)": they
        # were not told first, because others were awake; nobody answered.
        status = worst(n.status for n in escalated).name
        items = [
            f"{sms_check_name(n.check)}: {_shorten(n.summary, limit)}"
            f" ({human_duration((now - n.since).total_seconds())}, no ACK)"
            for n in escalated
        ]
        sections.append((f"ESCALATED {status}", items))
    if flapping:
        # "FLAPPING nodeos: failed 10 of the last 20 runs (connection refused)"
        items = [f"{sms_check_name(n.check)}: {_shorten(n.summary, limit)}" for n in flapping]
        sections.append(("FLAPPING", items))
    for group, header in ((problems, None), (reminders, "STILL")):
        if not group:
            continue
        group = sorted(group, key=lambda n: n.status.severity, reverse=True)
        status = worst(n.status for n in group).name
        items = []
        for n in group:
            # A lesser problem says its own status, so a WARNING beside a
            # CRITICAL does not read as critical.
            label = "" if n.status.name == status else f"{n.status.name} "
            item = f"{label}{sms_check_name(n.check)}: {_shorten(n.summary, limit)}"
            if n.kind is Kind.REMINDER:
                item += f" ({human_duration((now - n.since).total_seconds())})"
            elif n.late:
                # They missed the first text: say how long it has been going on.
                lasted = human_duration((now - n.since).total_seconds())
                item += f" (since {n.since:%H:%M} UTC, {lasted})"
            elif n.kind is Kind.SILENCE_ENDED:
                item += " (silence over)"
            items.append(item)
        sections.append((f"{header} {status}" if header else status, items))
    if acks:
        # "ACK nodeos, lib by luke": one item per operator who acknowledged.
        by: dict[str, list[str]] = {}
        for n in acks:
            by.setdefault(_shorten(n.summary, limit) or "an operator", []).append(
                sms_check_name(n.check)
            )
        sections.append(("ACK", [f"{', '.join(checks)} by {who}" for who, checks in by.items()]))
    if recoveries:
        items = [
            f"{sms_check_name(n.check)} after {human_duration(n.lasted_seconds)}"
            for n in recoveries
        ]
        sections.append(("RECOVERED", items))
    return sections


def _join(node: str, sections: list[tuple[str, list[str]]], dropped: int) -> str:
    parts = [f"{header} {'; '.join(items)}" for header, items in sections if items]
    text = f"[{node}] " + ". ".join(parts)
    if dropped:
        text += f" +{dropped} more"
    return to_gsm7(text)


def render_sms(node: str, notes: Sequence[Notification], now: datetime) -> str:
    """One SMS for all of one run's notifications to one recipient."""
    notes = [n for n in notes if n.kind is not Kind.CALL]
    if not notes:
        raise ValueError("nothing to render")
    text = ""
    for limit in (None, 60, 40, 25):
        sections = _sections(notes, now, limit)
        text = _join(node, sections, 0)
        if gsm7_length(text) <= ONE_SEGMENT:
            return text
    # Still too long: drop trailing items (recoveries first, then the least
    # severe problems) until it fits, keeping at least one.
    dropped = 0
    while gsm7_length(text) > ONE_SEGMENT:
        total_items = sum(len(items) for _, items in sections)
        if total_items <= 1:
            break
        for _header, items in reversed(sections):
            if items:
                items.pop()
                break
        dropped += 1
        text = _join(node, sections, dropped)
    if gsm7_length(text) > HARD_LIMIT:
        while gsm7_length(text) > HARD_LIMIT - 2:
            text = text[:-1]
        text += ".."
    return text
