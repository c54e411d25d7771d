"""CORE: the one gate for text that comes from outside: nodeos, endpoints, peers,
the log and Twilio.

Every remote string passes through `clean` once, where it enters (the probes
and the Twilio client), before any check sees it. After it:

- there are no control characters (C0, C1, DEL, ESC, newlines), no lone
  surrogates and no bidirectional overrides: each is replaced by MARK, so an
  OSC 52 clipboard write cannot reach an operator's terminal through `-v`, a
  newline in a producer name cannot forge a second Nagios line, and `\\ud800`
  in a JSON body cannot crash the run when it is printed;
- it is at most `limit` characters long, so no remote string can grow the
  state file or a line without bound.

What reaches a phone is stricter still: only `identifying_word` passes remote
words into an SMS summary (an HTTP status's error name such as
NODEOS_UNREACHABLE or timeout_exception). A remote body's free text ("call
+1 900 ... now") stays in `detail`, shown by `-v` and `--json`, never texted.
"""

from __future__ import annotations

import re
from typing import Any

MARK = "\ufffd"  # the Unicode replacement character: visible, and never a control
REMOTE_TEXT_LIMIT = 200
LOG_LINE_LIMIT = 300

# C0 controls, DEL and C1 controls (ESC, CSI and OSC among them), lone
# surrogates, the bidirectional embeddings, overrides and isolates
# (U+202A-U+202E, U+2066-U+2069), and the line and paragraph separators.
_UNSAFE = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)

# An error name: one word of letters, digits and underscores, starting with a
# letter, as nodeos and proxies name errors (unknown_block_exception,
# tx_cpu_usage_exceeded, NODEOS_UNREACHABLE). At most 4 digits, so it cannot
# carry a phone number, and at most 5 parts, so it cannot carry a sentence
# (visit_evil_example_com_to_fix).
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
MAX_DIGITS = 4
MAX_PARTS = 5


def clean(text: Any, limit: int = REMOTE_TEXT_LIMIT) -> str:
    """`text` made safe to store, print and log: unsafe characters marked, length bounded."""
    text = text if isinstance(text, str) else str(text)
    if len(text) > limit:
        text = text[: limit - 2] + ".."
    return _UNSAFE.sub(MARK, text.replace("\t", " "))


def clean_json(value: Any, limit: int = REMOTE_TEXT_LIMIT) -> Any:
    """A parsed JSON document with every string in it (keys too) passed through `clean`."""
    if isinstance(value, str):
        return clean(value, limit)
    if isinstance(value, dict):
        return {clean(k, limit): clean_json(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(item, limit) for item in value]
    return value


def identifying_word(text: Any) -> str | None:
    """`text` if it is one identifier-shaped word (NODEOS_UNREACHABLE,
    timeout_exception) that may go into an SMS, else None."""
    if not isinstance(text, str):
        return None
    word = text.strip()
    digits = sum(c.isdigit() for c in word)
    if _IDENTIFIER.fullmatch(word) and digits <= MAX_DIGITS and word.count("_") < MAX_PARTS:
        return word
    return None


def printable(line: str) -> str:
    """One line of our own output, with anything unsafe that got in marked.

    The second belt: remote text is cleaned where it enters, but a state file
    written by an older version may still hold raw control characters.
    """
    return _UNSAFE.sub(MARK, line.replace("\t", " "))
