"""SHELL: send an SMS with the twilio SDK.

twilio is imported only when a message actually goes out: most runs send
nothing, and the import costs about 100 ms of every cron run's cold start.

Every answer Twilio gives is classified (see NotifyError.kind) and its own words
are kept beside its code: "Twilio 21606: The From phone number +15005550009 is
not a valid, SMS-capable inbound phone number or short code for your account;
check TWILIO_FROM". Those words are cleaned before anyone sees them: one line,
at most about 120 characters, account SIDs shortened and anything that may be
the auth token hidden.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from check_status.notify import SEND_TIMEOUT_SECONDS, NotifyError

# Twilio error code -> (class, short meaning). The class says what retrying can do:
#   "config"    the sender or the account is wrong: every recipient fails alike
#               until the operator fixes a setting or the account. Kept, retried.
#   "recipient" permanent for that one number (or that one message): never retried.
#   "transient" Twilio is busy or down: retried next run.
# A code that is not here is "unknown" (a 4xx) or "transient" (a 429 or 5xx).
# Checked against twilio.com/docs/api/errors/<code>; the few marked (*) were not
# found in the copy of those docs searched, and are classed from their names.
# 30003-30008 and most other 300xx codes are delivery results reported later
# (status callbacks), never an answer to the request, so they are not here.
TWILIO_ERRORS: dict[int, tuple[str, str]] = {
    # --- config: credentials and the account --------------------------------------
    10001: ("config", "account is not active"),
    20003: ("config", "authentication failed"),
    20005: ("config", "account not active"),
    20403: ("config", "forbidden: the account is suspended or closed"),
    20404: ("config", "resource not found (wrong account SID or API URL?)"),
    30002: ("config", "account suspended"),
    # --- config: the sender (From number or Messaging Service) ----------------------
    21212: ("config", "invalid 'From' number"),  # (*)
    # 21401's page speaks of a number "purchased from or ported to Twilio" or an
    # alphanumeric sender ID: a sender, so not a reason to give up on a recipient.
    21401: ("config", "not a valid SMS-enabled number or sender ID"),
    # 21407 is documented for a Twilio number's SMS settings: our number, not theirs.
    21407: ("config", "this phone number type does not support SMS"),
    21601: ("config", "'From' is not an SMS-capable number of this account"),
    21603: ("config", "a 'From' number is required"),
    21606: ("config", "'From' is not an SMS-capable Twilio number for this account"),
    21616: ("config", "'From' matches several numbers of this account"),
    21657: ("config", "the sender ID is invalid"),
    21659: ("config", "'From' is not a Twilio number"),
    21660: ("config", "'From' number does not belong to this account"),
    21661: ("config", "'From' number is not SMS-capable"),
    21701: ("config", "the Messaging Service does not exist"),
    21703: ("config", "the Messaging Service cannot send (no usable sender)"),  # (*)
    21704: ("config", "the Messaging Service has no phone numbers"),  # (*)
    21705: ("config", "the Messaging Service SID is invalid"),
    30127: ("config", "the Messaging Service SID is invalid"),
    30032: ("config", "toll-free number not verified"),
    30034: ("config", "unregistered sender (US A2P 10DLC)"),  # (*)
    # --- recipient: this number will fail again, whatever we do ---------------------
    21211: ("recipient", "invalid 'To' number"),
    21214: ("recipient", "'To' number cannot be reached"),
    21217: ("recipient", "number does not appear to be valid"),
    21265: ("recipient", "'To' number cannot be a short code"),
    21266: ("recipient", "'To' and 'From' are the same number"),
    21408: ("recipient", "SMS to this region is not enabled for this account"),
    21604: ("recipient", "a 'To' number is required"),
    21608: ("recipient", "unverified number on a trial account"),
    21610: ("recipient", "recipient replied STOP"),
    21612: ("recipient", "'To' number is not reachable by SMS from this sender"),
    21614: ("recipient", "not a mobile number"),
    21635: ("recipient", "'To' number is a landline"),
    # --- recipient, though the message is at fault, not the number ------------------
    # Sending the same body again fails the same way, and a text kept for retrying
    # would stay at the head of the queue for good, so it is given up on like a bad
    # number. (The body is built by alerting/sms.py to stay far below 1,600.)
    21602: ("recipient", "the message body is required"),
    21617: ("recipient", "the message body is longer than 1,600 characters"),
    # --- transient: Twilio is busy or down; the same request may work next minute ---
    20429: ("transient", "too many requests"),
    20500: ("transient", "Twilio internal error"),
    20503: ("transient", "Twilio service unavailable"),
    21611: ("transient", "'From' has too many queued messages"),
    21730: ("transient", "Twilio under maintenance"),
    30001: ("transient", "queue overflow"),
}

# The setting an operator changes for a config-class code, where one is obvious.
SETTING_TO_FIX: dict[int, str] = {
    20003: "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
    20404: "TWILIO_ACCOUNT_SID and TWILIO_API_BASE_URL",
    21212: "TWILIO_FROM",
    21401: "TWILIO_FROM",
    21601: "TWILIO_FROM",
    21603: "TWILIO_FROM",
    21606: "TWILIO_FROM",
    21616: "TWILIO_FROM",
    21657: "TWILIO_FROM",
    21659: "TWILIO_FROM",
    21660: "TWILIO_FROM",
    21661: "TWILIO_FROM",
    30032: "TWILIO_FROM",
    21701: "TWILIO_MESSAGING_SERVICE_SID",
    21703: "TWILIO_MESSAGING_SERVICE_SID",
    21704: "TWILIO_MESSAGING_SERVICE_SID",
    21705: "TWILIO_MESSAGING_SERVICE_SID",
    30127: "TWILIO_MESSAGING_SERVICE_SID",
}

MAX_WORDS = 120  # Twilio's own message, as kept in a reason


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str
    auth_token: str
    sender_number: str | None
    messaging_service_sid: str | None
    api_base_url: str
    timeout: float = SEND_TIMEOUT_SECONDS

    def __repr__(self) -> str:  # the token must never reach a log line
        return f"TwilioSettings(account_sid={self.account_sid!r}, ...)"


# Twilio's answer to a send is about 1 KB; to an account read, a few KB.
MAX_ANSWER_BYTES = 256 * 1024


class AnswerUnreadable(Exception):
    """Twilio answered, but its body could not be read in full: too large, cut short,
    too slow, or compressed wrongly. The status it gave still counts: a 2xx means
    the message was accepted, and sending it again would text the operator twice."""


@cache
def _recording_http_client_class() -> type:
    from twilio.http.http_client import TwilioHttpClient
    from twilio.http.response import Response

    class RecordingHttpClient(TwilioHttpClient):
        """TwilioHttpClient that reads answers bounded, and keeps the last as `last_response`.

        The SDK reads a whole answer and lets requests decompress it: a 1 MiB
        gzip bomb took a run to 2.1 GiB. Here the answer is streamed, asked
        for uncompressed, read at most MAX_ANSWER_BYTES, and inflated (if a
        server compresses anyway) no further than that.

        `last_response` is ours, None whenever the last request got no answer.
        """

        last_response: Any = None

        def request(
            self,
            method: str,
            url: str,
            params: Any = None,
            data: Any = None,
            headers: Any = None,
            auth: Any = None,
            timeout: float | None = None,
            allow_redirects: bool = False,
        ) -> Any:
            from requests import Request, Session

            self.last_response = None
            timeout = timeout or self.timeout
            started = time.monotonic()
            headers = {**(headers or {}), "Accept-Encoding": "identity"}
            session = self.session or Session()
            # As the SDK does: JSON bodies for the JSON APIs, a form for the rest.
            as_json = headers.get("Content-Type") in ("application/json", "application/scim+json")
            prepared = session.prepare_request(
                Request(
                    method=method.upper(),
                    url=url,
                    params=params,
                    data=None if as_json else data,
                    json=data if as_json else None,
                    headers=headers,
                    auth=auth,
                    hooks=self.request_hooks,
                )
            )
            settings = session.merge_environment_settings(
                prepared.url, self.proxy, None, None, None
            )
            settings["stream"] = True  # read below, bounded
            answer = session.send(
                prepared, allow_redirects=allow_redirects, timeout=timeout, **settings
            )
            # The status is known from here on, whatever happens to the body.
            self.last_response = Response(int(answer.status_code), "", answer.headers)
            try:
                raw = bounded_body(
                    answer.raw, answer.headers.get("Content-Encoding", ""), started + timeout
                )
            except AnswerUnreadable:
                raise
            except Exception as error:  # urllib3's ProtocolError, ReadTimeoutError, zlib.error
                raise AnswerUnreadable(f"answer cut short ({type(error).__name__})") from None
            finally:
                answer.close()
            self.last_response = Response(
                int(answer.status_code), raw.decode("utf-8", "replace"), answer.headers
            )
            return self.last_response

    return RecordingHttpClient


def bounded_body(
    stream: Any, encoding: str, deadline: float, limit: int = MAX_ANSWER_BYTES
) -> bytes:
    """At most `limit` bytes of an answer, inflated no further than `limit`, read by
    `deadline` (time.monotonic()). Raises AnswerUnreadable."""
    import zlib

    inflater = None
    if encoding.strip().lower() in ("gzip", "x-gzip", "deflate"):
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, auto
    # read1 returns what one socket read gave, so a trickle is caught at the
    # deadline; read (urllib3 1.x has no read1) waits for the whole 64 KiB.
    read = getattr(stream, "read1", stream.read)
    kept = bytearray()
    while True:
        if time.monotonic() > deadline:
            raise AnswerUnreadable("answer still arriving at the timeout")
        chunk = read(65536, decode_content=False)
        if not chunk:
            break
        if inflater is not None:
            chunk = inflater.decompress(chunk, limit + 1 - len(kept))
            if inflater.unconsumed_tail:
                raise AnswerUnreadable(f"answer larger than {limit // 1024} KiB")
        kept += chunk
        if len(kept) > limit:
            raise AnswerUnreadable(f"answer larger than {limit // 1024} KiB")
    return bytes(kept)


def make_client(settings: TwilioSettings) -> Any:
    import logging

    from twilio.rest import Client

    # The SDK's default HTTP timeout is None: a stalled Twilio would hang the run.
    http_client = _recording_http_client_class()(timeout=settings.timeout)
    # The SDK logs each request's headers at INFO, Basic auth included: keep it
    # quiet even if a caller turns logging on.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    client = Client(settings.account_sid, settings.auth_token, http_client=http_client)
    # Client(environment={}) still falls back to os.environ, where TWILIO_REGION
    # or TWILIO_EDGE would rewrite the host; clear them explicitly.
    client.region = None
    client.edge = None
    # Every domain self-test and delivery use, so a proxy or a stand-in serves them all:
    # the REST API (messages, the account, its numbers) and Messaging (services).
    client.api.base_url = settings.api_base_url
    client.messaging.base_url = settings.api_base_url
    return client


def send_sms(client: Any, settings: TwilioSettings, to: str, body: str) -> str | None:
    """Send one SMS. Return Twilio's message SID, or None; raise NotifyError.

    None means Twilio accepted the message (it answered HTTP 2xx) but its answer
    held no message SID we could read: an HTML page, truncated JSON, JSON without
    "sid". The caller MUST count None as sent -- sending it again would text the
    operator twice -- and should say so: "sent, but Twilio's answer had no message
    id".

    Any other answer raises NotifyError, whose `kind` is "config", "recipient",
    "transient" or "unknown" (see check_status.notify).
    """

    sender: dict[str, str] = (
        {"messaging_service_sid": settings.messaging_service_sid}
        if settings.messaging_service_sid
        else {"from_": settings.sender_number or ""}
    )
    message = _create(
        client, settings, to, lambda: client.messages.create(to=to, body=body, **sender)
    )
    if message is None:
        return None
    sid = getattr(message, "sid", None)
    # Kept in the state and shown by -v: only what a message SID looks like.
    return sid if isinstance(sid, str) and _MESSAGE_SID.fullmatch(sid) else None


def place_call(client: Any, settings: TwilioSettings, to: str, twiml: str) -> str | None:
    """Place one voice call that speaks `twiml`. Return the call SID, or None for a
    2xx whose answer could not be read (the call is placed: never call again).
    Raises NotifyError, classified as for send_sms."""
    call = _create(
        client,
        settings,
        to,
        lambda: client.calls.create(to=to, from_=settings.sender_number or "", twiml=twiml),
    )
    sid = getattr(call, "sid", None) if call is not None else None
    return sid if isinstance(sid, str) and re.fullmatch(r"CA[0-9a-fA-F]{32}", sid) else None


# Replies read per run: the newest first, and an ACK is among the last few.
MAX_REPLIES = 50


@dataclass(frozen=True)
class Reply:
    sender: str  # the From of the inbound message
    body: str
    sent_at: Any  # datetime (UTC) as Twilio dates it


def read_replies(settings: TwilioSettings, since: Any) -> list[Reply]:
    """The inbound messages to TWILIO_FROM dated on or after `since` (a datetime).

    Twilio's DateSent> filter takes a day, so the day of `since` is asked for
    and the rest is dropped here. Raises NotifyError (OddAnswer for a 2xx that
    is not a list), never anything else.
    """
    from datetime import UTC, datetime

    client = make_client(settings)
    number = settings.sender_number or ""
    found = _ask(
        client,
        settings,
        lambda: client.messages.list(
            to=number,
            date_sent_after=f"{since:%Y-%m-%d}",
            limit=MAX_REPLIES,
            page_size=MAX_REPLIES,
        ),
    )
    if not isinstance(found, list):
        raise OddAnswer("Twilio HTTP 200: the messages' answer is not a list")
    replies = []
    for message in found:
        sent = getattr(message, "date_sent", None) or getattr(message, "date_created", None)
        sender = getattr(message, "from_", None)
        body = getattr(message, "body", None)
        if getattr(message, "direction", None) != "inbound" or not isinstance(sent, datetime):
            continue
        if not isinstance(sender, str) or not isinstance(body, str):
            continue
        sent = sent if sent.tzinfo else sent.replace(tzinfo=UTC)
        if sent >= since:
            replies.append(Reply(sender, body[:200], sent))
    return replies


def _create(client: Any, settings: TwilioSettings, to: str, create: Any) -> Any:
    """One POST that creates a message or a call. Returns what the SDK returned,
    or None when Twilio accepted it (a 2xx) but the answer could not be read.
    Any other answer raises NotifyError."""
    import requests
    from twilio.base.exceptions import TwilioException

    _forget_last_response(client)
    try:
        return create()
    except TwilioException as error:
        # TwilioRestException, and TwilioServiceException (twilio >= 9.10, RFC 9457
        # errors), which is not a TwilioRestException: both carry .status and .code.
        raise _classify_answer(error, client, settings, to) from None
    except requests.exceptions.Timeout:
        raise NotifyError(
            f"Twilio timed out after {settings.timeout:g}s", kind="transient"
        ) from None
    except requests.exceptions.RequestException as error:
        from check_status.probes.http import describe_request_error

        reason = describe_request_error(error, settings.timeout)
        raise NotifyError(f"Twilio unreachable: {reason}", kind="transient") from None
    except AnswerUnreadable as error:
        response = _last_response(client)
        if response is not None and _is_2xx(response.status_code):
            return None  # accepted: the message is on its way
        status = response.status_code if response is not None else "?"
        raise NotifyError(f"Twilio HTTP {status}: {error}", kind="transient") from None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        # The SDK could not read an answer (json.loads on an HTML page, a JSON
        # list where an object belongs...) or failed before sending anything.
        response = _last_response(client)
        if response is not None and _is_2xx(response.status_code):
            return None  # accepted: the message is on its way
        if response is None:
            raise NotifyError(
                f"Twilio client failed before any answer ({type(error).__name__})",
                kind="unknown",
            ) from None
        raise NotifyError(
            f"Twilio HTTP {response.status_code}: {_describe_body(response)}", kind="transient"
        ) from None
    except Exception as error:
        # Whatever else failed, a 2xx was an acceptance: counting it as unsent
        # would text the operator again next run.
        response = _last_response(client)
        if response is not None and _is_2xx(response.status_code):
            return None
        raise NotifyError(
            f"Twilio client failed ({type(error).__name__})", kind="unknown"
        ) from None


def classify_twilio_error(
    error: Exception, *, token: str | None = None, recipient: str | None = None
) -> NotifyError:
    """NotifyError for a TwilioRestException or TwilioServiceException (or lookalike)."""
    return classify_rest_error(
        getattr(error, "status", None),
        getattr(error, "code", None),
        _error_words(error),
        token=token,
        recipient=recipient,
    )


def classify_rest_error(
    status: int | None,
    code: int | None,
    message: str | None = None,
    *,
    token: str | None = None,
    recipient: str | None = None,
) -> NotifyError:
    """Classify one Twilio error answer: HTTP status, Twilio code, Twilio's message.

    The reason is "Twilio <code>: <Twilio's words>", or the table's meaning when
    Twilio gave none, plus the setting to fix for a config-class code. Twilio's
    words are cleaned (see `twilio_words`); `token` and `recipient` are hidden in them.
    """
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if isinstance(code, bool) or not isinstance(code, int) or code == status:
        # The SDK puts the HTTP status where an answer had no Twilio code.
        code = None
    words = twilio_words(message, token=token, recipient=recipient)
    if code in TWILIO_ERRORS:
        kind, meaning = TWILIO_ERRORS[code]
        said = words or meaning
        if code in SETTING_TO_FIX:
            # "...for your account; check TWILIO_FROM", not "account.; check"
            ended = said if said.endswith("..") else said.removesuffix(".")
            said = f"{ended}; check {SETTING_TO_FIX[code]}"
        return NotifyError(f"Twilio {code}: {said}", kind=kind, code=code)
    if status == 401 and code is None:
        return NotifyError(
            f"Twilio HTTP 401: {words or 'authentication failed'}; "
            "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
            kind="config",
        )
    if code is not None:
        reason = f"Twilio {code}: {words}" if words else f"Twilio {code} (HTTP {status})"
    else:
        label = f"Twilio HTTP {status}" if status is not None else "Twilio error"
        reason = f"{label}: {words}" if words else label
    busy = isinstance(status, int) and (status == 429 or 500 <= status <= 599)
    return NotifyError(reason, kind="transient" if busy else "unknown", code=code)


# --- Twilio's words ------------------------------------------------------------------

_SDK_PREFIX = re.compile(r"^\s*Unable to (?:create|fetch|update|delete) record\s*:?\s*")
# A Twilio SID: two capitals and 32 hex digits (AC account, SM message, MG service...).
_MESSAGE_SID = re.compile(r"(SM|MM)[0-9a-fA-F]{32}")
_SID = re.compile(r"(?<![0-9A-Za-z])([A-Z]{2})([0-9a-fA-F]{4})[0-9a-fA-F]{28}(?![0-9A-Za-z])")
# A run of 32 or more hex digits: an auth token looks like that. Hidden, never shortened.
_HEX_RUN = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{32,}(?![0-9a-fA-F])")
HIDDEN = "[hidden]"


def twilio_words(
    message: str | None,
    *,
    token: str | None = None,
    recipient: str | None = None,
    limit: int = MAX_WORDS,
) -> str | None:
    """Twilio's message made fit for a log line, a state file and an SMS-less status page.

    One line without control characters; the token (and any 32-hex run) hidden;
    SIDs shortened to their prefix and 4 digits ("AC0123..."); the recipient's
    number masked like the status page does ("+14***0101"); at most `limit`
    characters, cut on a word boundary and marked "..". None when nothing is left.
    """
    if not isinstance(message, str):
        return None
    text = _SDK_PREFIX.sub("", message)
    text = _hide(text, token, recipient)
    text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    text = " ".join(text.split())
    # Again: a token split by a newline or a control character is whole only now.
    text = _hide(text, token, recipient)
    if not text:
        return None
    return _shorten(text, limit)


# What may split a token in Twilio's text without making it any less the token.
_SPLITTERS = r"[\s\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]*"


def _hide(text: str, token: str | None, recipient: str | None) -> str:
    for secret in _secrets(token):
        text = re.sub(_SPLITTERS.join(re.escape(c) for c in secret), HIDDEN, text)
    text = _SID.sub(lambda m: f"{m.group(1)}{m.group(2)}...", text)
    text = _HEX_RUN.sub(HIDDEN, text)
    if recipient and len(recipient) > 7:
        text = text.replace(recipient, f"{recipient[:3]}***{recipient[-4:]}")
    return text


def _secrets(token: str | None) -> Iterable[str]:
    # Too short a "token" would blank out ordinary words; a real one is 32 characters.
    if token and len(token.strip()) >= 6:
        yield token.strip()


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 2]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + ".."


def _error_words(error: Exception) -> str | None:
    """Twilio's own message: .msg (TwilioRestException), .detail or .title (RFC 9457)."""
    for attribute in ("msg", "detail", "title"):
        value = getattr(error, attribute, None)
        if isinstance(value, str) and _SDK_PREFIX.sub("", value).strip():
            return value
    return None


def _classify_answer(
    error: Exception, client: Any, settings: TwilioSettings, to: str | None
) -> NotifyError:
    words = _error_words(error)
    response = _last_response(client)
    if words is None and response is not None and not _is_json(response):
        words = _describe_body(response)  # "not JSON (HTML page: 502 Bad Gateway)"
    return classify_rest_error(
        getattr(error, "status", None),
        getattr(error, "code", None),
        words,
        token=settings.auth_token,
        recipient=to,
    )


def _forget_last_response(client: Any) -> None:
    http_client = getattr(client, "http_client", None)
    for attribute in ("last_response", "_test_only_last_response"):
        if hasattr(http_client, attribute):
            setattr(http_client, attribute, None)


def _last_response(client: Any) -> Any:
    """The HTTP answer to the last request, if the client kept one."""
    http_client = getattr(client, "http_client", None)
    response = getattr(http_client, "last_response", None)
    if response is None:  # a TwilioHttpClient not made by make_client
        response = getattr(http_client, "_test_only_last_response", None)
    return response if isinstance(getattr(response, "status_code", None), int) else None


def _is_2xx(status: int) -> bool:
    return 200 <= status <= 299


def _is_json(response: Any) -> bool:
    import json

    try:
        json.loads(response.text)
    except (TypeError, ValueError):
        return False
    return True


def _describe_body(response: Any) -> str:
    from check_status.probes.http import describe_non_json

    text = response.text if isinstance(response.text, str) else ""
    headers = response.headers or {}
    content_type = str(headers.get("Content-Type", "") if hasattr(headers, "get") else "")
    if _is_json(response):
        return "answer is JSON but not what the SDK expected"
    words, _detail = describe_non_json(text.encode("utf-8", "replace"), content_type)
    return words


# --- self-test: the whole path to a phone, without sending ----------------------------


class OddAnswer(NotifyError):
    """A 2xx that is not what Twilio documents: a page that is not JSON, JSON of the
    wrong shape. Something other than Twilio's API answered (a proxy, a captive
    portal, a wrong TWILIO_API_BASE_URL)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, kind="unknown")


class Finding(NotifyError):
    """Twilio answered as documented, and the answer shows the path cannot text:
    an account that is not active, a sender that is not the account's or cannot
    send SMS. Carries its own fix."""

    def __init__(self, reason: str, fix: str, *, code: int | None = None) -> None:
        super().__init__(reason, kind="config", code=code)
        self.fix = fix


# Codes whose fix is the account itself (paid, reactivated), not a setting.
ACCOUNT_CODES = frozenset({10001, 20005, 20403, 30002})
# Codes about the sender: TWILIO_FROM, or the numbers of the Messaging Service.
SENDER_CODES = frozenset(
    {21212, 21401, 21407, 21601, 21603, 21606, 21616, 21657, 21659, 21660, 21661, 30032, 30034}
)
SERVICE_CODES = frozenset({21701, 21703, 21704, 21705, 30127})

CREDENTIALS_FIX = "copy TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN again from the Twilio console"
ACCOUNT_FIX = (
    "reactivate the account in the Twilio console (a suspended account often has "
    "an unpaid balance); no SMS leaves an account that is not active"
)
TRANSIENT_FIX = (
    "Twilio is busy, failing or out of reach: check this host's network, DNS and proxy "
    "to api.twilio.com and status.twilio.com, then run self-test again"
)
ODD_ANSWER_FIX = (
    "that is not Twilio's API answering: check TWILIO_API_BASE_URL "
    "(https://api.twilio.com) and any proxy between this host and Twilio"
)
FROM_FIX = (
    "set TWILIO_FROM to an SMS-capable number of this account "
    "(Twilio console > Phone Numbers > Active numbers)"
)
SERVICE_FIX = (
    "fix TWILIO_MESSAGING_SERVICE_SID (MG..., Twilio console > Messaging > Services), "
    "or add a sender to that service's Sender Pool"
)
MAX_LISTED = 20  # numbers read per list: the sender is looked up by its own number


def fix_for(error: NotifyError, settings: TwilioSettings, recipient: str | None = None) -> str:
    """Where to fix what `error` says, for a self-test item or a test SMS.

    Sender codes name the sender's setting, account codes the account, transient
    failures the network and Twilio's status (never the SID and token, which are
    not at fault), recipient codes the number in ALERT_TO.
    """
    if isinstance(error, Finding):
        return error.fix
    if isinstance(error, OddAnswer):
        return ODD_ANSWER_FIX
    code = error.code
    if code == 20003 or (
        code is None and error.kind == "config" and "TWILIO_AUTH_TOKEN" in error.reason
    ):
        return CREDENTIALS_FIX
    if code == 20404:
        return "check TWILIO_ACCOUNT_SID and TWILIO_API_BASE_URL (https://api.twilio.com)"
    if code in ACCOUNT_CODES:
        return ACCOUNT_FIX
    if code in SERVICE_CODES or (code in SENDER_CODES and settings.messaging_service_sid):
        return SERVICE_FIX
    if code in SENDER_CODES:
        return FROM_FIX
    if error.kind == "transient":
        return TRANSIENT_FIX
    if error.kind == "recipient":
        number = recipient or "this number"
        if code == 21610:
            return f"{number} replied STOP: text START from it to the sender, or remove it from ALERT_TO"
        if code == 21608:
            return (
                f"verify {number} in the Twilio console (a trial account), or upgrade the account"
            )
        if code == 21408:
            return "allow SMS to that country in the Twilio console (Messaging > Geo permissions)"
        return f"fix or remove {number} in ALERT_TO"
    if error.kind == "config":
        return (
            "check TWILIO_FROM, TWILIO_MESSAGING_SERVICE_SID and the account in the Twilio console"
        )
    if code is not None:
        return f"see https://www.twilio.com/docs/api/errors/{code}"
    return "read Twilio's answer above; check TWILIO_API_BASE_URL"


def account_state(settings: TwilioSettings) -> str:
    """The account's `status` ("active", "suspended", "closed"), read without sending.

    Raises NotifyError: classified as for send_sms, OddAnswer for a 2xx that is not
    an account.
    """
    client = make_client(settings)
    account = _ask(
        client, settings, lambda: client.api.v2010.accounts(settings.account_sid).fetch()
    )
    status = getattr(account, "status", None)
    words = twilio_words(status, token=settings.auth_token, limit=30) if status else None
    if not isinstance(status, str) or not words:
        raise OddAnswer("Twilio HTTP 200: the account's answer has no status")
    return words


def check_sender(settings: TwilioSettings, calls: bool = False) -> str:
    """Prove the sender can text, without sending; return what was found.

    TWILIO_FROM must be one of the account's IncomingPhoneNumbers, with SMS among
    its capabilities; a Messaging Service (which wins when both are set, as in
    send_sms) must exist and have at least one sender. Raises Finding when the
    answer shows it cannot, NotifyError or OddAnswer when there is no such answer.
    """
    client = make_client(settings)
    if settings.messaging_service_sid:
        return _check_service(client, settings, settings.messaging_service_sid)
    number = settings.sender_number or ""
    if not number.startswith("+"):
        raise Finding(
            f"TWILIO_FROM {number or '(empty)'} is not a phone number", FROM_FIX, code=None
        )
    found = _ask(
        client,
        settings,
        lambda: client.incoming_phone_numbers.list(phone_number=number, limit=MAX_LISTED),
    )
    if not isinstance(found, list):
        raise OddAnswer("Twilio HTTP 200: the numbers' answer is not a list")
    # The filter matches parts of numbers too: only the number itself counts.
    mine = [n for n in found if getattr(n, "phone_number", None) == number]
    if not mine:
        raise Finding(f"TWILIO_FROM {number} is not a number of this account", FROM_FIX)
    capabilities = getattr(mine[0], "capabilities", None)
    sms = capabilities.get("sms") if isinstance(capabilities, dict) else None
    if sms is False:
        raise Finding(
            f"TWILIO_FROM {number} is a number of this account but not SMS-capable", FROM_FIX
        )
    if sms is not True:
        raise OddAnswer("Twilio HTTP 200: the number's answer does not say whether it sends SMS")
    if calls and capabilities.get("voice") is False:
        # The call is the last step of an unanswered CRITICAL: it must not fail at 2 am.
        raise Finding(
            f"TWILIO_FROM {number} can text but cannot call, and CALL_ON asks for calls",
            "enable voice on that number in Twilio's console, or set CALL_ON=never",
        )
    if calls and capabilities.get("voice") is True:
        return f"TWILIO_FROM {number} is an SMS- and voice-capable number of this account"
    return f"TWILIO_FROM {number} is an SMS-capable number of this account"


def _check_service(client: Any, settings: TwilioSettings, sid: str) -> str:
    service = client.messaging.v1.services(sid)
    try:
        _ask(client, settings, service.fetch)
    except NotifyError as error:
        if error.code == 20404:
            raise Finding(
                f"messaging service {sid} does not exist on this account", SERVICE_FIX, code=20404
            ) from None
        raise
    senders = 0
    for kind in ("phone_numbers", "short_codes", "alpha_senders"):
        listed = _ask(
            client, settings, lambda kind=kind: getattr(service, kind).list(limit=MAX_LISTED)
        )
        if not isinstance(listed, list):
            raise OddAnswer(f"Twilio HTTP 200: the service's {kind} answer is not a list")
        senders += len(listed)
        if senders:
            break
    if not senders:
        raise Finding(
            f"messaging service {sid} has no senders: Twilio cannot text from it",
            SERVICE_FIX,
            code=21704,
        )
    return f"messaging service {sid} exists and has a sender"


def _ask(client: Any, settings: TwilioSettings, call: Any) -> Any:
    """One read through the SDK; every answer that is not what Twilio documents
    becomes a NotifyError (OddAnswer for a 2xx), never another exception."""
    import requests
    from twilio.base.exceptions import TwilioException

    _forget_last_response(client)
    try:
        return call()
    except TwilioException as error:
        if getattr(error, "status", None) is not None:
            raise _classify_answer(error, client, settings, None) from None
        # "Unable to fetch page" or "Page Records can not be deserialized": the
        # SDK's list() says nothing more, the answer itself does.
        raise _from_last_response(client, settings) from None
    except requests.exceptions.Timeout:
        raise NotifyError(
            f"Twilio timeout: no answer within {settings.timeout:g}s", kind="transient"
        ) from None
    except requests.exceptions.RequestException as error:
        from check_status.probes.http import describe_request_error

        raise NotifyError(
            f"Twilio unreachable: {describe_request_error(error, settings.timeout)}",
            kind="transient",
        ) from None
    except AnswerUnreadable as error:
        response = _last_response(client)
        status = response.status_code if response is not None else "?"
        raise NotifyError(f"Twilio HTTP {status}: {error}", kind="transient") from None
    except Exception as error:  # json.loads on a page, a list where an object belongs...
        response = _last_response(client)
        if response is None:
            raise NotifyError(
                f"Twilio client failed before any answer ({type(error).__name__})",
                kind="unknown",
            ) from None
        raise _from_last_response(client, settings) from None


def _from_last_response(client: Any, settings: TwilioSettings) -> NotifyError:
    import json

    response = _last_response(client)
    if response is None:
        return NotifyError("Twilio client failed before any answer", kind="unknown")
    status = response.status_code
    if _is_2xx(status):
        return OddAnswer(f"Twilio HTTP {status}: {_describe_body(response)}")
    try:
        payload = json.loads(response.text)
    except (TypeError, ValueError):
        payload = None
    if isinstance(payload, dict):
        message = payload.get("message") or payload.get("detail") or payload.get("title")
        return classify_rest_error(
            status,
            payload.get("code"),
            message if isinstance(message, str) else None,
            token=settings.auth_token,
        )
    return classify_rest_error(status, None, _describe_body(response), token=settings.auth_token)
