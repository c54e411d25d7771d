"""SHELL: one HTTP exchange, bounded in time and size, with failures named for an operator.

Everything that can go wrong between us and nodeos ends up as a `ProbeFailure`
whose reason is one short line: "connection refused", "timeout after 3s",
"HTTP 503 NODEOS_UNREACHABLE", "not JSON (HTML page: 502 Bad Gateway)".

Probes use the standard library's http.client, not requests: cron starts this
process every minute, and importing requests costs more than the whole rest
of a healthy run. requests stays for the twilio SDK, which is built on it and
is imported only when a text goes out. http.client also ignores HTTP_PROXY,
which is right for a monitor probing loopback and its own backends.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import time
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import unquote, urlsplit

from check_status.model import ProbeFailure

# A get_info body is about 1.5 KB. Anything near this is not nodeos talking.
MAX_BODY_BYTES = 1024 * 1024
USER_AGENT = "check-status"


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: Any  # parsed JSON
    elapsed_ms: float


@dataclass(frozen=True)
class RawReply:
    status: int
    content_type: str
    raw: bytes
    elapsed_ms: float


def host_label(url: str) -> str:
    """`host[:port]` of a URL, never its user:password part."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


@cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def exchange(
    method: str,
    url: str,
    timeout: float,
    body: bytes | None = None,
    max_bytes: int = MAX_BODY_BYTES,
) -> RawReply | ProbeFailure:
    """One request. The whole exchange, body included, must finish within
    `timeout`: a server that trickles one byte a second is a timeout too."""
    parts = urlsplit(url)
    started = time.monotonic()
    deadline = started + timeout
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout, context=_tls_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json", "Connection": "close"}
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        raw = _read_bounded(response, deadline, timeout, max_bytes) if method != "HEAD" else b""
        if isinstance(raw, ProbeFailure):
            return raw
        content_type = response.getheader("Content-Type") or ""
        return RawReply(response.status, content_type, raw, (time.monotonic() - started) * 1000)
    except (OSError, http.client.HTTPException, ValueError) as error:
        return ProbeFailure(describe_connection_error(error, timeout))
    finally:
        connection.close()


def get_json(url: str, timeout: float) -> HttpReply | ProbeFailure:
    """GET `url` and parse its JSON body, answering 200 or not.

    The caller decides what a non-200 means; this only names transport and
    format failures.
    """
    reply = exchange("GET", url, timeout)
    if isinstance(reply, ProbeFailure):
        return reply
    status, raw = reply.status, reply.raw
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        return ProbeFailure(
            _http_prefix(status) + describe_non_json(raw, reply.content_type), status
        )
    if status != 200:
        return ProbeFailure(f"HTTP {status} {describe_error_body(body)}".rstrip(), status, body)
    return HttpReply(status, body, reply.elapsed_ms)


def _http_prefix(status: int) -> str:
    return "" if status == 200 else f"HTTP {status} "


def _read_bounded(
    response: http.client.HTTPResponse, deadline: float, timeout: float, max_bytes: int
) -> bytes | ProbeFailure:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            return ProbeFailure(f"timeout after {timeout:g}s (body still arriving)")
        # read1 returns whatever one socket read gave, so a trickling server
        # cannot hold us past the deadline by sending a byte at a time.
        chunk = response.read1(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            return ProbeFailure(f"response larger than {max_bytes // 1024} KiB: not a nodeos reply")
        chunks.append(chunk)


def describe_connection_error(error: BaseException, timeout: float) -> str:
    """Name a transport failure the way an operator would say it."""
    if isinstance(error, TimeoutError | socket.timeout):
        return f"timeout after {timeout:g}s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return "DNS lookup failed"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS error: {error.verify_message or 'certificate not trusted'}"
    if isinstance(error, ssl.SSLError):
        return f"TLS error: {error.reason or 'handshake failed'}"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, http.client.RemoteDisconnected):
        return "connection closed without an answer"
    if isinstance(error, http.client.HTTPException):
        return f"not an HTTP answer ({type(error).__name__})"
    if isinstance(error, OSError) and error.strerror:
        return f"connection failed: {error.strerror}"
    return f"connection failed ({type(error).__name__})"


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
    """The same words for a failure inside requests (the twilio SDK's transport)."""
    import requests

    if isinstance(error, requests.exceptions.Timeout):
        return f"timeout after {timeout:g}s"
    causes = list(_causes(error))
    for cause in reversed(causes):
        if isinstance(cause, OSError | http.client.HTTPException) and not isinstance(
            cause, requests.exceptions.RequestException
        ):
            return describe_connection_error(cause, timeout)
    if any("NameResolutionError" in type(c).__name__ for c in causes):
        return "DNS lookup failed"
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
