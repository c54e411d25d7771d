"""SHELL: ping a dead-man's switch (healthchecks.io, Cronitor) after every run.

It is the only thing that catches "cron never ran it": if the pings stop, the
service alerts. A CRITICAL run pings `<url>/fail`, as healthchecks.io expects.
A failed ping is reported but never fatal.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from check_status.model import ProbeFailure, Status
from check_status.notify import NotifyError
from check_status.probes.http import exchange, host_label

HEARTBEAT_TIMEOUT_SECONDS = 5
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
        raise NotifyError(
            f"heartbeat to {host_label(url)} failed: HTTP {reply.status}", permanent=False
        )
