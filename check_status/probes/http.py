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
import http
import http.client
import io
import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import unquote, urlsplit

from check_status.model import ProbeFailure
from check_status.remote_text import clean, clean_json, identifying_word

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


class DnsTimeout(TimeoutError):
    """The name lookup did not answer in time (no socket timeout covers getaddrinfo)."""


class BadHostName(OSError):
    """A host name no resolver could be asked about (empty labels, a label over 63 bytes)."""


def _resolve(host: str, port: int, deadline: float) -> list[tuple[Any, ...]]:
    """getaddrinfo, given up at the deadline.

    The lookup runs in a daemon thread: a resolver that never answers leaves
    that thread blocked (asleep, not spinning), and the probe returns on time.
    """
    answer: dict[str, Any] = {}
    done = threading.Event()

    def lookup() -> None:
        try:
            answer["addresses"] = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except UnicodeError:  # the IDNA codec refuses it: "node..example.com", a 64-byte label
            answer["error"] = BadHostName()
        except Exception as error:  # anything else is the probe's failure, not this thread's
            answer["error"] = error if isinstance(error, OSError) else OSError(str(error))
        finally:
            done.set()

    threading.Thread(target=lookup, name=f"dns {host}", daemon=True).start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
        raise DnsTimeout
    if "error" in answer:
        raise answer["error"]
    return answer["addresses"]


class _DeadlineSocket:
    """A socket whose every send and receive must end by one deadline.

    http.client gives each socket operation the whole timeout again, so a
    server that drips one byte a second, or floods `100 Continue` interim
    answers (which http.client skips in a loop of its own), could hold a probe
    forever and keep its thread busy after the run gave up on it. Here each
    operation gets only the time left, and none starts after the deadline.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._readers = 0
        self._closed = False

    def _arm(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline reached")
        self._sock.settimeout(left)

    def sendall(self, data: bytes) -> None:
        self._arm()
        self._sock.sendall(data)

    def recv_into(self, buffer: Any) -> int:
        self._arm()
        return self._sock.recv_into(buffer)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        self._readers += 1
        return io.BufferedReader(_DeadlineReader(self))

    def close(self) -> None:
        # As socket.makefile does: http.client closes the connection while the
        # response is still being read, so the socket stays open until its
        # reader is closed too.
        self._closed = True
        if self._readers == 0:
            self._sock.close()

    def reader_closed(self) -> None:
        self._readers -= 1
        if self._closed and self._readers == 0:
            self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._sock.reader_closed()
        super().close()


class _BoundedConnection(http.client.HTTPConnection):
    """An HTTPConnection whose DNS lookup, connect and every read share one deadline."""

    deadline: float = 0.0

    def connect(self) -> None:
        last_error: OSError = OSError("no address")
        for family, kind, proto, _name, address in _resolve(self.host, self.port, self.deadline):
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(max(0.001, self.deadline - time.monotonic()))
                sock.connect(address)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sock = self._secure(sock)
                return
            except OSError as error:
                sock.close()
                last_error = error
                if isinstance(error, TimeoutError | ssl.SSLError):
                    break  # the time is spent, or the server is not the one we want
        raise last_error

    def _secure(self, sock: socket.socket) -> Any:
        return _DeadlineSocket(sock, self.deadline)


class _BoundedTlsConnection(_BoundedConnection):
    default_port = http.client.HTTPS_PORT

    def _secure(self, sock: socket.socket) -> Any:
        # What is left of the deadline after connect; the handshake is bounded
        # as a whole by it (the ssl module counts one deadline per operation).
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline reached")
        sock.settimeout(left)
        secured = _tls_context().wrap_socket(sock, server_hostname=self.host)
        return _DeadlineSocket(secured, self.deadline)


def exchange(
    method: str,
    url: str,
    timeout: float,
    body: bytes | None = None,
    max_bytes: int = MAX_BODY_BYTES,
    *,
    headers: dict[str, str] | None = None,
    cut_at_max: bool = False,
) -> RawReply | ProbeFailure:
    """One request. The whole exchange (DNS lookup, connect, TLS, every interim
    answer, headers and body) must finish within `timeout`: a server that
    trickles one byte a second is a timeout too, and the thread doing it stops
    at the deadline instead of spinning on.

    A body over `max_bytes` is refused, or with `cut_at_max` cut there (for
    answers where only the status matters). Nothing is decompressed: http.client
    asks for `Accept-Encoding: identity` and inflates nothing, so a compression
    bomb stays its compressed size.
    """
    parts = urlsplit(url)
    started = time.monotonic()
    deadline = started + timeout
    kind = _BoundedTlsConnection if parts.scheme == "https" else _BoundedConnection
    try:
        connection = kind(parts.hostname or "", parts.port, timeout=timeout)
    except (http.client.InvalidURL, ValueError):
        return ProbeFailure("bad URL: the port is not a number")
    connection.deadline = deadline
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    sent = {"User-Agent": USER_AGENT, "Accept": "application/json", "Connection": "close"}
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        sent["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    sent.update(headers or {})
    answered = False
    try:
        connection.request(method, target, body=body, headers=sent)
        response = connection.getresponse()
        answered = True
        raw = _read_bounded(response, max_bytes, cut_at_max) if method != "HEAD" else b""
        if isinstance(raw, ProbeFailure):
            return raw
        content_type = clean(response.getheader("Content-Type") or "")
        return RawReply(response.status, content_type, raw, (time.monotonic() - started) * 1000)
    except DnsTimeout:
        return ProbeFailure(f"timeout after {timeout:g}s (DNS lookup)")
    except TimeoutError:
        still = " (body still arriving)" if answered else ""
        return ProbeFailure(f"timeout after {timeout:g}s{still}")
    except (OSError, http.client.HTTPException, ValueError) as error:
        return ProbeFailure(describe_connection_error(error, timeout))
    finally:
        connection.close()


def get_json(url: str, timeout: float) -> HttpReply | ProbeFailure:
    """GET `url` and parse its JSON body, answering 200 or not.

    The caller decides what a non-200 means; this only names transport and
    format failures. Every string in the body is cleaned here, once, before
    any check sees it (see check_status.remote_text).
    """
    reply = exchange("GET", url, timeout)
    if isinstance(reply, ProbeFailure):
        return reply
    status, raw = reply.status, reply.raw
    try:
        body = clean_json(json.loads(raw)) if raw.strip() else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        words, detail = describe_non_json(raw, reply.content_type)
        return ProbeFailure(_http_prefix(status) + words, status, detail=detail)
    if status != 200:
        words, detail = describe_error_body(body, status)
        return ProbeFailure(f"HTTP {status} {words}".rstrip(), status, body, detail)
    return HttpReply(status, body, reply.elapsed_ms)


def _http_prefix(status: int) -> str:
    return "" if status == 200 else f"HTTP {status} "


def _read_bounded(
    response: http.client.HTTPResponse, max_bytes: int, cut_at_max: bool
) -> bytes | ProbeFailure:
    chunks: list[bytes] = []
    size = 0
    while True:
        # read1 returns what one socket read gave; the socket itself ends at
        # the deadline (a TimeoutError the caller names).
        chunk = response.read1(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            if cut_at_max:
                return b"".join(chunks)
            return ProbeFailure(f"response larger than {max_bytes // 1024} KiB: not a nodeos reply")
        chunks.append(chunk)


def describe_connection_error(error: BaseException, timeout: float) -> str:
    """Name a transport failure the way an operator would say it."""
    if isinstance(error, TimeoutError | socket.timeout):
        return f"timeout after {timeout:g}s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, BadHostName):
        return "bad host name"
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


def describe_error_body(body: Any, status: int | None = None) -> tuple[str, str]:
    """(words, detail) of a nodeos error envelope or a proxy's JSON error.

    `words` may be texted, so it holds only what identifies the failure: the
    error's name (`timeout_exception`, `NODEOS_UNREACHABLE`) when it is one
    identifier-shaped word, else the standard reason phrase of the status
    ("Not Found"). `detail` holds the body's free text ("Unknown Endpoint",
    "deadline ... exceeded"), for `-v` only: it is written by whoever answered.
    """
    if body is None:
        return "(empty body)", ""
    if not isinstance(body, dict):
        return _reason_phrase(status), ""
    error = body.get("error")
    texts: list[str] = []
    names: list[str] = []
    if isinstance(error, dict):
        # "exception: unspecified" says nothing; the detail ("Unknown Endpoint") does.
        for key in ("name", "what"):
            value = str(error.get(key) or "")
            if value and value not in ("exception", "unspecified"):
                texts.append(value)
                if key == "name" and identifying_word(value):
                    names.append(value)
        details = error.get("details")
        if isinstance(details, list) and details and isinstance(details[0], dict):
            detail = str(details[0].get("message") or "")
            if detail and not any(detail in text for text in texts):
                texts.append(detail)
    message = str(body.get("message") or "")
    if message and not texts:
        texts.append(message)
    if identifying_word(message) and not names:
        names.append(message)
    words = names[0] if names else _reason_phrase(status)
    detail = _one_line(": ".join(t for t in texts if t != words))
    return words, detail


def _reason_phrase(status: int | None) -> str:
    """Our own words for a status code: never the phrase the server sent."""
    try:
        return http.HTTPStatus(status).phrase if status is not None else ""
    except ValueError:
        return ""


def describe_non_json(raw: bytes, content_type: str) -> tuple[str, str]:
    """(words, detail) for a body that is not JSON. An HTML page's title is the
    detail: it is the server's text, not ours."""
    if not raw.strip():
        return "(empty body)", ""
    text = raw[:2048].decode("utf-8", "replace")
    title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    if title:
        return "not JSON (HTML page)", _one_line(title.group(1))
    if "html" in content_type.lower() or text.lstrip().startswith("<"):
        return "not JSON (HTML page)", ""
    return "not JSON", _one_line(text)[:60]


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
    return clean(" ".join(text.split()), 120)
