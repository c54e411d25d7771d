"""SHELL: ping a dead-man's switch (healthchecks.io, Cronitor) after every run.

It is the only thing that catches "cron never ran it": if the pings stop, the
service alerts. A CRITICAL run pings `<url>/fail`, as healthchecks.io expects.
A failed ping is reported but never fatal.
"""

from __future__ import annotations

import requests

from check_status.model import Status
from check_status.notify import NotifyError
from check_status.probes.http import describe_request_error, host_label

HEARTBEAT_TIMEOUT_SECONDS = 5


def heartbeat_target(url: str, status: Status) -> str:
    return f"{url}/fail" if status is Status.CRITICAL else url


def ping(
    url: str, status: Status, message: str, timeout: float = HEARTBEAT_TIMEOUT_SECONDS
) -> None:
    """POST the one-line result to the ping URL. Raises NotifyError.

    Error messages name only the host: the ping URL's path is a secret token.
    """
    target = heartbeat_target(url, status)
    try:
        response = requests.post(target, data=message.encode()[:10_000], timeout=timeout)
    except requests.exceptions.RequestException as error:
        reason = describe_request_error(error, timeout)
        raise NotifyError(
            f"heartbeat to {host_label(url)} failed: {reason}", permanent=False
        ) from None
    if response.status_code >= 300:
        raise NotifyError(
            f"heartbeat to {host_label(url)} failed: HTTP {response.status_code}", permanent=False
        )
