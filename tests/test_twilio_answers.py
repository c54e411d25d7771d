"""Every answer Twilio can give is classified, and Twilio's own words are kept (cleaned).

Through the real twilio client against the Twilio stand-in on loopback: make_client,
send_sms and account_state, as delivery and self-test call them.
"""

from __future__ import annotations

import ast
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

import check_status.notify.twilio_sms as twilio_sms
from check_status.notify import NotifyError
from check_status.notify.twilio_sms import (
    TWILIO_ERRORS,
    TwilioSettings,
    account_state,
    classify_rest_error,
    classify_twilio_error,
    make_client,
    send_sms,
)
from tests.standins import TwilioStandIn, free_port

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
SENDER = "+15005550006"
SERVICE = "MG" + "fedcba9876543210" * 2
GOOD = "+14155550101"
GOOD_MASKED = "+14***0101"


@pytest.fixture
def twilio() -> Iterator[TwilioStandIn]:
    with TwilioStandIn(auth_token=TOKEN) as standin:
        yield standin


def settings_for(twilio: TwilioStandIn, **changes) -> TwilioSettings:
    values = {
        "account_sid": SID,
        "auth_token": TOKEN,
        "sender_number": SENDER,
        "messaging_service_sid": None,
        "api_base_url": twilio.url,
        "timeout": 2.0,
    }
    values.update(changes)
    return TwilioSettings(**values)


def failure(settings: TwilioSettings, to: str = GOOD, body: str = "[eu2] CRITICAL") -> NotifyError:
    with pytest.raises(NotifyError) as caught:
        send_sms(make_client(settings), settings, to, body)
    return caught.value


def assert_flags_follow_kind(error: NotifyError) -> None:
    assert error.permanent is (error.kind == "recipient")
    assert error.config is (error.kind == "config")


# --- every class of code, through the client ------------------------------------------

# Written out here, not read from TWILIO_ERRORS: a code moved to the wrong class there
# must fail this test.
EXPECTED_KIND = [
    # the account or the sender: the same for every recipient
    (20003, "config"),
    (20005, "config"),
    (20404, "config"),
    (21212, "config"),
    (21401, "config"),
    (21606, "config"),
    (21659, "config"),
    (21660, "config"),
    (21703, "config"),
    (21704, "config"),
    (30002, "config"),
    (30032, "config"),
    (30034, "config"),
    # this one number, for good
    (21211, "recipient"),
    (21214, "recipient"),
    (21217, "recipient"),
    (21265, "recipient"),
    (21408, "recipient"),
    (21608, "recipient"),
    (21610, "recipient"),
    (21612, "recipient"),
    (21614, "recipient"),
    (21617, "recipient"),
    (21635, "recipient"),
    # busy or down: next minute may work
    (20429, "transient"),
    (20500, "transient"),
    (20503, "transient"),
    (30001, "transient"),
    # not known here
    (21999, "unknown"),
    (12345, "unknown"),
]


@pytest.mark.parametrize(("code", "kind"), EXPECTED_KIND, ids=[str(c) for c, _ in EXPECTED_KIND])
def test_each_code_gets_the_kind_of_its_class(twilio: TwilioStandIn, code: int, kind: str):
    twilio.recipient_errors = {GOOD: code}
    error = failure(settings_for(twilio))
    assert (error.kind, error.code) == (kind, code)
    assert error.reason.startswith(f"Twilio {code}: ")
    assert_flags_follow_kind(error)
    assert twilio.messages == [] and [a["status"] for a in twilio.attempts] == [400]


def test_a_recipient_failure_is_permanent_and_a_config_failure_is_not():
    # The two facts older callers read, for the two classes that matter most.
    recipient = classify_rest_error(400, 21610, "Attempt to send to unsubscribed recipient")
    config = classify_rest_error(400, 21606, None)
    assert (recipient.permanent, recipient.config) == (True, False)
    assert (config.permanent, config.config) == (False, True)


# --- Twilio's words beside the code ---------------------------------------------------


def test_twilios_own_message_is_beside_the_code(twilio: TwilioStandIn):
    twilio.recipient_errors = {GOOD: 21612}
    error = failure(settings_for(twilio))
    assert error.reason == (
        f"Twilio 21612: The 'To' phone number: {GOOD_MASKED}, is not currently reachable"
        f" using the 'From' phone number: {SENDER} via SMS."
    )
    assert GOOD not in error.reason  # the status page for peers masks numbers too


def test_without_a_message_the_tables_meaning_stands_in(twilio: TwilioStandIn):
    twilio.configure(recipient_errors={GOOD: 21610}, error_texts={21610: ""})
    error = failure(settings_for(twilio))
    assert error.reason == f"Twilio 21610: {TWILIO_ERRORS[21610][1]}"
    assert error.kind == "recipient"


def test_a_long_message_is_shortened_on_a_word_boundary(twilio: TwilioStandIn):
    words = " ".join(f"word{i:03d}" for i in range(60))  # 479 characters
    twilio.configure(recipient_errors={GOOD: 21614}, error_texts={21614: words})
    error = failure(settings_for(twilio))
    prefix = "Twilio 21614: "
    assert error.reason.startswith(prefix) and error.reason.endswith("..")
    kept = error.reason[len(prefix) : -2]
    assert 60 <= len(kept) + 2 <= 120
    assert words.startswith(kept) and words[len(kept)] == " "  # whole words only


def test_control_characters_and_newlines_are_removed(twilio: TwilioStandIn):
    text = "The 'To' number\nis\tnot\r\x1b[31m valid\x00 at\u200b all.\x07"
    twilio.configure(recipient_errors={GOOD: 21211}, error_texts={21211: text})
    error = failure(settings_for(twilio))
    assert error.reason == "Twilio 21211: The 'To' number is not [31m valid at all."
    assert all(c.isprintable() for c in error.reason)


@pytest.mark.parametrize("problem_json", [False, True], ids=["legacy", "rfc9457"])
def test_the_token_and_the_sid_never_appear_even_when_twilio_echoes_them(
    twilio: TwilioStandIn, problem_json: bool
):
    echo = f"Account {SID} with token {TOKEN} and {SERVICE} may not send to {{to}}."
    twilio.configure(
        problem_json=problem_json, recipient_errors={GOOD: 21610}, error_texts={21610: echo}
    )
    error = failure(settings_for(twilio))
    assert TOKEN not in error.reason and SID not in error.reason and SERVICE not in error.reason
    assert error.reason == (
        "Twilio 21610: Account AC0123... with token [hidden] and MGfedc... may not send to"
        f" {GOOD_MASKED}."
    )


def test_a_token_that_is_not_hex_is_hidden_too(twilio: TwilioStandIn):
    token = "not-a-hex-token-but-a-secret"
    twilio.configure(
        auth_token=token, recipient_errors={GOOD: 21211}, error_texts={21211: f"bad {token}!"}
    )
    error = failure(settings_for(twilio, auth_token=token))
    assert token not in error.reason
    assert error.reason == "Twilio 21211: bad [hidden]!"


def test_a_token_split_by_a_newline_or_past_the_cut_is_still_hidden(twilio: TwilioStandIn):
    split = f"{TOKEN[:16]}\n{TOKEN[16:]}"
    # No space in the first 60 characters before the cut: shortening first would keep
    # the first 14 characters of the token.
    late = "x" * 50 + " " + "y" * 20 + "=" + TOKEN + " end"
    twilio.configure(
        recipient_errors={GOOD: 21211, "+14155550102": 21614},
        error_texts={21211: f"token {split} here", 21614: late * 2},
    )
    settings = settings_for(twilio)
    split_error = failure(settings, GOOD)
    late_error = failure(settings, "+14155550102")
    assert split_error.reason == "Twilio 21211: token [hidden] here"
    for error in (split_error, late_error):
        assert TOKEN[:8] not in error.reason and TOKEN[-8:] not in error.reason
    assert late_error.reason.startswith("Twilio 21614: " + "x" * 50 + " " + "y" * 20 + "=[hidden]")


def test_a_32_hex_run_is_hidden_without_being_told_the_token():
    other = "0123456789abcdef" * 2
    error = classify_rest_error(400, 21211, f"key {other} leaked", token=None)
    assert other not in error.reason and error.reason == "Twilio 21211: key [hidden] leaked"


def test_the_sdk_prefix_is_not_twilios_words():
    class Legacy(Exception):
        status, code, msg = 400, 21211, "Unable to create record: The 'To' number 1 is invalid."

    error = classify_twilio_error(Legacy())
    assert error.reason == "Twilio 21211: The 'To' number 1 is invalid."


# --- config: the sender, named by its setting -----------------------------------------


def test_21606_from_sender_errors_is_config_and_names_twilio_from(twilio: TwilioStandIn):
    twilio.sender_errors = {SENDER: 21606}
    settings = settings_for(twilio)
    errors = [failure(settings, to) for to in (GOOD, "+14155550102")]
    for error in errors:
        assert (error.kind, error.code, error.config, error.permanent) == (
            "config",
            21606,
            True,
            False,
        )
        assert error.reason == (
            f"Twilio 21606: The From phone number {SENDER} is not a valid, SMS-capable inbound"
            " phone number or short code for your account; check TWILIO_FROM"
        )
    assert twilio.messages == []


@pytest.mark.parametrize("code", [21212, 21659, 21660])
def test_other_from_problems_name_twilio_from(twilio: TwilioStandIn, code: int):
    twilio.sender_errors = {SENDER: code}
    error = failure(settings_for(twilio))
    assert error.kind == "config" and error.reason.endswith("; check TWILIO_FROM")
    assert SENDER in error.reason  # Twilio's words say which number


@pytest.mark.parametrize("code", [21703, 21704])
def test_messaging_service_problems_name_its_setting(twilio: TwilioStandIn, code: int):
    twilio.sender_errors = {SERVICE: code}
    error = failure(settings_for(twilio, sender_number=None, messaging_service_sid=SERVICE))
    assert error.kind == "config"
    assert error.reason.endswith("; check TWILIO_MESSAGING_SERVICE_SID")
    assert SERVICE not in error.reason and "MGfedc..." in error.reason


def test_a_wrong_token_is_config_with_its_fix_hint(twilio: TwilioStandIn):
    error = failure(settings_for(twilio, auth_token="0123456789abcdef" * 2))
    assert (error.kind, error.code) == ("config", 20003)
    assert error.reason == (
        "Twilio 20003: Authenticate; check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
    )


# --- unknown, transient ---------------------------------------------------------------


def test_an_unknown_code_is_unknown_and_keeps_twilios_words(twilio: TwilioStandIn):
    twilio.recipient_errors = {GOOD: 21999}
    error = failure(settings_for(twilio))
    assert (error.kind, error.code, error.permanent, error.config) == (
        "unknown",
        21999,
        False,
        False,
    )
    assert error.reason == f"Twilio 21999: Error 21999 for {GOOD_MASKED}"


@pytest.mark.parametrize(
    ("mode", "code", "reason"),
    [
        ("error429", 20429, "Twilio 20429: Too Many Requests"),
        ("error500", 20500, "Twilio 20500: Internal Server Error"),
        ("html", None, "Twilio HTTP 502: not JSON (HTML page)"),
    ],
)
def test_429_5xx_and_proxy_pages_are_transient(twilio: TwilioStandIn, mode, code, reason):
    twilio.mode = mode
    error = failure(settings_for(twilio))
    assert (error.kind, error.code, error.reason) == ("transient", code, reason)
    assert twilio.messages == []


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (429, None, "transient"),
        (429, 29999, "transient"),  # a code we do not know, on a 429
        (500, None, "transient"),
        (503, 503, "transient"),  # the SDK's "no code": the status again
        (504, 59999, "transient"),
        (400, None, "unknown"),
        (404, None, "unknown"),
        (401, None, "config"),
        (301, None, "unknown"),
    ],
)
def test_status_without_a_known_code(status, code, kind):
    error = classify_rest_error(status, code, None)
    assert error.kind == kind
    assert error.code == (None if code in (None, status) else code)
    assert str(status) in error.reason or str(code) in error.reason
    assert_flags_follow_kind(error)


def test_a_timeout_and_a_refused_connection_are_transient(twilio: TwilioStandIn):
    twilio.configure(mode="slow", delay_seconds=5)
    slow = failure(settings_for(twilio, timeout=0.3))
    refused = failure(settings_for(twilio, api_base_url=f"http://127.0.0.1:{free_port()}"))
    assert (slow.kind, slow.reason) == ("transient", "Twilio timed out after 0.3s")
    assert (refused.kind, refused.reason) == (
        "transient",
        "Twilio unreachable: connection refused",
    )


# --- RFC 9457 answers (TwilioServiceException) ----------------------------------------


@pytest.mark.parametrize(
    "setup",
    [
        {"recipient_errors": {GOOD: 21610}},
        {"recipient_errors": {GOOD: 21211}},
        {"recipient_errors": {GOOD: 21999}},
        {"sender_errors": {SENDER: 21606}},
        {"mode": "error429"},
        {"mode": "error500"},
    ],
    ids=["21610", "21211", "21999", "21606", "429", "500"],
)
def test_problem_json_is_classified_like_the_legacy_shape(twilio: TwilioStandIn, setup):
    from twilio.base.exceptions import TwilioRestException

    twilio.configure(**setup)
    legacy = failure(settings_for(twilio))
    twilio.problem_json = True
    client = make_client(settings_for(twilio))
    with pytest.raises(Exception) as raw:  # the SDK's own exception, for the record
        client.messages.create(to=GOOD, from_=SENDER, body="x")
    assert not isinstance(raw.value, TwilioRestException)  # TwilioServiceException
    problem = failure(settings_for(twilio))
    assert (problem.kind, problem.code, problem.reason) == (
        legacy.kind,
        legacy.code,
        legacy.reason,
    )


# --- a 2xx is an acceptance -----------------------------------------------------------


def test_an_accepted_message_returns_its_sid(twilio: TwilioStandIn):
    settings = settings_for(twilio)
    sid = send_sms(make_client(settings), settings, GOOD, "hello")
    [message] = twilio.messages
    assert sid is not None and sid.startswith("SM") and sid == message["sid"]


@pytest.mark.parametrize("mode", ["accepted_html", "accepted_no_sid"])
def test_accepted_without_a_readable_sid_is_none_not_a_failure(twilio: TwilioStandIn, mode):
    twilio.mode = mode
    settings = settings_for(twilio)
    assert send_sms(make_client(settings), settings, GOOD, "hello") is None
    [message] = twilio.messages
    assert (message["to"], message["body"], message["sid"]) == (GOOD, "hello", None)
    assert [a["status"] for a in twilio.attempts] == [201]


def test_an_acceptance_after_another_on_the_same_client_is_judged_on_its_own(
    twilio: TwilioStandIn,
):
    # One client texts several operators in self-test: the second answer (a 502 page)
    # must not be taken for an acceptance because the first one was a 201.
    settings = settings_for(twilio)
    client = make_client(settings)
    assert send_sms(client, settings, GOOD, "one") is not None
    twilio.mode = "html"
    with pytest.raises(NotifyError) as caught:
        send_sms(client, settings, GOOD, "two")
    assert caught.value.kind == "transient" and len(twilio.messages) == 1
    twilio.mode = "accepted_html"
    assert send_sms(client, settings, GOOD, "three") is None
    assert len(twilio.messages) == 2


def test_an_sdk_failure_before_any_answer_is_not_an_acceptance(twilio: TwilioStandIn):
    settings = settings_for(twilio)
    client = make_client(settings)
    assert send_sms(client, settings, GOOD, "one") is not None  # last answer: a 201

    class Broken:  # the same HTTP client (its last answer a 201); create fails first
        http_client = client.http_client

        class messages:  # stands for the SDK's client.messages
            @staticmethod
            def create(**kwargs):
                raise ValueError("before any request")

    with pytest.raises(NotifyError) as caught:
        send_sms(Broken(), settings, GOOD, "two")
    assert caught.value.kind == "unknown" and "before any answer" in caught.value.reason


# --- the credential check -------------------------------------------------------------


def test_the_account_read_uses_the_same_classification(twilio: TwilioStandIn):
    assert account_state(settings_for(twilio)) == "active"
    wrong = "0123456789abcdef" * 2
    with pytest.raises(NotifyError) as caught:
        account_state(settings_for(twilio, auth_token=wrong))
    assert (caught.value.kind, caught.value.code) == ("config", 20003)
    assert caught.value.reason.endswith("; check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
    assert wrong not in caught.value.reason
    twilio.mode = "html"
    with pytest.raises(NotifyError) as caught:
        account_state(settings_for(twilio))
    assert caught.value.kind == "transient"
    assert caught.value.reason == "Twilio HTTP 502: not JSON (HTML page)"
    assert twilio.attempts == []  # nothing was sent


# --- the table itself -----------------------------------------------------------------


def _table_literal() -> ast.Dict:
    tree = ast.parse(Path(twilio_sms.__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "TWILIO_ERRORS"
            and isinstance(node.value, ast.Dict)
        ):
            return node.value
    raise AssertionError("TWILIO_ERRORS is not a dict literal in twilio_sms.py")


def test_the_table_has_no_code_twice_and_only_known_classes():
    # A dict literal keeps the last of two equal keys without a word: read the source.
    literal = _table_literal()
    codes = [ast.literal_eval(key) for key in literal.keys if key is not None]
    twice = sorted({c for c in codes if codes.count(c) > 1})
    assert twice == [], f"codes listed more than once (so in two places): {twice}"
    assert len(codes) == len(TWILIO_ERRORS)
    for code, (kind, meaning) in TWILIO_ERRORS.items():
        assert isinstance(code, int) and 10000 <= code <= 99999, code
        assert kind in ("config", "recipient", "transient"), (code, kind)
        assert meaning and meaning == meaning.strip(), code


def test_every_setting_to_fix_belongs_to_a_config_code():
    for code in twilio_sms.SETTING_TO_FIX:
        assert TWILIO_ERRORS[code][0] == "config", code


# --- NotifyError, old and new call sites ----------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "kind"),
    [
        ({"permanent": False}, "transient"),
        ({"permanent": True, "code": 21211}, "recipient"),
        ({"permanent": False, "code": 20003, "config": True}, "config"),
        ({"kind": "unknown", "code": 21999}, "unknown"),
        ({"kind": "recipient", "permanent": True}, "recipient"),
    ],
)
def test_notify_error_kind_follows_the_old_keywords(kwargs, kind):
    error = NotifyError("why", **kwargs)
    assert (error.kind, error.reason, str(error)) == (kind, "why", "why")
    assert error.code == kwargs.get("code")
    assert_flags_follow_kind(error)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.kind, copy.reason, copy.code) == (error.kind, error.reason, error.code)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "config", "permanent": True},
        {"kind": "recipient", "config": True},
        {"permanent": True, "config": True},
        {"kind": "fatal"},
    ],
)
def test_notify_error_refuses_contradictions(kwargs):
    with pytest.raises(ValueError):
        NotifyError("why", **kwargs)
