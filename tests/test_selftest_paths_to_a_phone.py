"""`check-status self-test` proves the whole path to a phone, without sending.

Monitoring must never look installed while it cannot page: each test breaks one
link (the account, the sender, Twilio's answer, the heartbeat check) and asserts
the exact FAIL (or WARN) line, its fix, the exit code, that nothing crashed, and
that plain self-test sent no SMS. The real CLI (`self-test --env-file F`) and the
real twilio client run against the stand-ins, or tests/hostile.py's servers, on
loopback.
"""

from __future__ import annotations

import pytest

from check_status import selftest
from check_status.notify.heartbeat import COPY_URL_FIX
from check_status.notify.twilio_sms import (
    ACCOUNT_FIX,
    CREDENTIALS_FIX,
    FROM_FIX,
    ODD_ANSWER_FIX,
    SERVICE_FIX,
    TRANSIENT_FIX,
)
from tests import test_selftest as base
from tests.hostile import HostileServer, answer, drip
from tests.standins import HeartbeatStandIn, TwilioStandIn, free_port
from tests.test_selftest import (  # fixtures and helpers, not tests
    GOOD,
    SENDER,
    SID,
    item_lines,
    parse_items,
    self_test,
    sms_settings,
)

# The fixtures of tests/test_selftest.py, shared (assigned, not imported by name:
# pytest finds fixtures among a module's attributes).
installed = base.installed
twilio = base.twilio

SERVICE = "MG" + "abcdef0123456789" * 2
CHECK = "5f1e0c3a-1b2c-4d5e-8f90-abcdefabcdef"


def lines_of(output: str) -> list[str]:
    return output.splitlines()


def fix_under(output: str, line: str) -> str:
    """The fix line printed under an item line."""
    lines = lines_of(output)
    following = lines[lines.index(line) + 1]
    assert following.startswith("     fix: "), output
    return following.removeprefix("     fix: ")


def only_line(output: str, name: str) -> str:
    found = item_lines(output, name)
    assert len(found) == 1, output
    return found[0]


def assert_clean(result) -> None:
    """A verdict, not a crash: every line an item, the summary last."""
    assert "Traceback" not in result.output and "internal error" not in result.output
    parse_items(result.output)


def assert_nothing_sent(standin: TwilioStandIn) -> None:
    assert standin.messages == [] and standin.attempts == []


# --- the account ----------------------------------------------------------------------


@pytest.mark.parametrize("state", ["suspended", "closed"])
def test_an_account_that_is_not_active_fails_naming_its_state(cli, installed, twilio, state):
    twilio.account_status = state
    env_file = installed.write(**sms_settings(twilio))
    result = self_test(cli, env_file)
    assert result.exit_code == 2, result.output
    assert_clean(result)
    line = only_line(result.output, "twilio")
    assert line == (
        f"FAIL twilio: credentials valid, but the account is {state}: Twilio sends no SMS from it"
    )
    assert fix_under(result.output, line) == ACCOUNT_FIX
    assert "reactivate the account in the Twilio console" in ACCOUNT_FIX
    assert_nothing_sent(twilio)


def test_an_active_account_and_a_capable_sender_pass(cli, installed, twilio):
    twilio.phone_numbers = {SENDER: {"sms": True}, "+15005550007": {"sms": False}}
    env_file = installed.write(**sms_settings(twilio))
    result = self_test(cli, env_file)
    lines = lines_of(result.output)
    assert "PASS twilio: credentials valid (account active), checked without sending" in lines
    # CALL_ON=CRITICAL by default: the number is checked for calls too.
    assert (
        f"PASS sender: TWILIO_FROM {SENDER} is an SMS- and voice-capable number of this account"
        in lines
    )
    assert ("GET", f"/2010-04-01/Accounts/{SID}.json") in twilio.requests
    assert any(
        path.startswith(f"/2010-04-01/Accounts/{SID}/IncomingPhoneNumbers.json?")
        and "PhoneNumber=%2B15005550006" in path
        for _method, path in twilio.requests
    ), twilio.requests
    assert_nothing_sent(twilio)


def test_a_wrong_token_names_the_sid_and_token_once(cli, installed, twilio):
    env_file = installed.write(**sms_settings(twilio, TWILIO_AUTH_TOKEN="ab" * 16))
    result = self_test(cli, env_file)
    assert result.exit_code == 2
    line = only_line(result.output, "twilio")
    assert line.startswith("FAIL twilio: Twilio 20003: ")
    assert fix_under(result.output, line) == CREDENTIALS_FIX
    assert item_lines(result.output, "sender") == []  # the same failure, said once


# --- the sender -----------------------------------------------------------------------


def test_a_sender_that_cannot_send_sms_fails(cli, installed, twilio):
    twilio.phone_numbers = {SENDER: {"sms": False, "voice": True}}
    env_file = installed.write(**sms_settings(twilio))
    result = self_test(cli, env_file)
    assert result.exit_code == 2, result.output
    assert_clean(result)
    line = only_line(result.output, "sender")
    assert (
        line == f"FAIL sender: TWILIO_FROM {SENDER} is a number of this account but not SMS-capable"
    )
    assert fix_under(result.output, line) == FROM_FIX
    assert "TWILIO_FROM" in FROM_FIX and "ALERT_TO" not in FROM_FIX
    assert item_lines(result.output, "twilio")[0].startswith("PASS twilio: credentials valid")
    assert_nothing_sent(twilio)


def test_a_sender_that_is_not_the_accounts_fails(cli, installed, twilio):
    # Twilio's filter matches parts of numbers: a longer number holding the sender's
    # digits is listed, and is not the sender.
    twilio.phone_numbers = {"+15005550007": {"sms": True}, "+115005550006": {"sms": True}}
    env_file = installed.write(**sms_settings(twilio))
    result = self_test(cli, env_file)
    assert result.exit_code == 2, result.output
    assert_clean(result)
    line = only_line(result.output, "sender")
    assert line == f"FAIL sender: TWILIO_FROM {SENDER} is not a number of this account"
    assert fix_under(result.output, line) == FROM_FIX
    assert_nothing_sent(twilio)


def messaging_settings(twilio: TwilioStandIn) -> dict[str, str]:
    return sms_settings(twilio, TWILIO_FROM="", TWILIO_MESSAGING_SERVICE_SID=SERVICE)


def test_a_messaging_service_without_senders_fails(cli, installed, twilio):
    twilio.messaging_services = {SERVICE: []}
    env_file = installed.write(**messaging_settings(twilio))
    result = self_test(cli, env_file)
    assert result.exit_code == 2, result.output
    assert_clean(result)
    line = only_line(result.output, "sender")
    assert line == (
        f"FAIL sender: messaging service {SERVICE} has no senders: Twilio cannot text from it"
    )
    assert fix_under(result.output, line) == SERVICE_FIX
    assert ("GET", f"/v1/Services/{SERVICE}/PhoneNumbers?PageSize=20") in twilio.requests
    assert_nothing_sent(twilio)


def test_a_messaging_service_that_does_not_exist_fails(cli, installed, twilio):
    twilio.messaging_services = {}
    env_file = installed.write(**messaging_settings(twilio))
    result = self_test(cli, env_file)
    assert result.exit_code == 2
    line = only_line(result.output, "sender")
    assert line == f"FAIL sender: messaging service {SERVICE} does not exist on this account"
    assert fix_under(result.output, line) == SERVICE_FIX


def test_a_messaging_service_with_a_sender_passes(cli, installed, twilio):
    twilio.messaging_services = {SERVICE: [SENDER]}
    env_file = installed.write(**messaging_settings(twilio))
    result = self_test(cli, env_file)
    line = only_line(result.output, "sender")
    assert line == f"PASS sender: messaging service {SERVICE} exists and has a sender"
    assert_nothing_sent(twilio)


# --- answers that are not what Twilio documents ---------------------------------------


@pytest.mark.parametrize(
    ("page", "content_type"),
    [
        (b"<html><head><title>Hotel Wi-Fi</title></head><body>x</body></html>", "text/html"),
        (b"OK, but not JSON", "application/json"),
    ],
)
def test_a_non_json_200_account_read_fails_and_every_other_item_is_shown(
    cli, installed, nodeos, page, content_type
):
    with HostileServer(answer(page, content_type=content_type)) as portal:
        env_file = installed.write(**sms_settings(portal, TWILIO_API_BASE_URL=portal.url))
        result = self_test(cli, env_file)
    assert result.exit_code == 2, result.output
    assert_clean(result)
    line = only_line(result.output, "twilio")
    assert line.startswith("FAIL twilio: Twilio HTTP 200: not JSON"), result.output
    assert fix_under(result.output, line) == ODD_ANSWER_FIX
    names = {name for _result, name, _detail in parse_items(result.output)}
    assert {"config", "nodeos", "state directory", "phone numbers", "cron file"} <= names
    assert {"cron entry", "env file", "freshness"} <= names


def test_json_of_the_wrong_shape_fails_with_its_own_fix(cli, installed):
    with HostileServer(answer(b'["not", "an", "account"]')) as proxy:
        env_file = installed.write(**sms_settings(proxy, TWILIO_API_BASE_URL=proxy.url))
        result = self_test(cli, env_file)
    assert result.exit_code == 2
    assert_clean(result)
    line = only_line(result.output, "twilio")
    assert line == "FAIL twilio: Twilio HTTP 200: answer is JSON but not what the SDK expected"
    assert fix_under(result.output, line) == ODD_ANSWER_FIX


def test_a_trickled_twilio_answer_ends_at_the_items_bound(cli, installed, monkeypatch):
    # One byte every half second: no socket read ever times out, only the item's bound.
    monkeypatch.setattr(selftest, "TWILIO_CHECK_SECONDS", 2.0)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    with HostileServer(drip(head + b"{" * 100, every=0.5)) as slow:
        env_file = installed.write(**sms_settings(slow, TWILIO_API_BASE_URL=slow.url))
        result = self_test(cli, env_file)
    assert result.exit_code == 2, result.output
    assert_clean(result)
    line = only_line(result.output, "twilio")
    assert line == "FAIL twilio: timeout: Twilio gave no complete answer within 2s"
    assert fix_under(result.output, line) == TRANSIENT_FIX


@pytest.mark.parametrize(
    ("mode", "line"),
    [
        ("error429", "FAIL twilio: Twilio 20429: Too Many Requests"),
        ("error500", "FAIL twilio: Twilio 20500: Internal Server Error"),
        ("html", "FAIL twilio: Twilio HTTP 502: not JSON (HTML page)"),
    ],
)
def test_a_busy_or_failing_twilio_names_the_network_not_the_token(
    cli, installed, twilio, mode, line
):
    twilio.mode = mode
    env_file = installed.write(**sms_settings(twilio))
    result = self_test(cli, env_file)
    assert result.exit_code == 2
    assert_clean(result)
    assert only_line(result.output, "twilio") == line
    fix = fix_under(result.output, line)
    assert fix == TRANSIENT_FIX
    assert "network" in fix and "status.twilio.com" in fix
    assert "TOKEN" not in fix and "SID" not in fix
    assert_nothing_sent(twilio)


def test_an_unreachable_twilio_names_the_network(cli, installed, twilio):
    port = free_port()
    env_file = installed.write(
        **sms_settings(twilio, TWILIO_API_BASE_URL=f"http://127.0.0.1:{port}")
    )
    result = self_test(cli, env_file)
    assert result.exit_code == 2
    line = only_line(result.output, "twilio")
    assert line.startswith("FAIL twilio: Twilio unreachable: ") and "refused" in line
    assert fix_under(result.output, line) == TRANSIENT_FIX


# --- --send-test-sms uses the same mapping ----------------------------------------------


def test_a_test_sms_refused_for_the_sender_names_twilio_from(cli, installed, twilio):
    twilio.sender_errors = {SENDER: 21606}
    env_file = installed.write(**sms_settings(twilio, ALERT_TO=GOOD))
    result = self_test(cli, env_file, "--send-test-sms")
    assert result.exit_code == 2, result.output
    assert_clean(result)
    line = only_line(result.output, f"test SMS to {GOOD}")
    assert line.startswith(f"FAIL test SMS to {GOOD}: Twilio 21606: ")
    assert line.endswith("; check TWILIO_FROM")
    fix = fix_under(result.output, line)
    assert fix == FROM_FIX and "ALERT_TO" not in fix
    assert twilio.messages == []


def test_a_test_sms_to_an_invalid_number_names_alert_to(cli, installed, twilio):
    bad = "+15005550001"
    twilio.invalid_numbers = {bad}
    env_file = installed.write(**sms_settings(twilio, ALERT_TO=bad))
    result = self_test(cli, env_file, "--send-test-sms")
    line = only_line(result.output, f"test SMS to {bad}")
    assert line.startswith(f"FAIL test SMS to {bad}: Twilio 21211: ")
    assert fix_under(result.output, line) == f"fix or remove {bad} in ALERT_TO"


# --- the heartbeat ----------------------------------------------------------------------


def test_a_deleted_heartbeat_check_fails(cli, installed):
    with HeartbeatStandIn(checks={"another-check/its-slug"}) as service:
        env_file = installed.write(HEARTBEAT_URL=f"{service.url}/ping/{CHECK}")
        result = self_test(cli, env_file)
        assert result.exit_code == 2, result.output
        assert_clean(result)
        line = only_line(result.output, "heartbeat")
        assert line == "FAIL heartbeat: the check does not exist (404)"
        assert fix_under(result.output, line) == COPY_URL_FIX
        assert service.log_events == [(CHECK, b"check-status self-test")]
        assert service.pings == []  # the timer was not reset
        assert CHECK not in result.output and "/ping" not in result.output


def test_a_heartbeat_check_by_slug_is_verified_too(cli, installed):
    check = "fqOOd6-F4MMNuCEnzTU01w/eu2-check-status"
    with HeartbeatStandIn(checks={check}) as service:
        env_file = installed.write(HEARTBEAT_URL=f"{service.url}/ping/{check}")
        result = self_test(cli, env_file)
        line = only_line(result.output, "heartbeat")
        assert line == f"PASS heartbeat: check exists (127.0.0.1:{service.port})"
        assert service.pings == [] and "fqOOd6" not in result.output


def test_a_heartbeat_elsewhere_cannot_be_verified_and_warns(cli, installed):
    # Cronitor's telemetry URL: a GET or HEAD there would be a ping.
    with HeartbeatStandIn() as service:
        env_file = installed.write(HEARTBEAT_URL=f"{service.url}/p/0a1b2c3d4e5f/check-status")
        result = self_test(cli, env_file)
        assert_clean(result)
        line = only_line(result.output, "heartbeat")
        assert line == (
            f"WARN heartbeat: 127.0.0.1:{service.port} reachable, "
            "but the check cannot be verified without a ping"
        )
        assert fix_under(result.output, line)
        assert service.requests == [("HEAD", "/")]
        assert "0a1b2c3d4e5f" not in result.output


def test_a_trickling_heartbeat_service_ends_at_its_bound(cli, installed):
    with HostileServer(drip(b"HTTP/1.1 200 OK\r\n", every=0.5)) as slow:
        env_file = installed.write(HEARTBEAT_URL=f"{slow.url}/ping/{CHECK}")
        result = self_test(cli, env_file)
    assert_clean(result)
    line = only_line(result.output, "heartbeat")
    assert line.startswith(f"FAIL heartbeat: 127.0.0.1:{slow.port}: ")
    assert "timeout" in line or "timed out" in line or "within" in line, line
    assert CHECK not in result.output


# --- the tables behind the fix lines ------------------------------------------------------


def _settings(service: str | None = None):
    from check_status.notify.twilio_sms import TwilioSettings

    return TwilioSettings(SID, "f" * 32, None if service else SENDER, service, "http://x")


@pytest.mark.parametrize(
    ("status", "code", "fix"),
    [
        (400, 21606, FROM_FIX),
        (400, 21212, FROM_FIX),
        (400, 21659, FROM_FIX),
        (400, 21660, FROM_FIX),
        (400, 21701, SERVICE_FIX),
        (400, 21703, SERVICE_FIX),
        (400, 21704, SERVICE_FIX),
        (400, 21705, SERVICE_FIX),
        (401, 20003, CREDENTIALS_FIX),
        (401, None, CREDENTIALS_FIX),
        (403, 30002, ACCOUNT_FIX),
        (403, 20005, ACCOUNT_FIX),
        (429, 20429, TRANSIENT_FIX),
        (429, None, TRANSIENT_FIX),
        (500, 20500, TRANSIENT_FIX),
        (503, None, TRANSIENT_FIX),
        (400, 21211, "fix or remove +14155550101 in ALERT_TO"),
        (400, 21614, "fix or remove +14155550101 in ALERT_TO"),
    ],
)
def test_every_fix_names_the_right_place(status, code, fix):
    from check_status.notify.twilio_sms import classify_rest_error, fix_for

    error = classify_rest_error(status, code, None)
    assert fix_for(error, _settings(), "+14155550101") == fix


def test_a_from_code_with_a_messaging_service_names_the_service():
    from check_status.notify.twilio_sms import classify_rest_error, fix_for

    assert fix_for(classify_rest_error(400, 21606, None), _settings(SERVICE)) == SERVICE_FIX


def test_timeouts_and_unreachable_name_the_network():
    from check_status.notify import NotifyError
    from check_status.notify.twilio_sms import fix_for

    for reason in ("Twilio timeout: no answer within 8s", "Twilio unreachable: connection refused"):
        assert fix_for(NotifyError(reason, kind="transient"), _settings()) == TRANSIENT_FIX


@pytest.mark.parametrize(
    ("url", "verifiable"),
    [
        (f"https://hc-ping.com/{CHECK}", True),
        (f"https://hc-ping.com/{CHECK}?rid=1", True),
        ("https://hc-ping.com/fqOOd6-F4MMNuCEnzTU01w/db-backup", True),
        (f"https://hc.example.com/ping/{CHECK}", True),
        ("https://example.com/monitoring/ping/key_1/eu2", True),
        ("https://cronitor.link/p/0a1b2c3d4e5f/check-status", False),
        ("https://example.com/a/b", False),
        ("https://nosnch.in/0a1b2c3d4e", False),
    ],
)
def test_healthchecks_urls_are_recognised_on_any_host(url, verifiable):
    from check_status.notify.heartbeat import is_healthchecks_url, log_url

    assert is_healthchecks_url(url) is verifiable
    if verifiable:
        parts = log_url(url).split("?")
        assert parts[0].endswith("/log") and "/log/" not in parts[0]


def test_the_heartbeat_standin_counts_log_events_apart_from_pings():
    import requests

    with HeartbeatStandIn(checks={CHECK}) as service:
        assert requests.post(f"{service.url}/ping/{CHECK}/log", data=b"x", timeout=2).text == "OK"
        missing = requests.post(
            f"{service.url}/ping/{'0' * 8}-0000-0000-0000-{'0' * 12}/log", timeout=2
        )
        assert (missing.status_code, missing.text) == (404, "not found")
        assert requests.get(f"{service.url}/ping/{CHECK}", timeout=2).status_code == 200
        assert requests.get(f"{service.url}/ping/not-a-check", timeout=2).status_code == 404
        assert service.pings == [f"GET /ping/{CHECK}", "GET /ping/not-a-check"]
        assert [check for check, _body in service.log_events] == [
            CHECK,
            f"{'0' * 8}-0000-0000-0000-{'0' * 12}",
        ]
