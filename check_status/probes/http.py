"""SHELL: one HTTP GET, bounded in time and size, with failures named for an operator.

Everything that can go wrong between us and nodeos ends up as a `ProbeFailure`
whose reason is one short line: "connection refused", "timeout after 3s",
"HTTP 503 NODEOS_UNREACHABLE", "not JSON (HTML page: 502 Bad Gateway)".
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from check_status.model import ProbeFailure

# A get_info body is about 1.5 KB. Anything near this is not nodeos talking.
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: Any  # parsed JSON
    elapsed_ms: float


def host_label(url: str) -> str:
    """`host[:port]` of a URL, never its user:password part."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


def get_json(url: str, timeout: float) -> HttpReply | ProbeFailure:
    """GET `url` and parse its JSON body, answering 200 or not.

    The caller decides what a non-200 means; this only names transport and
    format failures. The whole exchange, body included, must finish within
    `timeout`: a server that trickles one byte a second is a timeout too.
    """
    started = time.monotonic()
    deadline = started + timeout
    try:
        with requests.get(
            url, timeout=(timeout, timeout), stream=True, allow_redirects=False
        ) as response:
            raw = _read_bounded(response, deadline, timeout)
            if isinstance(raw, ProbeFailure):
                return raw
            status = response.status_code
            content_type = response.headers.get("Content-Type", "")
    except requests.exceptions.RequestException as error:
        return ProbeFailure(describe_request_error(error, timeout))
    elapsed_ms = (time.monotonic() - started) * 1000
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        return ProbeFailure(_http_prefix(status) + describe_non_json(raw, content_type), status)
    if status != 200:
        return ProbeFailure(f"HTTP {status} {describe_error_body(body)}".rstrip(), status, body)
    return HttpReply(status, body, elapsed_ms)


def _http_prefix(status: int) -> str:
    return "" if status == 200 else f"HTTP {status} "


def _read_bounded(
    response: requests.Response, deadline: float, timeout: float
) -> bytes | ProbeFailure:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            return ProbeFailure(f"timeout after {timeout:g}s (body still arriving)")
        # read1 returns whatever one socket read gave, so a trickling server
        # cannot hold us past the deadline by sending a byte at a time.
        chunk = response.raw.read1(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return ProbeFailure(
                f"response larger than {MAX_BODY_BYTES // 1024} KiB: not a nodeos reply"
            )
        chunks.append(chunk)


def describe_error_body(body: Any) -> str:
    """The useful words of a nodeos error envelope or a proxy's JSON error."""
    if not isinstance(body, dict):
        return "(empty body)" if body is None else ""
    error = body.get("error")
    if isinstance(error, dict):
        name = str(error.get("name") or "")
        what = str(error.get("what") or "")
        details = error.get("details")
        detail = ""
        if isinstance(details, list) and details and isinstance(details[0], dict):
            detail = str(details[0].get("message") or "")
        # "exception: unspecified" says nothing; the detail ("Unknown Endpoint") does.
        words = [w for w in (name, what) if w and w not in ("exception", "unspecified")]
        if detail and detail not in what:
            words.append(detail)
        return _one_line(": ".join(words) or str(body.get("message") or ""))
    return _one_line(str(body.get("message") or ""))


def describe_non_json(raw: bytes, content_type: str) -> str:
    if not raw.strip():
        return "(empty body)"
    text = raw[:2048].decode("utf-8", "replace")
    title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    if title:
        return f"not JSON (HTML page: {_one_line(title.group(1))})"
    if "html" in content_type.lower() or text.lstrip().startswith("<"):
        return "not JSON (HTML page)"
    return f"not JSON: {_one_line(text)[:40]!r}"


def describe_request_error(error: BaseException, timeout: float) -> str:
    """Name a transport failure the way an operator would say it."""
    if isinstance(error, requests.exceptions.Timeout):
        return f"timeout after {timeout:g}s"
    causes = list(_causes(error))
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused"
    if any(isinstance(c, socket.gaierror) for c in causes) or any(
        "NameResolutionError" in type(c).__name__ for c in causes
    ):
        return "DNS lookup failed"
    if isinstance(error, requests.exceptions.SSLError) or any(
        isinstance(c, ssl.SSLError) for c in causes
    ):
        reason = next((c for c in causes if isinstance(c, ssl.SSLError)), None)
        detail = getattr(reason, "reason", None) or "handshake failed"
        return f"TLS error: {detail}"
    if any(isinstance(c, (TimeoutError, socket.timeout)) for c in causes):
        return f"timeout after {timeout:g}s"
    if any(isinstance(c, ConnectionResetError) for c in causes):
        return "connection reset"
    return f"connection failed ({type(causes[-1]).__name__})"


def _causes(error: BaseException):
    """The error and everything it wraps: urllib3 hides the real cause deep inside."""
    seen: set[int] = set()
    stack: list[Any] = [error]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])


def _one_line(text: str) -> str:
    return " ".join(text.split())[:120]
