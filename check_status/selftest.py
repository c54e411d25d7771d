"""`check-status self-test`: after every deploy, prove the whole alerting path works.

One item per line, PASS, WARN or FAIL, each failure with a fix. The
installation items (cron file, entry, daemon, env file, misnamed siblings) are
the same code `install.sh --check` runs (see installation.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from check_status.config import Config
from check_status.installation import (
    Item,
    cron_entry_exists,
    failed,
    freshness,
    passed,
    verify_installation,
    warned,
)
from check_status.model import ProbeFailure, recorded_at
from check_status.probes.http import host_label

TEST_SMS = "[{node}] TEST from check-status self-test: SMS alerts reach you. No action needed."


def this_installation_executable() -> Path:
    """The console script of the environment this code runs from."""
    import sys

    return Path(sys.prefix) / "bin" / "check-status"


def installation_items(config: Config, expected_executable: Path, now: datetime) -> Iterator[Item]:
    env_file = Path(config.env_file) if config.env_file else None
    yield from verify_installation(Path(config.cron_file), env_file, expected_executable)


def freshness_item(config: Config, expected_executable: Path, now: datetime) -> Item:
    from check_status.state import StateStore

    state, _problem = StateStore(config.state_file, config.state_fallback_dir).read_only()
    last_scheduled_run = recorded_at(state.get("last_scheduled_run"))
    last_run = recorded_at(state.get("last_run"))
    last_hand_run = last_run if last_run != last_scheduled_run else None
    installed_at = None
    for marker in (Path(config.cron_file), expected_executable):
        try:
            installed_at = datetime.fromtimestamp(marker.stat().st_mtime, tz=now.tzinfo)
            break
        except OSError:
            continue
    return freshness(
        last_scheduled_run,
        installed_at,
        now,
        cron_entry_exists(Path(config.cron_file)),
        last_hand_run,
    )


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


def sms_items(config: Config, send_test_sms: bool) -> Iterator[Item]:
    if not config.sms_configured:
        yield warned(
            "twilio",
            "SMS not configured: nobody will be texted",
            "fill in TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM and ALERT_TO in the env file",
        )
        return
    from check_status.delivery import twilio_settings
    from check_status.notify import NotifyError
    from check_status.notify.twilio_sms import check_credentials, make_client, send_sms

    settings = twilio_settings(config)
    sender = config.twilio_from or config.twilio_messaging_service_sid
    yield passed(
        "phone numbers",
        f"ALERT_TO {', '.join(config.alert_to)} and sender {sender} are well-formed",
    )
    try:
        account_status = check_credentials(settings)
    except NotifyError as error:
        yield failed(
            "twilio",
            error.reason,
            "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in the Twilio console",
        )
        return
    yield passed("twilio", f"credentials valid (account {account_status}), checked without sending")
    if not send_test_sms:
        return
    client = make_client(settings)
    for recipient in config.alert_to:
        try:
            sid = send_sms(client, settings, recipient, TEST_SMS.format(node=config.node_name))
        except NotifyError as error:
            yield failed(f"test SMS to {recipient}", error.reason, "fix this number in ALERT_TO")
        else:
            yield passed(f"test SMS to {recipient}", f"accepted by Twilio ({sid})")


def heartbeat_item(config: Config) -> Item | None:
    if not config.heartbeat_url:
        return None
    from check_status.probes.http import exchange

    where = host_label(config.heartbeat_url)
    # The service's root, never the ping URL: healthchecks.io counts HEAD and GET
    # on the ping URL as a ping, and a self-test must not reset the dead-man's timer
    # of a checker that may be dead. Any HTTP answer proves DNS, TLS and the route.
    parts = urlsplit(config.heartbeat_url)
    reply = exchange("HEAD", urlunsplit((parts.scheme, parts.netloc, "/", "", "")), 5)
    if isinstance(reply, ProbeFailure):
        return failed("heartbeat", f"{where}: {reply.reason}", "check HEARTBEAT_URL")
    if reply.status >= 500:
        return failed("heartbeat", f"{where}: HTTP {reply.status}", "check HEARTBEAT_URL")
    return passed("heartbeat", f"{where} reachable (checked without pinging)")


def self_test(
    config: Config, now: datetime, *, send_test_sms: bool, expected_executable: Path
) -> list[Item]:
    env = config.env_file or "defaults and the environment"
    items = [passed("config", f"valid ({env})")]
    items += node_items(config)
    items.append(state_dir_item(config))
    items += sms_items(config, send_test_sms)
    items += installation_items(config, expected_executable, now)
    items.append(freshness_item(config, expected_executable, now))
    heartbeat = heartbeat_item(config)
    if heartbeat is not None:
        items.append(heartbeat)
    return items
