"""SHELL: read a peer node's `check-status serve` /status document."""

from __future__ import annotations

from typing import Any

from check_status.model import ProbeFailure
from check_status.probes.http import get_json


def fetch_peer_status(base_url: str, timeout: float) -> Any:
    """Another node's `check-status serve` /status document, or a ProbeFailure."""
    reply = get_json(base_url + "/status", timeout)
    if isinstance(reply, ProbeFailure):
        return reply
    if not isinstance(reply.body, dict):
        return ProbeFailure("its /status is not a JSON object")
    return reply.body
