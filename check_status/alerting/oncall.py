"""CORE: who is on call. Operators, their waking hours, ACKs, and the call's words.

An operator is one `ALERT_TO` item:

    luke:+14155550101@America/New_York           name, number, time zone
    michael:+821055550102@Asia/Seoul/08:00-22:00  with their own waking hours
    +447700900123                                 a bare number: always awake

The steps of an incident (PROBLEM to those awake, escalation to the rest, then
a voice call) are decided in rules.decide, with the helpers here; ACKs are
applied to the alert state by `acknowledge`, before `decide` runs. No I/O: the
time zones are read through zoneinfo, from the system's tz database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

DEFAULT_WAKING_HOURS = (7 * 60, 23 * 60)  # 07:00-23:00, minutes after local midnight


@dataclass(frozen=True)
class Operator:
    number: str  # E.164: the key every record uses
    name: str  # as written in ALERT_TO; a bare number is named by itself
    zone: str | None = None  # IANA time zone; None: always first in line
    waking: tuple[int, int] | None = None  # local minutes [start, end); None: WAKING_HOURS

    def hours(self, default: tuple[int, int]) -> tuple[int, int]:
        return self.waking or default


def parse_hours(text: str) -> tuple[int, int]:
    """`07:00-23:00` -> (420, 1380). The end may be 24:00; an end before the
    start wraps midnight (`22:00-06:00` is a night shift). Raises ValueError."""
    found = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    if not found:
        raise ValueError("local hours such as 07:00-23:00")
    h1, m1, h2, m2 = (int(part) for part in found.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60 or start == end:
        raise ValueError("local hours such as 07:00-23:00, start and end different, up to 24:00")
    return start, end


def format_hours(hours: tuple[int, int]) -> str:
    start, end = hours
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


@cache
def zone(name: str) -> ZoneInfo:
    """The zone of an IANA name. Raises ValueError for a name the system does not know."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}") from None


def local_minute(operator: Operator, now: datetime) -> int | None:
    """Minutes after the operator's local midnight; None for one with no zone."""
    if operator.zone is None:
        return None
    local = now.astimezone(zone(operator.zone))
    return local.hour * 60 + local.minute


def is_awake(operator: Operator, now: datetime, default: tuple[int, int]) -> bool:
    """Is it within the operator's waking hours where they are? No zone: always."""
    minute = local_minute(operator, now)
    if minute is None:
        return True
    start, end = operator.hours(default)
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end  # the hours wrap midnight


def first_in_line(
    operators: Sequence[Operator], now: datetime, default: tuple[int, int]
) -> tuple[str, ...]:
    """The numbers of those awake now; if nobody is, everyone's."""
    awake = tuple(o.number for o in operators if is_awake(o, now, default))
    return awake or tuple(o.number for o in operators)


def local_time(operator: Operator, now: datetime) -> str:
    """`03:05 KST` for status lines, or '' for an operator with no zone."""
    if operator.zone is None:
        return ""
    local = now.astimezone(zone(operator.zone))
    return f"{local:%H:%M} {local.tzname()}"


# --- ACK --------------------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    """An operator says "I am on it": from an SMS reply, the webhook, or `check-status ack`."""

    number: str  # who sent it (the From of a reply)
    check: str | None  # None: every open incident of the node
    at: datetime  # when it was sent
    via: str = "sms"  # "sms", "webhook" or "terminal"

    def to_json(self) -> dict[str, Any]:
        from check_status.model import format_time

        return {"number": self.number, "check": self.check, "at": format_time(self.at)}

    @classmethod
    def from_json(cls, data: dict[str, Any], via: str) -> Ack:
        from check_status.model import parse_time

        check = data.get("check")
        return cls(str(data["number"]), str(check) if check else None, parse_time(data["at"]), via)


_ACK = re.compile(r"\s*ack(?:nowledged?)?\b[\s.!,:]*(.*?)[\s.!]*", re.IGNORECASE | re.DOTALL)


def read_ack(body: str) -> tuple[bool, str | None]:
    """(is it an ACK, of which check): `ACK`, `ack.`, `Ack nodeos`, `ACK endpoint eu.example.io`.

    Anything else (`on it`, `STOP`, `back in 5`) is not an ACK.
    """
    found = _ACK.fullmatch(body or "")
    if not found:
        return False, None
    # An operator's own words, but remote text all the same: printable, one line, short.
    check = " ".join("".join(c for c in found.group(1) if c.isprintable() or c.isspace()).split())
    return True, check[:80] or None


def matches(check: str, asked: str) -> bool:
    """Does `ACK <asked>` name this check? Case aside, as the check's name
    (`endpoint:eu.example.io`), as the SMS writes it (`endpoint eu.example.io`),
    or as its kind (`endpoint`: every endpoint)."""
    name = check.lower()
    wanted = asked.strip().lower()
    return wanted in (name, name.replace(":", " ", 1), name.partition(":")[0])


def operator_named(operators: Iterable[Operator], who: str) -> Operator | None:
    """The operator a `--by` names: by name (any case) or by number."""
    wanted = who.strip().lower()
    for operator in operators:
        if wanted in (operator.name.lower(), operator.number):
            return operator
    return None


# --- the call ---------------------------------------------------------------


_UNITS = (("d", "day"), ("h", "hour"), ("m", "minute"), ("s", "second"))
_DURATION = re.compile(r"\b(?=\d+[dhms]\b|\d+[dhm]\d)((?:\d+[dhms])+)\b")


def spoken_duration(text: str) -> str:
    """`1d6h` -> `1 day 6 hours`: a speech engine reads `21m` as metres."""
    words = []
    for number, unit in re.findall(r"(\d+)([dhms])", text):
        name = dict(_UNITS)[unit]
        words.append(f"{int(number)} {name}{'s' if int(number) != 1 else ''}")
    return " ".join(words)


def spoken(text: str) -> str:
    """Words a speech engine reads well to someone just woken: no addresses in
    brackets, durations in words, no colons, slashes or underscores."""
    text = re.sub(r"\([^)]*\)", " ", text)  # (127.0.0.1:8888), (16m): detail, not news
    text = _DURATION.sub(lambda found: spoken_duration(found.group(1)), text)
    text = text.replace("#", " number ").replace("%", " percent")
    text = re.sub(r"[_:/|<>&\"'\[\]]+", " ", text)
    return " ".join(text.split())


def call_twiml(node: str, problems: Sequence[tuple[str, str, str]], lasted: str) -> str:
    """The TwiML of one call: the worst problem, twice, in plain words, then how to stop it.

    `problems` are (check, status, summary), the worst first; the others are
    only counted, as a sleepy listener needs the one thing that is wrong.
    """
    from xml.sax.saxutils import escape

    check, status, summary = problems[0]
    what = spoken(check.replace(":", " ", 1))
    more = len(problems) - 1
    also = (
        f" There {'is' if more == 1 else 'are'} {more} more problem{'s' * (more > 1)}."
        if more
        else ""
    )
    message = (
        f"This is check status, for node {spoken(node)}. "
        f"{what} is {status.lower()}: {spoken(summary)}. "
        f"It has lasted {spoken_duration(lasted) or lasted},"
        f" and nobody has acknowledged it.{also}"
    )
    say = f"<Say>{escape(message)}</Say>"
    close = escape("To stop the calls, reply ACK to the text message.")
    return (
        f'<Response>{say}<Pause length="1"/>{say}<Pause length="1"/><Say>{close}</Say></Response>'
    )
