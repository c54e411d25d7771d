"""The SMS text: `render_sms` and `gsm7_length`.

GSM-7 is checked against a table written out here from GSM 03.38, independently
of the one the code uses.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from check_status.alerting.rules import Kind, Notification
from check_status.alerting.sms import gsm7_length, render_sms
from check_status.model import Status

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
NODE = "eu2"

# GSM 03.38 default alphabet, 0x00..0x7F, one row of 16 per line. 0x1B is the escape
# to the extension table, never a character of its own.
_GSM_DEFAULT_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(_GSM_DEFAULT_TABLE) == 128
GSM_DEFAULT = frozenset(_GSM_DEFAULT_TABLE) - {"\x1b"}
# The extension table: each is sent as ESC + one septet, so it counts twice.
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")


def is_gsm7(text: str) -> bool:
    return all(c in GSM_DEFAULT or c in GSM_EXTENSION for c in text)


def septets(text: str) -> int:
    return sum(2 if c in GSM_EXTENSION else 1 for c in text)


def note(
    kind: Kind,
    check: str,
    summary: str = "",
    status: Status = Status.CRITICAL,
    *,
    lasted: timedelta = timedelta(minutes=5),
    ended: datetime | None = None,
) -> Notification:
    return Notification(kind, check, status, summary, NOW - lasted, NOW, ended)


def problem(check: str, summary: str, status: Status = Status.CRITICAL) -> Notification:
    return note(Kind.PROBLEM, check, summary, status)


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail instead of hanging the test run."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- the text -------------------------------------------------------------------


def test_single_problem() -> None:
    text = render_sms(NODE, [problem("nodeos", "connection refused")], NOW)
    assert text == "[eu2] CRITICAL nodeos: connection refused"


def test_the_example_from_the_issue() -> None:
    notes = [
        problem("nodeos", "connection refused"),
        problem("endpoint:eu.example.io", "HTTP 503 NODEOS_UNREACHABLE"),
    ]
    assert render_sms(NODE, notes, NOW) == (
        "[eu2] CRITICAL nodeos: connection refused; "
        "endpoint eu.example.io: HTTP 503 NODEOS_UNREACHABLE"
    )


def test_warning_problem_says_warning() -> None:
    text = render_sms(NODE, [problem("disk:/", "86% used", Status.WARNING)], NOW)
    assert text == "[eu2] WARNING disk /: 86% used"


def test_recovery_says_how_long_the_problem_lasted() -> None:
    recovery = Notification(
        Kind.RECOVERY,
        "nodeos",
        Status.OK,
        "head 0s behind",
        since=NOW - timedelta(minutes=22),
        at=NOW,
        ended=NOW - timedelta(minutes=2),  # the first OK run
    )
    assert render_sms(NODE, [recovery], NOW) == "[eu2] RECOVERED nodeos after 20m"


def test_reminder_says_still_and_for_how_long() -> None:
    reminder = note(
        Kind.REMINDER, "nodeos", "connection refused", lasted=timedelta(hours=1, minutes=5)
    )
    assert render_sms(NODE, [reminder], NOW) == (
        "[eu2] STILL CRITICAL nodeos: connection refused (1h05m)"
    )


def test_reminder_duration_is_counted_to_the_time_it_is_sent() -> None:
    # Queued while Twilio was down and sent 10 minutes later: the duration is current.
    reminder = note(Kind.REMINDER, "nodeos", "connection refused", lasted=timedelta(hours=1))
    text = render_sms(NODE, [reminder], NOW + timedelta(minutes=10))
    assert text.endswith("(1h10m)")


def test_silence_ended_says_so() -> None:
    text = render_sms(NODE, [note(Kind.SILENCE_ENDED, "head_block", "head 2h behind")], NOW)
    assert text == "[eu2] CRITICAL head_block: head 2h behind (silence over)"


def test_problem_and_recovery_in_one_text() -> None:
    notes = [
        note(Kind.RECOVERY, "nodeos", status=Status.OK, lasted=timedelta(minutes=20)),
        problem("head_block", "head 45s behind"),
    ]
    text = render_sms(NODE, notes, NOW)
    assert text.startswith("[eu2] CRITICAL head_block: head 45s behind")
    assert "RECOVERED nodeos after 20m" in text
    assert text.index("CRITICAL") < text.index("RECOVERED")
    assert text.count("[eu2]") == 1


def test_most_severe_problem_comes_first() -> None:
    notes = [
        problem("disk:/", "86% used", Status.WARNING),
        problem("nodeos", "connection refused", Status.CRITICAL),
    ]
    text = render_sms(NODE, notes, NOW)
    assert text.index("nodeos") < text.index("disk /")


def test_nothing_to_render_is_an_error() -> None:
    with pytest.raises(ValueError):
        render_sms(NODE, [], NOW)


# --- GSM-7 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ("head 40s behind \u2014 resyncing", "head 40s behind - resyncing"),  # em dash
        ("head 40s behind \u2013 resyncing", "head 40s behind - resyncing"),  # en dash
        ("\u201cUnknown Endpoint\u201d", '"Unknown Endpoint"'),
        ("producer \u2018eosnation\u2019", "producer 'eosnation'"),
        ("91%\u00a0used", "91% used"),  # non-breaking space
        ("waiting\u2026", "waiting..."),
    ],
)
def test_look_alikes_replace_characters_outside_gsm7(summary: str, expected: str) -> None:
    text = render_sms(NODE, [problem("nodeos", summary)], NOW)
    assert text == f"[eu2] CRITICAL nodeos: {expected}"
    assert is_gsm7(text)


@pytest.mark.parametrize(
    "summary",
    [
        "on fire \U0001f525",
        "\u65ad\u5f00\u8fde\u63a5",
        "\u0437\u0430\u0432\u0438\u0441",
        "x\u200by",
    ],
)
def test_other_characters_outside_gsm7_are_replaced(summary: str) -> None:
    text = render_sms(NODE, [problem("nodeos", summary)], NOW)
    assert is_gsm7(text)
    assert text.startswith("[eu2] CRITICAL nodeos: ")
    assert len(text) == len("[eu2] CRITICAL nodeos: ") + len(summary)  # one for one


def test_gsm7_characters_are_kept_as_they_are() -> None:
    summary = "é ü Ä ñ à Ç ø å ß É ¿ ¡ £ ¥ § ¤ Δ Ω _ @ {x} [y] ~ | ^ € \\"
    text = render_sms(NODE, [problem("nodeos", summary)], NOW)
    assert text == f"[eu2] CRITICAL nodeos: {summary}"


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("abc", 3),
        ("[", 2),
        ("]", 2),
        ("{", 2),
        ("}", 2),
        ("€", 2),
        ("[eu2]", 7),
        ("^~|\\", 8),
        ("é£@Δ", 4),  # the basic table's accented letters and Greek count once
        ("", 0),
    ],
)
def test_gsm7_length(text: str, length: int) -> None:
    assert gsm7_length(text) == length
    assert septets(text) == length


# --- length ---------------------------------------------------------------------

CHECK_NAME = re.compile(r"chk\d{3}")


def many(count: int, summary_length: int = 30) -> list[Notification]:
    return [
        problem(f"chk{i:03d}", f"{'x' * (summary_length - 4)} {i:03d}"[:summary_length])
        for i in range(count)
    ]


@pytest.mark.parametrize("count", [1, 5, 20, 200])
@pytest.mark.parametrize("summary_length", [10, 40, 150])
def test_length_and_plus_n_more(count: int, summary_length: int) -> None:
    text = render_sms(NODE, many(count, summary_length), NOW)
    assert is_gsm7(text)
    assert gsm7_length(text) <= 160  # always possible: one item and "+N more" fit
    shown = len(set(CHECK_NAME.findall(text)))
    dropped = count - shown
    assert shown >= 1
    match = re.search(r" \+(\d+) more$", text)
    if dropped:
        assert match is not None, text
        assert int(match.group(1)) == dropped
    else:
        assert match is None
        assert "more" not in text


def test_a_single_short_notification_is_not_shortened() -> None:
    summary = "head 3m12s behind, last block 12345678 by eosnationftw"
    text = render_sms(NODE, [problem("head_block", summary)], NOW)
    assert summary in text
    assert ".." not in text


def test_summaries_are_shortened_before_items_are_dropped() -> None:
    notes = [problem(name, "y" * 100) for name in ("nodeos", "head_block", "state_db")]
    text = render_sms(NODE, notes, NOW)
    assert gsm7_length(text) <= 160
    assert "more" not in text
    for name in ("nodeos", "head_block", "state_db"):
        assert f"{name}: y" in text
    assert text.count("..") == 3


def test_less_severe_items_are_dropped_first() -> None:
    notes = [
        problem(f"chk{i:03d}", "z" * 30, Status.WARNING if i % 2 else Status.CRITICAL)
        for i in range(20)
    ]
    text = render_sms(NODE, notes, NOW)
    shown = {int(n[3:]) for n in CHECK_NAME.findall(text)}
    assert 0 < len(shown) < 20
    critical = {i for i in range(20) if i % 2 == 0}
    # Every WARNING shown means every CRITICAL is shown.
    assert not (shown - critical) or critical <= shown


def test_recoveries_are_dropped_before_problems() -> None:
    problems = [problem(f"chk{i:03d}", "z" * 30) for i in range(3)]
    recoveries = [
        note(Kind.RECOVERY, f"chk{i:03d}", status=Status.OK, lasted=timedelta(minutes=i))
        for i in range(100, 110)
    ]
    text = render_sms(NODE, [*recoveries, *problems], NOW)
    assert gsm7_length(text) <= 160
    for i in range(3):
        assert f"chk{i:03d}:" in text


def test_long_node_and_check_names_are_never_over_320() -> None:
    notes = [
        note(Kind.REMINDER, f"endpoint:{'a' * 60}.example.io:{8000 + i}", "w" * 200)
        for i in range(40)
    ]
    text = render_sms("x" * 32, notes, NOW)
    assert is_gsm7(text)
    assert gsm7_length(text) <= 320


def test_a_single_item_longer_than_320_is_cut_and_returns() -> None:
    long_path = "disk:/srv/" + "d" * 400
    with time_limit(2):
        text = render_sms(NODE, [problem(long_path, "97% used")], NOW)
    assert gsm7_length(text) <= 320


# --- properties -----------------------------------------------------------------

CHECKS = [
    "nodeos",
    "head_block",
    "lib",
    "chain_id",
    "state_db",
    "nodeos_log",
    "disk:/",
    "disk:/var/lib/nodeos",
    "endpoint:eu.example.io",
    "endpoint:[2001:db8::1]:8888",
]

notifications = st.builds(
    Notification,
    kind=st.sampled_from([k for k in Kind if k is not Kind.CALL]),  # a call is never texted
    check=st.sampled_from(CHECKS),
    status=st.sampled_from(list(Status)),
    summary=st.text(max_size=300),
    since=st.integers(0, 40 * 86400).map(lambda s: NOW - timedelta(seconds=s)),
    at=st.integers(0, 3600).map(lambda s: NOW - timedelta(seconds=s)),
    ended=st.none() | st.integers(0, 3600).map(lambda s: NOW - timedelta(seconds=s)),
)


@settings(deadline=None, max_examples=300)
@given(st.lists(notifications, min_size=1, max_size=40))
def test_render_sms_property(notes: list[Notification]) -> None:
    text = render_sms(NODE, notes, NOW)
    assert text.startswith(f"[{NODE}] ")
    assert len(text) > len(f"[{NODE}] ")
    assert is_gsm7(text)
    assert gsm7_length(text) == septets(text)
    assert gsm7_length(text) <= 320
    # With check names this short, one item and "+N more" always fit one segment.
    assert gsm7_length(text) <= 160


# Form feed is left out: it never reaches gsm7_length, as render_sms turns it into "?".
@given(st.text(alphabet=st.sampled_from(sorted((GSM_DEFAULT | GSM_EXTENSION) - {"\f"}))))
def test_gsm7_length_matches_the_table(text: str) -> None:
    assert gsm7_length(text) == septets(text)


def test_a_lesser_problem_beside_a_worse_one_says_its_own_status() -> None:
    text = render_sms(
        "eu2",
        [problem("nodeos", "connection refused"), problem("disk:/", "85% used", Status.WARNING)],
        NOW,
    )
    assert text == "[eu2] CRITICAL nodeos: connection refused; WARNING disk /: 85% used"
