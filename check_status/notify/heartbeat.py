"""SHELL: ping a dead-man's switch (healthchecks.io, Cronitor) after every run.

It is the only thing that catches "cron never ran it": if the pings stop, the
service alerts. A CRITICAL run pings `<url>/fail`, as healthchecks.io expects.
A failed ping is reported but never fatal; a refused one (PingRefused, with
the HTTP status) is told apart from a timeout or a 5xx.

`log_event` proves a healthchecks.io check exists without pinging it: its
`<ping url>/log` records an event and changes neither the state nor the timer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from check_status.model import ProbeFailure, Status
from check_status.notify import HEARTBEAT_TIMEOUT_SECONDS, NotifyError
from check_status.probes.http import exchange, host_label

# healthchecks answers "OK"; anything past this is not worth reading.
MAX_ANSWER_BYTES = 4096


def heartbeat_target(url: str, status: Status) -> str:
    """`<url>/fail` for a CRITICAL run; a query string (`?rid=...`) stays at the end."""
    if status is not Status.CRITICAL:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))


def ping(
    url: str, status: Status, message: str, timeout: float = HEARTBEAT_TIMEOUT_SECONDS
) -> None:
    """POST the one-line result to the ping URL. Raises NotifyError.

    Error messages name only the host: the ping URL's path is a secret token.
    The whole ping, DNS lookup included, ends within `timeout` (see
    probes.http.exchange), so a stuck service cannot push the run past its
    bound. Only the status matters: at most MAX_ANSWER_BYTES of the answer are
    read, and nothing is decompressed.
    """
    target = heartbeat_target(url, status)
    body = message.encode()[:10_000]
    reply = exchange(
        "POST", target, timeout, body=body, max_bytes=MAX_ANSWER_BYTES, cut_at_max=True
    )
    if isinstance(reply, ProbeFailure):
        raise NotifyError(f"heartbeat to {host_label(url)} failed: {reply.reason}", permanent=False)
    if not 200 <= reply.status < 300:  # a 1xx before nothing, or a 3xx, is no ping
        raise PingRefused(
            f"heartbeat to {host_label(url)} failed: HTTP {reply.status}", reply.status
        )


class PingRefused(NotifyError):
    """The service answered the ping, but not with a 2xx. `status` is its HTTP status:
    a 4xx (404: the check was deleted or the URL is wrong) will not mend by itself,
    unlike a timeout or a 5xx."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason, permanent=False)
        self.status = status


# --- proving the check exists, without pinging it --------------------------------------

# healthchecks.io's ping URLs: https://hc-ping.com/<uuid> and /<ping key>/<slug>, and,
# on any host (it is self-hosted too, under any prefix), /ping/<uuid> and
# /ping/<ping key>/<slug>, or a bare /<uuid>. Its `<ping url>/log` records an event in
# the check's log and changes neither its state nor its timer; it answers "OK", or
# 404 "not found" when there is no such check.
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_SLUG = r"[-A-Za-z0-9_]+/[-A-Za-z0-9_]+"
_HEALTHCHECKS_PATH = re.compile(rf"(?:/ping/(?:{_UUID}|{_SLUG})|^/{_UUID})/?\Z")
_HC_PING_PATH = re.compile(rf"^/(?:{_UUID}|{_SLUG})/?\Z")
HC_PING_HOSTS = frozenset({"hc-ping.com"})
LOG_BODY = b"check-status self-test"
COPY_URL_FIX = "copy the ping URL from the check's page into HEARTBEAT_URL"


@dataclass(frozen=True)
class CheckProof:
    """What the service said about the check: PASS, WARN or FAIL, and a fix."""

    result: str
    detail: str
    fix: str = ""


def is_healthchecks_url(url: str) -> bool:
    """A healthchecks.io-style ping URL (whatever the host): it has a /log endpoint."""
    parts = urlsplit(url)
    if (parts.hostname or "").lower() in HC_PING_HOSTS and _HC_PING_PATH.search(parts.path):
        return True
    return _HEALTHCHECKS_PATH.search(parts.path) is not None


def log_url(url: str) -> str:
    """`<url>/log`; a query string (`?rid=...`) stays at the end."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/log"))


def log_event(url: str, message: str, timeout: float = HEARTBEAT_TIMEOUT_SECONDS) -> CheckProof:
    """POST `message` to `<url>/log` of a healthchecks.io check and say what that proves.

    A log event neither counts as a ping nor resets the timer: a self-test may send
    it even when the checker is dead. Only the host is ever named (the path is a
    secret). The whole exchange ends within `timeout`.
    """
    where = host_label(url)
    reply = exchange(
        "POST",
        log_url(url),
        timeout,
        body=message.encode()[:10_000],
        max_bytes=MAX_ANSWER_BYTES,
        cut_at_max=True,
        headers={"Content-Type": "text/plain"},
    )
    if isinstance(reply, ProbeFailure):
        return CheckProof("FAIL", f"{where}: {reply.reason}", "check HEARTBEAT_URL and the network")
    status = reply.status
    if 200 <= status < 300:
        if reply.raw[:2] == b"OK":
            return CheckProof("PASS", f"check exists ({where})")
        return CheckProof(
            "WARN",
            f"{where} answered HTTP {status}, but not as healthchecks.io does ('OK')",
            "check that HEARTBEAT_URL is the check's ping URL",
        )
    if status == 404:
        return CheckProof("FAIL", "the check does not exist (404)", COPY_URL_FIX)
    if status == 429:
        return CheckProof(
            "WARN",
            f"{where}: rate limited (429), the check was not verified",
            "run self-test again in a minute",
        )
    if status >= 500:
        return CheckProof(
            "FAIL",
            f"{where}: HTTP {status}",
            "the heartbeat service is failing: check its status page (or the server, if self-hosted)",
        )
    return CheckProof("FAIL", f"{where}: HTTP {status} to the check's log", COPY_URL_FIX)
