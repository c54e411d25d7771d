"""`check-status self-test`: after every deploy, prove the whole alerting path works.

One item per line, PASS, WARN or FAIL, each failure with a fix. The
installation items (cron file, entry, daemon, env file, misnamed siblings) are
the same code `install.sh --check` runs (see installation.py), and so are the
token file's mode and the line saying who can read each file.

The path to a phone is proven without sending anything: the Twilio credentials
and an `active` account; the sender (TWILIO_FROM one of the account's
SMS-capable IncomingPhoneNumbers, or the Messaging Service existing with a
sender); the heartbeat check existing (healthchecks.io's `/log`, which neither
pings nor resets the timer). Any answer that is not what the service documents
is a FAIL with its own fix, never a crash.

Time bound. Every group of items runs in its own thread, all at once, under
`check_status.concurrency.run_concurrently`, each group bounded by itself:

- nodeos and ENDPOINTS: HTTP_TIMEOUT_SECONDS + 1 (at most 20 + 1 = 21 s);
- Twilio's checks: TWILIO_CHECK_SECONDS (10 s, the account and the sender read
  side by side), then, only with --send-test-sms, the texts side by side within
  TEST_SMS_SECONDS (11 s): at most 21 s;
- the heartbeat: HEARTBEAT_CHECK_SECONDS (10 s; the exchange itself ends in 5 s);
- the installation items (`crontab -l` has a 10 s timeout), the state
  directory and freshness: local, bounded by the same outer deadline.

Over all of them, NETWORK_DEADLINE_SECONDS (25 s): a group still running then
becomes a FAIL `no answer within 25s` and is left behind (daemon threads). Add
the config load and printing, and a self-test ends within SELF_TEST_BOUND_SECONDS
= 30 s, whatever hangs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from check_status.config import Config
from check_status.installation import (
    CRON_DIR,
    Item,
    failed,
    passed,
    secret_file_items,
    state_freshness,
    verify_installation,
    warned,
)
from check_status.model import ProbeFailure
from check_status.probes.http import host_label

TWILIO_CHECK_SECONDS = 10.0
TEST_SMS_SECONDS = 11.0  # one send's own timeout (10 s) and a second
HEARTBEAT_CHECK_SECONDS = 10.0
NETWORK_DEADLINE_SECONDS = 25.0
SELF_TEST_BOUND_SECONDS = 30.0
# Each Twilio request's own timeout: below the item's bound, so a silent Twilio is
# named as a request timeout, and a trickling one by the item's bound.
TWILIO_REQUEST_SECONDS = 8.0

TEST_SMS = "[{node}] TEST from check-status self-test: SMS alerts reach you. No action needed."


def this_installation_executable() -> Path:
    """The console script of the environment this code runs from."""
    import sys

    return Path(sys.prefix) / "bin" / "check-status"


def installation_items(
    config: Config, expected_executable: Path, now: datetime, cron_dir: Path = CRON_DIR
) -> Iterator[Item]:
    """The cron file (which must be in `cron_dir`, the one directory cron reads:
    the tests name a stand-in), the entry, cron itself, the env file."""
    env_file = Path(config.env_file) if config.env_file else None
    yield from verify_installation(
        Path(config.cron_file), env_file, expected_executable, cron_dir=cron_dir
    )
    yield from secret_file_items(config)


def freshness_item(config: Config, expected_executable: Path, now: datetime) -> Item:
    # With the grace after an install that install.sh --check does not give.
    return state_freshness(config, expected_executable, now, grace=True)


def node_items(config: Config) -> Iterator[Item]:
    from check_status.concurrency import run_concurrently
    from check_status.probes.nodeos import fetch_chain_info

    timeout = config.http_timeout_seconds
    urls = {
        "nodeos": config.nodeos_url,
        **{f"endpoint {host_label(u)}": u for u in config.endpoints},
    }
    answers = run_concurrently(
        {name: (lambda url=url: fetch_chain_info(url, timeout)) for name, url in urls.items()},
        timeout + 1,
    )
    for name, answer in answers.items():
        where = host_label(urls[name])
        if isinstance(answer, ProbeFailure):
            fix = "is nodeos running? check NODEOS_URL" if name == "nodeos" else "check ENDPOINTS"
            yield failed(name, f"{where}: {answer.reason}", fix)
        else:
            yield passed(
                name,
                f"{where} reachable: chain {answer.chain_id[:12]}..., {answer.server_version}, "
                f"head #{answer.head_block_num}",
            )


def state_dir_item(config: Config) -> Item:
    directory = Path(config.state_file).parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".self-test-"):
            pass
    except OSError as error:
        return failed(
            "state directory",
            f"{directory} is not writable: {error.strerror or error}",
            f"create it and give it to the user cron runs as: mkdir -p {directory}",
        )
    return passed("state directory", f"{directory} is writable")


def sms_items(config: Config, send_test_sms: bool, now: datetime | None = None) -> Iterator[Item]:
    """The path to a phone: numbers, credentials and account, sender; test texts on request."""
    if not config.sms_configured:
        yield warned(
            "twilio",
            "SMS not configured: nobody will be texted",
            "fill in TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM and ALERT_TO in the env file",
        )
        return
    import dataclasses

    from check_status.concurrency import run_concurrently
    from check_status.delivery import twilio_settings
    from check_status.notify.twilio_sms import account_state, check_sender

    settings = twilio_settings(config)
    checking = dataclasses.replace(settings, timeout=min(settings.timeout, TWILIO_REQUEST_SECONDS))
    sender = config.twilio_messaging_service_sid or config.twilio_from
    yield passed(
        "phone numbers",
        f"ALERT_TO {', '.join(config.alert_to)} and sender {sender} are well-formed",
    )
    if now is not None:  # local: shown whether Twilio answers or not
        yield from oncall_items(config, now)
    answers = run_concurrently(
        {
            "account": lambda: _outcome(lambda: account_state(checking)),
            "sender": lambda: _outcome(
                lambda: check_sender(checking, calls=config.call_on != "NEVER")
            ),
        },
        TWILIO_CHECK_SECONDS,
    )
    account = _twilio_item("twilio", answers["account"], settings, account=True)
    yield account
    credentials_failed = account.result == "FAIL" and not account.detail.startswith(
        "credentials valid"
    )
    if credentials_failed:
        return  # the sender's read failed the same way: one line says it
    yield _twilio_item("sender", answers["sender"], settings)
    if not send_test_sms:
        return
    yield from test_sms_items(config, settings)


def oncall_items(config: Config, now: datetime) -> Iterator[Item]:
    """Who is first in line right now, and whether the ACK and the call can work."""
    from check_status.alerting.oncall import first_in_line, format_hours, is_awake, local_time

    people = []
    for operator in config.operators:
        if operator.zone is None:
            people.append(f"{operator.name} (no time zone: always first in line)")
            continue
        awake = "awake" if is_awake(operator, now, config.waking_hours) else "asleep"
        hours = format_hours(operator.hours(config.waking_hours))
        people.append(f"{operator.name} {local_time(operator, now)} {awake} ({hours})")
    first = first_in_line(config.operators, now, config.waking_hours)
    names = ", ".join(o.name for o in config.operators if o.number in first)
    calls = "never" if config.call_on == "NEVER" else f"a call at {config.call_on} and above"
    yield passed(
        "on call",
        f"{'; '.join(people)}; a problem now goes to {names} first, then after"
        f" {config.escalate_after_minutes} min without an ACK to everyone, then {calls}",
    )
    if config.twilio_from is None:
        if config.call_on != "NEVER":
            yield warned(
                "calls",
                "a messaging service cannot place calls: an unanswered problem is only texted",
                "set TWILIO_FROM to a voice-capable number instead, or CALL_ON=never",
            )
        if not config.twilio_webhook_url:
            yield warned(
                "ACK by reply",
                "replies to a messaging service reach check-status only through serve's webhook,"
                " which is off",
                "set TWILIO_WEBHOOK_URL and the service's inbound webhook to it,"
                " or ACK with check-status ack CHECK --by NAME",
            )


def test_sms_items(config: Config, settings: Any) -> Iterator[Item]:
    """A clearly labelled test text to every ALERT_TO, side by side, within TEST_SMS_SECONDS."""
    from check_status.concurrency import run_concurrently
    from check_status.notify.twilio_sms import make_client, send_sms

    body = TEST_SMS.format(node=config.node_name)

    def send(recipient: str) -> Any:
        return _outcome(lambda: send_sms(make_client(settings), settings, recipient, body))

    answers = run_concurrently(
        {recipient: (lambda r=recipient: send(r)) for recipient in config.alert_to},
        TEST_SMS_SECONDS,
    )
    for recipient, answer in answers.items():
        name = f"test SMS to {recipient}"
        if isinstance(answer, ProbeFailure):
            yield failed(
                name,
                f"timeout: no answer within {TEST_SMS_SECONDS:g}s (the text may still arrive)",
                _transient_fix(),
            )
        elif isinstance(answer, _Failure):
            yield failed(name, answer.error.reason, _fix(answer.error, settings, recipient))
        elif answer.value is None:
            yield passed(name, "accepted by Twilio (its answer had no message id)")
        else:
            yield passed(name, f"accepted by Twilio ({answer.value})")


class _Failure:
    def __init__(self, error: Any) -> None:
        self.error = error


class _Value:
    def __init__(self, value: Any) -> None:
        self.value = value


def _outcome(call: Any) -> _Failure | _Value:
    """A NotifyError is an answer, not a crash: kept apart from what run_concurrently
    makes of an unexpected exception (a ProbeFailure naming it)."""
    from check_status.notify import NotifyError

    try:
        return _Value(call())
    except NotifyError as error:
        return _Failure(error)


def _fix(error: Any, settings: Any, recipient: str | None = None) -> str:
    from check_status.notify.twilio_sms import fix_for

    return fix_for(error, settings, recipient)


def _transient_fix() -> str:
    from check_status.notify.twilio_sms import TRANSIENT_FIX

    return TRANSIENT_FIX


def _twilio_item(name: str, answer: Any, settings: Any, *, account: bool = False) -> Item:
    from check_status.notify.twilio_sms import ACCOUNT_FIX

    if isinstance(answer, ProbeFailure):
        if answer.reason.startswith("no answer within"):
            detail = f"timeout: Twilio gave no complete answer within {TWILIO_CHECK_SECONDS:g}s"
            return failed(name, detail, _transient_fix())
        return failed(name, f"self-test could not check it ({answer.reason})", "report this bug")
    if isinstance(answer, _Failure):
        return failed(name, answer.error.reason, _fix(answer.error, settings))
    if not account:
        return passed(name, answer.value)
    state = answer.value
    if state == "active":
        return passed(name, "credentials valid (account active), checked without sending")
    return failed(
        name,
        f"credentials valid, but the account is {state}: Twilio sends no SMS from it",
        ACCOUNT_FIX,
    )


def heartbeat_item(config: Config) -> Item | None:
    """healthchecks.io: its `<url>/log` proves the check exists without pinging it.
    Another service: only that it answers (a GET or HEAD of a ping URL is a ping)."""
    if not config.heartbeat_url:
        return None
    from check_status.notify.heartbeat import LOG_BODY, is_healthchecks_url, log_event
    from check_status.probes.http import exchange

    url = config.heartbeat_url
    where = host_label(url)
    if is_healthchecks_url(url):
        proof = log_event(url, LOG_BODY.decode())
        return Item("heartbeat", proof.result, proof.detail, proof.fix)
    # The service's root, never the ping URL: a self-test must not reset the
    # dead-man's timer of a checker that may be dead.
    parts = urlsplit(url)
    reply = exchange("HEAD", urlunsplit((parts.scheme, parts.netloc, "/", "", "")), 5)
    if isinstance(reply, ProbeFailure):
        return failed("heartbeat", f"{where}: {reply.reason}", "check HEARTBEAT_URL")
    if reply.status >= 500:
        return failed("heartbeat", f"{where}: HTTP {reply.status}", "check HEARTBEAT_URL")
    return warned(
        "heartbeat",
        f"{where} reachable, but the check cannot be verified without a ping",
        "make sure the check exists in the service's dashboard; the next run's ping proves it",
    )


def bounded_heartbeat_items(config: Config) -> list[Item]:
    """heartbeat_item within HEARTBEAT_CHECK_SECONDS, whatever the service does."""
    if not config.heartbeat_url:
        return []
    from check_status.concurrency import run_concurrently

    answer = run_concurrently(
        {"heartbeat": lambda: heartbeat_item(config)}, HEARTBEAT_CHECK_SECONDS
    )
    item = answer["heartbeat"]
    if isinstance(item, ProbeFailure):
        where = host_label(config.heartbeat_url)
        if not item.reason.startswith("no answer within"):  # a bug, kept to this item
            return [failed("heartbeat", f"{where}: {item.reason}", "report this bug")]
        return [
            failed(
                "heartbeat",
                f"{where}: timeout: {item.reason}",
                "check HEARTBEAT_URL and the network",
            )
        ]
    return [item] if item is not None else []


def self_test(
    config: Config,
    now: datetime,
    *,
    send_test_sms: bool,
    expected_executable: Path,
    cron_dir: Path = CRON_DIR,
) -> list[Item]:
    """Every item, in a fixed order; the groups run side by side (see the module's bound)."""
    from check_status.concurrency import run_concurrently

    env = config.env_file or "defaults and the environment"
    groups: dict[str, Any] = {
        "nodeos": lambda: list(node_items(config)),
        "state directory": lambda: [state_dir_item(config)],
        "twilio": lambda: list(sms_items(config, send_test_sms, now)),
        "installation": lambda: list(
            installation_items(config, expected_executable, now, cron_dir)
        ),
        "freshness": lambda: [freshness_item(config, expected_executable, now)],
        "heartbeat": lambda: bounded_heartbeat_items(config),
    }
    answers = run_concurrently(groups, NETWORK_DEADLINE_SECONDS)
    items = [passed("config", f"valid ({env})")]
    for group, answer in answers.items():
        if isinstance(answer, ProbeFailure):
            if answer.reason.startswith("no answer within"):
                items.append(
                    failed(
                        group,
                        f"timeout: {answer.reason}",
                        "something this host depends on hangs: run self-test again, "
                        "then check the network and the disks",
                    )
                )
            else:  # a bug stays in its own group: every other item is still shown
                items.append(failed(group, answer.reason, "report this bug"))
        else:
            items += answer
    return items
