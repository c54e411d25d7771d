"""SHELL: `check-status serve`, a small HTTP server for load balancers, peers and Twilio.

    GET|HEAD /health      200 while this node can serve correct data right now, else 503
    GET      /status      JSON from the state file: last run, checks, incidents
    POST     /twilio/sms  Twilio's inbound-SMS webhook: a reply "ACK" acknowledges
                          the open incidents (the path is TWILIO_WEBHOOK_URL's; off,
                          404, unless TWILIO_WEBHOOK_URL and the Twilio token are set)

Why /health exists: HAProxy's bare `option httpchk` sends `OPTIONS /`, which
nodeos always answers with 200, and a plain get_info check passes on a node
whose head froze an hour ago. /health answers 200 only when nodeos answers,
its head is not CRITICAL (stale or stalled) and its chain id is right; so the
load balancer takes a broken node out by itself, and puts it back once it
has recovered.

A burst of health checks from several load balancers costs one get_info:
verdicts are reused for HEALTH_CACHE_SECONDS, and concurrent requests share
the one probe in flight (single flight).

Bounds, because this port faces whatever can reach it:

- Every answer but the webhook's leaves within HTTP_TIMEOUT_SECONDS + 1 s of
  its request (the webhook's within WEBHOOK_WAIT_SECONDS, as an ACK waits for
  the run lock; Twilio gives up after 15 s). The
  probe (itself bounded by the HTTP timeout) runs in a daemon thread of its
  own and the server only waits for it: should it hang anyway, as on a DNS
  lookup that never returns (serve looks the host up in that thread first),
  /health answers 503 `timeout after Ns (probe still running)` and no second
  probe starts while that one hangs. /status reads the state file the same
  way (it could be a FIFO, or on a hung disk).
- One thread serves every connection (asyncio's event loop, plain
  non-blocking sockets): a connection costs a file descriptor and about a
  kilobyte, not a thread, so thousands of idle or slow clients cannot starve
  the CPU or the health checks (slowloris).
- A client has HEAD_DEADLINE_SECONDS from its connection to send its request
  line and headers (HAProxy sends its check in one packet), and at most
  MAX_HEAD_BYTES of them; then it is dropped, or answered 400/431. A webhook
  POST must also send its body within that same deadline, at most
  MAX_BODY_BYTES of it, announced by a Content-Length (411 without one, 413
  above the cap; no chunked bodies): a connection then holds at most that
  much, never more. Only a POST to the webhook's path has its header values
  read, and only once the webhook is on.
- The webhook's signature (X-Twilio-Signature, the twilio library's
  RequestValidator with the auth token and TWILIO_WEBHOOK_URL) is checked on
  the event loop, a few microseconds; a request that fails it is answered
  403 and changes nothing. A signed ACK from an ALERT_TO number is recorded
  (acks.record_acks, which takes the run lock) in a daemon thread of its own,
  at most MAX_ACK_THREADS at a time (then 503): a hung state disk holds those
  threads, never the loop. twilio is imported on the first webhook request,
  in a thread too.
- At most `max_connections` are open (derived from RLIMIT_NOFILE, whose soft
  limit is raised to the hard one). At the cap, the oldest connection that
  has not finished its request head is dropped to make room for the new one,
  so the slowest clients go first and a balancer's check still gets in.
- Every answer says `Connection: close` and the connection closes after it:
  one request per connection, no keep-alive to hold a slot.

The HTTP parsing is done here, not by http.server: it is small (GET and HEAD
of two paths, whose headers are counted, never used; one POST path, whose
Content-Length, Content-Type and X-Twilio-Signature are read), and
http.server's thread-per-connection design is what the slowloris exhausted.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import re
import resource
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

from check_status.checks.chain_id import judge_chain_id
from check_status.checks.head_block import judge_head_block
from check_status.checks.nodeos import judge_nodeos
from check_status.config import Config
from check_status.model import CheckResult, Status, utc_now
from check_status.probes.nodeos import fetch_chain_info

DEFAULT_LISTEN = "127.0.0.1:8899"

# Time from accept to the end of the request head. HAProxy sends its check in
# one packet; 2 s leaves room for a slow network and none for a slowloris.
HEAD_DEADLINE_SECONDS = 2.0
# Request line and headers together. A check is about 100 bytes.
MAX_HEAD_BYTES = 8 * 1024
MAX_HEADER_LINES = 100
# Once answered: time to deliver the answer and read what the client still
# sends (closing with unread bytes would reset the connection and could
# destroy the answer before the client reads it), and how much to read.
CLOSE_DEADLINE_SECONDS = 2.0
MAX_DRAIN_BYTES = 256 * 1024
# The connection cap is min(MAX_CONNECTIONS, soft RLIMIT_NOFILE - FD_RESERVE).
# 4096, not 1024: a slowloris larger than the cap turns into a loop of drops
# and reconnects as fast as the attacker can (benchmarks/serve_slowloris.py,
# 2,000 connections: with a cap of 960, 7,600-15,000 drops/s and 0.4-0.8 core,
# /health still answered within 0.3 s; with 4096, 950/s and 0.07 core), while
# below the cap each slow client costs one accept and one close per
# HEAD_DEADLINE_SECONDS. A connection waiting for its head costs about 1.2 KiB
# here (measured), so 4096 of them add 5 MiB.
MAX_CONNECTIONS = 4096
FD_RESERVE = 64  # the listener, the event loop, the probe's socket, the state file, stdio
MIN_CONNECTIONS = 8
# The kernel caps it at net.core.somaxconn (4096 on current kernels). A deep
# queue keeps a check's SYN from being dropped (a 1 s retransmit) while the
# server is busy taking in a burst of connections.
LISTEN_BACKLOG = 4096
ACCEPTS_PER_WAKEUP = 128  # then let the other connections have their turn
SWEEP_GRANULARITY_SECONDS = 0.05  # deadlines are enforced this late at most
READ_CHUNK = 16 * 1024
# The Twilio webhook. An inbound SMS is posted as a form of about 1 KiB.
WEBHOOK_PATH = "/twilio/sms"  # the path of TWILIO_WEBHOOK_URL, as documented
MAX_BODY_BYTES = 16 * 1024
# An ACK waits up to ACK_LOCK_WAIT_SECONDS for the run lock (a run holds it for
# a few seconds), and the answer leaves by WEBHOOK_WAIT_SECONDS whatever
# happens: Twilio waits 15 s for a webhook's answer.
ACK_LOCK_WAIT_SECONDS = 10.0
WEBHOOK_WAIT_SECONDS = 12.0
MAX_ACK_THREADS = 4  # ACKs being recorded at once; only signed requests get here
SMS_REPLY_MAX_CHARS = 160  # one SMS segment (GSM-7)

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(rb"HTTP/1\.[01]")
_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"
_XML = "text/xml"
_FORM = "application/x-www-form-urlencoded"
_TWIML_START = '<?xml version="1.0" encoding="UTF-8"?>'

T = TypeVar("T")


@dataclass(frozen=True)
class HealthVerdict:
    healthy: bool
    text: str
    checked_at: float  # time.monotonic() of the probe


def judge_health(results: list[CheckResult]) -> tuple[bool, str]:
    """CORE: can this node serve correct data? Needs nodeos OK, head not CRITICAL, right chain."""
    by_name = {r.name: r for r in results}
    for name in ("nodeos", "head_block", "chain_id"):
        result = by_name.get(name)
        if result is None:
            continue
        broken = (
            result.status is not Status.OK if name == "nodeos" else result.status is Status.CRITICAL
        )
        if broken:
            return False, f"{result.status.name} {name}: {result.summary}"
    head = by_name["head_block"]
    return True, f"OK {head.summary}"


def answer_wait_seconds(config: Config) -> float:
    """How long a request waits for a probe or a state read: its answer must
    leave within the HTTP timeout + 1 s, and writing it takes a little."""
    return config.http_timeout_seconds + 0.5


class _Flight(Generic[T]):
    """At most one call of `work` at a time, in a daemon thread of its own;
    everyone on the event loop who asks while it runs shares its result.

    A daemon thread, not an executor: a getaddrinfo that never returns blocks
    its thread for good, and an executor's threads are joined at exit, so a
    hung lookup would keep the process from stopping on SIGTERM. Since no
    second call starts while one hangs, a hang costs one thread, ever.
    """

    def __init__(self, name: str, work: Callable[[], T]) -> None:
        self._name = name
        self._work = work
        self._future: asyncio.Future[T] | None = None

    def join(self) -> asyncio.Future[T]:
        """The future of the call in flight, starting one if none is."""
        if self._future is None:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[T] = loop.create_future()
            # Raises when no thread can be started; then nothing is in flight.
            threading.Thread(
                target=self._run, args=(loop, future), name=self._name, daemon=True
            ).start()
            self._future = future
        return self._future

    def _run(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[T]) -> None:
        value = self._work()  # total: `work` turns its own failures into a value
        # The loop is closed when the server stopped while this call hung: nobody waits.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._finish, future, value)

    def _finish(self, future: asyncio.Future[T], value: T) -> None:
        if self._future is future:
            self._future = None
        if not future.done():
            future.set_result(value)


async def _wait(future: asyncio.Future[T], seconds: float) -> T | None:
    """The future's result, or None after `seconds`; the future goes on either way."""
    if not future.done():
        await asyncio.wait((future,), timeout=seconds)
    return future.result() if future.done() else None


class HealthProbe:
    """Single-flight, cached health verdicts. Keeps head-block memory between probes,
    so a head that stops moving is caught here too, not only a stale one."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._verdict: HealthVerdict | None = None
        self._memory: dict[str, Any] | None = None
        self.probes = 0  # how many times nodeos was asked: the single-flight tests read it
        self._flight: _Flight[HealthVerdict] = _Flight("check-status health probe", self._run)

    def cached(self) -> HealthVerdict | None:
        verdict = self._verdict
        if verdict is not None and (
            time.monotonic() - verdict.checked_at < self.config.health_cache_seconds
        ):
            return verdict
        return None

    async def current(self) -> HealthVerdict:
        """A fresh verdict, the one of the probe in flight, or a timeout 503.

        A request that waited for the probe in flight takes its verdict, however
        short the cache: otherwise, with HEALTH_CACHE_SECONDS=0, 50 waiting
        requests would each start a probe of their own."""
        verdict = self.cached()
        if verdict is not None:
            return verdict
        verdict = await _wait(self._flight.join(), answer_wait_seconds(self.config))
        if verdict is not None:
            return verdict
        timeout = self.config.http_timeout_seconds
        return HealthVerdict(
            False, f"timeout after {timeout:g}s (probe still running)\n", time.monotonic()
        )

    def _run(self) -> HealthVerdict:
        # In the probe thread; only one runs at a time, so _memory needs no lock.
        try:
            verdict = self._probe()
        except Exception as error:  # a bug must not leave waiters without an answer
            verdict = HealthVerdict(
                False, f"UNKNOWN health probe failed: {type(error).__name__}\n", time.monotonic()
            )
        self._verdict = verdict
        return verdict

    def _probe(self) -> HealthVerdict:
        self.probes += 1
        _resolve_first(self.config.nodeos_url)
        info = fetch_chain_info(self.config.nodeos_url, self.config.http_timeout_seconds)
        now = utc_now()
        head, self._memory = judge_head_block(info, self._memory, now, self.config)
        results = [judge_nodeos(info, self.config.nodeos_url), head]
        if self.config.expected_chain_id:
            results.append(judge_chain_id(info, self.config.expected_chain_id))
        healthy, text = judge_health(results)
        return HealthVerdict(healthy, f"{text}\n", time.monotonic())


def _resolve_first(url: str) -> None:
    """Look the nodeos host up here, in the probe thread, with no deadline.

    The probe bounds its own lookup by running it in a thread it gives up on
    at the timeout: right for a cron run that exits, but this process lives
    on, and against a resolver that never answers each probe would leave one
    more thread blocked for good. Waiting here instead, a hung lookup holds
    the one probe thread, no other starts, and /health says the probe is
    still running. When the lookup works, the probe's own is a second,
    usually answered from the resolver's cache; an IP address needs neither.
    """
    host = urlsplit(url).hostname
    if not host:
        return
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return
    # A failure is the probe's to name ("DNS lookup failed"), with its own lookup.
    with contextlib.suppress(OSError, UnicodeError, ValueError):
        socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)


@dataclass(frozen=True)
class _Answer:
    status: int
    content_type: str
    body: bytes


def _json_error(status: int, message: str) -> _Answer:
    # The shape of a nodeos/patroneos error: a peer's probe reads "message"
    # and names it (`HTTP 503 timeout after 3s ...`).
    body = json.dumps({"code": status, "message": message}).encode() + b"\n"
    return _Answer(status, _JSON, body)


_NOT_FOUND = _Answer(404, "text/plain", b"not found: try /health or /status\n")
_BAD_METHOD = _Answer(400, "text/plain", b"only GET and HEAD are served\n")
_WEBHOOK_OFF = _Answer(
    404, "text/plain", b"webhook off: set TWILIO_WEBHOOK_URL (and the Twilio token)\n"
)
# Never the signature nor the token: a prober learns only that it failed.
_BAD_SIGNATURE = _Answer(403, "text/plain", b"signature does not match TWILIO_WEBHOOK_URL\n")
_NO_REPLY = _Answer(200, _XML, (_TWIML_START + "<Response/>").encode())


def _text(status: int, message: str) -> _Answer:
    return _Answer(status, _TEXT, f"{message}\n".encode())


def _sms_reply(text: str) -> _Answer:
    """TwiML answering the sender with one SMS of `text`."""
    if len(text) > SMS_REPLY_MAX_CHARS:
        text = text[: SMS_REPLY_MAX_CHARS - 3] + "..."
    body = f"{_TWIML_START}<Response><Message>{escape(text)}</Message></Response>"
    return _Answer(200, _XML, body.encode())


def connection_cap() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit, and derive the cap from it:
    systemd starts services with a soft limit of 1024 and a hard one of 524288."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
                soft = hard
    except (ValueError, OSError):
        return 1024 - FD_RESERVE
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, soft - FD_RESERVE))


class _Connection:
    """One client socket and where it is: reading its head, waiting for its
    answer, or closing (answer being written, then what it still sends drained)."""

    __slots__ = (
        "body",
        "closed",
        "drained",
        "fd",
        "head",
        "length",
        "out",
        "reading",
        "request",
        "since",
        "sock",
        "writing",
    )

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.since = now  # accepted, or (once answered) started closing
        self.head = b""
        self.out = memoryview(b"")
        self.reading = False
        self.writing = False
        self.closed = False
        self.drained = 0
        # A webhook POST whose head is in and whose body is still arriving.
        self.request: _Request | None = None
        self.body: bytearray | None = None
        self.length = 0  # its Content-Length


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    # Lower-case name -> its values, for a POST only: any other request's
    # headers are only counted and checked for shape, never used.
    headers: dict[str, list[str]]

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values else None


def _parse_head(head: bytes) -> _Request:
    """The request of a request head, or _BadRequest. The headers of a POST
    are read; those of any other method only counted and checked for shape."""
    lines = head.split(b"\n")
    while lines and lines[0].strip(b"\r") == b"":
        lines.pop(0)  # RFC 9112 2.2: ignore empty lines before the request line
    if not lines:
        raise _BadRequest(400, "empty request")
    parts = lines[0].rstrip(b"\r").split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        raise _BadRequest(400, "not an HTTP request line")
    method, target, version = parts
    if not _VERSION.fullmatch(version):
        raise _BadRequest(400, "only HTTP/1.0 and HTTP/1.1 are served")
    headers = [line for line in lines[1:] if line.strip(b"\r")]
    if len(headers) > MAX_HEADER_LINES:
        raise _BadRequest(431, f"more than {MAX_HEADER_LINES} header lines")
    fields: dict[str, list[str]] = {}
    for line in headers:
        if b":" not in line or line[:1] in (b" ", b"\t"):
            raise _BadRequest(400, "malformed header line")
        if method == b"POST":
            name, _, value = line.rstrip(b"\r").partition(b":")
            if not _TOKEN.fullmatch(name):  # `Content-Length : 5` too (RFC 9112 5.1)
                raise _BadRequest(400, "malformed header name")
            values = fields.setdefault(name.decode("ascii").lower(), [])
            values.append(value.strip(b" \t").decode("latin-1"))
    try:
        path = urlsplit(target.decode("ascii")).path
    except (UnicodeDecodeError, ValueError):
        raise _BadRequest(400, "malformed request target") from None
    return _Request(method.decode("ascii"), path, fields)


def _body_length(request: _Request) -> int:
    """The Content-Length of a webhook POST, once its head says it is one
    worth reading; else _BadRequest (411, 413, 415, 400; 403 unsigned)."""
    lengths = set(request.headers.get("content-length", ()))
    if "transfer-encoding" in request.headers:
        if lengths:  # which one frames the body is how requests are smuggled
            raise _BadRequest(400, "both Transfer-Encoding and Content-Length")
        raise _BadRequest(411, "Content-Length required (chunked bodies are not read)")
    if not lengths:
        raise _BadRequest(411, "Content-Length required")
    if len(lengths) > 1:
        raise _BadRequest(400, "conflicting Content-Length headers")
    text = lengths.pop()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise _BadRequest(400, "malformed Content-Length")
    length = int(text)
    if length > MAX_BODY_BYTES:
        raise _BadRequest(413, f"body larger than {MAX_BODY_BYTES} bytes")
    content_type = (request.header("content-type") or "").partition(";")[0].strip()
    if content_type.lower() != _FORM:
        raise _BadRequest(415, f"Content-Type must be {_FORM}")
    if not request.header("x-twilio-signature"):
        raise _BadRequest(403, "")
    return length


def _form(body: bytes) -> dict[str, str]:
    """The first value of each field of a form body, or _BadRequest."""
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, errors="strict")
    except ValueError:  # UnicodeDecodeError too
        raise _BadRequest(400, "malformed form body") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        params.setdefault(name, value)
    return params


def _load_validator() -> Any:
    """twilio's RequestValidator class, or the exception importing it raised."""
    try:
        from twilio.request_validator import RequestValidator
    except Exception as error:
        return error
    return RequestValidator


def _head_end(buffer: bytes, start: int) -> int:
    """Index just past the blank line ending the head, or -1. Bare LF lines too."""
    end = buffer.find(b"\r\n\r\n", start)
    if end >= 0:
        return end + 4
    end = buffer.find(b"\n\n", start)
    return end + 2 if end >= 0 else -1


class HealthServer:
    """`check-status serve`: a single-threaded asyncio HTTP server.

    The surface of socketserver's servers, which the CLI and the tests use:
    `serve_forever()` in some thread, `shutdown()` from another (it waits until
    serving stopped), `server_close()`, `server_address`. The listening socket
    is bound here, so a port in use fails at once with an OSError.
    """

    def __init__(
        self,
        config: Config,
        address: tuple[str, int],
        *,
        max_connections: int | None = None,
        head_deadline_seconds: float = HEAD_DEADLINE_SECONDS,
        max_head_bytes: int = MAX_HEAD_BYTES,
    ) -> None:
        self.config = config
        self.health = HealthProbe(config)
        cap = connection_cap()  # raises the soft fd limit even when the cap is given
        self.max_connections = max_connections if max_connections is not None else cap
        self.head_deadline_seconds = head_deadline_seconds
        self.max_head_bytes = max_head_bytes
        self._listener = _listen(address)
        self._listener_fd = self._listener.fileno()  # still known once the socket is closed
        self.server_address: tuple[str, int] = self._listener.getsockname()[:2]
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_quiet)
        self._status_flight: _Flight[_Answer] = _Flight("check-status state read", self._status)
        # The webhook: on with both its URL and the token to check signatures with.
        url = config.twilio_webhook_url
        self._webhook_url = url if url and config.twilio_auth_token else None
        self._webhook_path = (urlsplit(url).path or "/") if self._webhook_url else None
        # Where a POST is told the webhook is off, rather than that POST is not served.
        self._webhook_off_paths = {WEBHOOK_PATH} | ({urlsplit(url).path} if url else set())
        self._twilio_import: _Flight[Any] = _Flight("check-status twilio import", _load_validator)
        self._validator_class: Any = None
        self._ack_threads = 0  # ACKs being recorded, each in a thread of its own
        # Insertion order is age order: the oldest is first, to drop or to time out.
        self._pending: OrderedDict[_Connection, None] = OrderedDict()  # reading the head
        self._answering: set[_Connection] = set()  # waiting for a probe or a state read
        self._closing: OrderedDict[_Connection, None] = OrderedDict()  # writing, then draining
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._accepting = False
        self._full = False  # accepting paused until a connection closes
        self._winding_down = False
        self._lifecycle = threading.Lock()
        self._serving = False
        self._shutdown_requested = False
        self._stopped = threading.Event()
        self._stopped.set()
        self._loop_thread: int | None = None
        # Counters for tests and the benchmark.
        self.peak_connections = 0
        self.dropped_at_cap = 0
        self.timed_out_heads = 0

    @property
    def open_connections(self) -> int:
        return len(self._pending) + len(self._answering) + len(self._closing)

    # --- lifecycle ----------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until shutdown() (or SIGTERM's SystemExit, or ctrl-C).
        `poll_interval` is socketserver's; nothing polls here."""
        loop = self._loop
        with self._lifecycle:
            if self._shutdown_requested or loop.is_closed():
                return
            self._serving = True
            self._stopped.clear()
        self._loop_thread = threading.get_ident()
        try:
            self._start_accepting()
            loop.run_forever()
        finally:
            try:
                self._wind_down()
            finally:
                with self._lifecycle:
                    self._serving = False
                self._stopped.set()

    def shutdown(self) -> None:
        """Stop serve_forever() and wait until it has returned."""
        with self._lifecycle:
            self._shutdown_requested = True
            serving = self._serving
        if not serving:
            return
        if self._loop_thread == threading.get_ident():
            self._loop.stop()  # called from a callback: stop at the end of this iteration
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._stopped.wait()

    def server_close(self) -> None:
        """Close the listening socket and the event loop (stopping serving first,
        so that no connection is left registered with a closed loop)."""
        if self._loop_thread != threading.get_ident():
            self.shutdown()
        with self._lifecycle:
            self._shutdown_requested = True
            serving = self._serving
        self._listener.close()
        if not serving and not self._loop.is_closed():
            self._loop.close()

    def __enter__(self) -> HealthServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server_close()

    def _wind_down(self) -> None:
        loop = self._loop
        self._winding_down = True
        self._stop_accepting()
        for conn in [*self._pending, *self._answering, *self._closing]:
            self._close(conn)
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks and not loop.is_running():
            # Let the cancelled tasks finish, or asyncio complains about them on stderr.
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    # --- accepting ----------------------------------------------------------

    def _start_accepting(self) -> None:
        if not self._accepting and not self._winding_down and self._listener.fileno() >= 0:
            self._loop.add_reader(self._listener_fd, self._accept)
            self._accepting = True

    def _stop_accepting(self) -> None:
        if self._accepting:
            self._loop.remove_reader(self._listener_fd)
            self._accepting = False

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            # Room first, then accept: the new socket is a descriptor too, and the
            # cap holds for descriptors, not only for connections served.
            if self.open_connections >= self.max_connections and not self._make_room():
                # Every slot is waiting for its answer (each bounded in time): leave
                # the newcomers in the listen queue until one closes.
                self._stop_accepting()
                self._full = True
                return
            try:
                sock, _address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors (something else holds them): retrying at
                    # once would spin a core, so wait a little with the queue full.
                    self._stop_accepting()
                    self._loop.call_later(0.1, self._start_accepting)
                return
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        try:
            sock.setblocking(False)
        except OSError:
            sock.close()
            return
        conn = _Connection(sock, self._loop.time())
        self._pending[conn] = None
        self.peak_connections = max(self.peak_connections, self.open_connections)
        self._schedule_sweep()
        self._read(conn)
        # A balancer's check usually arrived with the handshake: read it now, so
        # it is answered before the rest of this batch of accepts can push it out.
        self._on_readable(conn)

    def _make_room(self) -> bool:
        """Drop the oldest connection still sending its head, else the oldest
        one already answered; False when every one is waiting for its answer."""
        for queue in (self._pending, self._closing):
            if queue:
                self._close(next(iter(queue)))
                self.dropped_at_cap += 1
                return True
        return False

    # --- reading the request head -------------------------------------------

    def _read(self, conn: _Connection) -> None:
        if not conn.reading:
            self._loop.add_reader(conn.fd, self._on_readable, conn)
            conn.reading = True

    def _stop_reading(self, conn: _Connection) -> None:
        if conn.reading:
            self._loop.remove_reader(conn.fd)
            conn.reading = False

    def _on_readable(self, conn: _Connection) -> None:
        # A body is read no further than its Content-Length: what follows is drained.
        size = READ_CHUNK if conn.body is None else min(READ_CHUNK, conn.length - len(conn.body))
        try:
            data = conn.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if conn in self._closing:  # answered: read and forget until the client hangs up
            conn.drained += len(data)
            if not data or conn.drained > MAX_DRAIN_BYTES:
                self._close(conn)
            return
        if not data:
            self._close(conn)  # hung up before finishing its request
            return
        if conn.body is not None:
            conn.body += data
            self._body_arrived(conn)
            return
        start = max(0, len(conn.head) - 3)
        conn.head += data
        end = _head_end(conn.head, start)
        if end < 0 and len(conn.head) <= self.max_head_bytes:
            return
        if end < 0 or end > self.max_head_bytes:
            self._head_done(conn)
            if b"\n" in conn.head[: self.max_head_bytes]:
                self._bad_request(
                    conn, 431, f"request head larger than {self.max_head_bytes} bytes"
                )
            else:  # http.server's 414, which this server has always answered as 400
                self._bad_request(
                    conn, 400, f"request line longer than {self.max_head_bytes} bytes"
                )
            return
        try:
            request = _parse_head(conn.head[:end])
        except _BadRequest as error:
            self._head_done(conn)
            self._bad_request(conn, error.status, error.reason)
            return
        rest, conn.head = conn.head[end:], b""
        if request.method == "POST" and request.path == self._webhook_path:
            self._start_body(conn, request, rest)
            return
        self._head_done(conn)
        self._route(conn, request)

    def _head_done(self, conn: _Connection) -> None:
        """The request is in: from reading it to answering it."""
        self._pending.pop(conn, None)
        self._answering.add(conn)
        self._stop_reading(conn)

    def _start_body(self, conn: _Connection, request: _Request, rest: bytes) -> None:
        """A webhook POST: read its body, if its head says it is worth reading.
        The connection stays where it is, among those whose request is not
        in yet: the same head deadline, and dropped first at the cap."""
        try:
            length = _body_length(request)
        except _BadRequest as error:
            self._head_done(conn)
            if error.status == 403:
                self._respond(conn, _BAD_SIGNATURE)
            else:
                self._bad_request(conn, error.status, error.reason)
            return
        conn.request = request
        conn.length = length
        conn.body = bytearray(rest[:length])
        self._body_arrived(conn)

    def _body_arrived(self, conn: _Connection) -> None:
        body, request = conn.body, conn.request
        if body is None or request is None or len(body) < conn.length:
            return
        conn.body = conn.request = None
        self._head_done(conn)
        self._spawn(self._answer_webhook(conn, request, bytes(body)))

    def _bad_request(self, conn: _Connection, status: int, reason: str) -> None:
        self._respond(conn, _Answer(status, "text/plain", f"bad request: {reason}\n".encode()))

    # --- answering ----------------------------------------------------------

    def _route(self, conn: _Connection, request: _Request) -> None:
        method, path = request.method, request.path
        if method not in ("GET", "HEAD"):
            if method == "POST" and self._webhook_path is None and path in self._webhook_off_paths:
                self._respond(conn, _WEBHOOK_OFF)
            elif self._webhook_path is not None:
                message = f"only GET and HEAD are served, and POST {self._webhook_path}"
                self._respond(conn, _Answer(400, "text/plain", f"{message}\n".encode()))
            else:
                self._respond(conn, _BAD_METHOD)
            return
        send_body = method == "GET"
        if path == "/health":
            verdict = self.health.cached()
            if verdict is not None:  # the common case under a balancer: no task needed
                self._respond(conn, _health_answer(verdict), send_body)
                return
            self._spawn(self._answer_health(conn, send_body))
        elif path == "/status":
            self._spawn(self._answer_status(conn, send_body))
        else:
            self._respond(conn, _NOT_FOUND, send_body)

    def _spawn(self, coroutine: Any) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_health(self, conn: _Connection, send_body: bool) -> None:
        try:
            verdict = await self.health.current()
        except Exception as error:  # a bug: answer it as the old server did, no traceback
            verdict = HealthVerdict(
                False, f"UNKNOWN health probe failed: {type(error).__name__}\n", time.monotonic()
            )
        self._respond(conn, _health_answer(verdict), send_body)

    async def _answer_status(self, conn: _Connection, send_body: bool) -> None:
        answer: _Answer | None
        try:
            answer = await _wait(self._status_flight.join(), answer_wait_seconds(self.config))
        except Exception as error:
            answer = _json_error(503, f"status page failed: {type(error).__name__}")
        if answer is None:
            timeout = self.config.http_timeout_seconds
            answer = _json_error(503, f"timeout after {timeout:g}s (state file read still running)")
        self._respond(conn, answer, send_body)

    async def _answer_webhook(self, conn: _Connection, request: _Request, body: bytes) -> None:
        try:
            answer = await self._webhook(request, body)
        except Exception as error:  # a bug: say what, never a traceback nor a secret
            answer = _text(503, f"webhook failed: {type(error).__name__}")
        self._respond(conn, answer)

    async def _webhook(self, request: _Request, body: bytes) -> _Answer:
        """The answer to a webhook POST whose body is in: TwiML, 403, or 503."""
        at = utc_now()  # when the reply arrived: Twilio's form does not say when it was sent
        url, token = self._webhook_url, self.config.twilio_auth_token
        if url is None or token is None:  # not reached: the path is None then
            return _WEBHOOK_OFF
        try:
            params = _form(body)
        except _BadRequest as error:
            return _text(error.status, f"bad request: {error.reason}")
        validator = self._validator_class
        if validator is None:
            loaded = await _wait(self._twilio_import.join(), WEBHOOK_WAIT_SECONDS)
            if not isinstance(loaded, type):
                what = type(loaded).__name__ if loaded is not None else "timeout"
                return _text(503, f"webhook unavailable: cannot import twilio ({what})")
            self._validator_class = validator = loaded
        signature = request.header("x-twilio-signature") or ""
        if not validator(token).validate(url, params, signature):
            return _BAD_SIGNATURE
        from check_status.alerting.oncall import Ack, read_ack

        is_ack, check = read_ack(params.get("Body", ""))
        sender = params.get("From", "")
        known = set(self.config.alert_to) | {o.number for o in self.config.operators}
        if not is_ack or sender not in known:
            # Not an ACK, or not from an operator (whom rules.acknowledge would
            # ignore anyway): nothing is recorded, and a stranger gets no reply.
            return _NO_REPLY
        if self._ack_threads >= MAX_ACK_THREADS:
            return _text(503, f"busy: {self._ack_threads} ACKs are being recorded; try again")
        ack = Ack(sender, check, at, "webhook")
        future = self._in_thread("check-status ack", lambda: self._record(ack))
        answer = await _wait(future, WEBHOOK_WAIT_SECONDS)
        if answer is None:
            return _text(
                503, f"timeout after {WEBHOOK_WAIT_SECONDS:g}s (the ACK may still be recorded)"
            )
        return answer

    def _in_thread(self, name: str, work: Callable[[], _Answer]) -> asyncio.Future[_Answer]:
        """`work` in a daemon thread of its own (see _Flight for why not an
        executor), counted in _ack_threads until it returns."""
        loop = self._loop
        future: asyncio.Future[_Answer] = loop.create_future()

        def finish(answer: _Answer) -> None:
            self._ack_threads -= 1
            if not future.done():
                future.set_result(answer)

        def run() -> None:
            answer = work()  # total
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(finish, answer)

        threading.Thread(target=run, name=name, daemon=True).start()
        self._ack_threads += 1
        return future

    def _record(self, ack: Any) -> _Answer:
        # In an ACK thread: the run lock, the state file and the outbox.
        from check_status.acks import AckNotRecorded, record_acks

        try:
            lines = record_acks(self.config, [ack], ack.at, wait_seconds=ACK_LOCK_WAIT_SECONDS)
        except AckNotRecorded as error:
            return _text(503, f"ACK not recorded: {error}")
        except Exception as error:
            return _text(503, f"ACK not recorded: {type(error).__name__}")
        return _sms_reply(f"[{self.config.node_name}] {'; '.join(lines)}")

    def _status(self) -> _Answer:
        # In the state-read thread: reading, building and encoding the page.
        try:
            body = json.dumps(self.status_document(), indent=1).encode() + b"\n"
        except Exception as error:
            return _json_error(503, f"status page failed: {type(error).__name__}")
        return _Answer(200, _JSON, body)

    def status_document(self) -> dict[str, Any]:
        from check_status import status_view
        from check_status.state import StateStore

        state, problem = StateStore(
            self.config.state_file, self.config.state_fallback_dir, self.config.env_file
        ).read_only()
        # Peers read this page over the network: operators' numbers stay masked.
        document = status_view.build(state, self.config, utc_now(), mask_numbers=True)
        if problem:
            document["problem"] = problem
        return document

    # --- writing and closing --------------------------------------------------

    def _respond(self, conn: _Connection, answer: _Answer, send_body: bool = True) -> None:
        if conn.closed:
            return
        head = (
            f"HTTP/1.0 {answer.status} {HTTPStatus(answer.status).phrase}\r\n"
            "Server: check-status\r\n"
            f"Date: {formatdate(usegmt=True)}\r\n"
            f"Content-Type: {answer.content_type}\r\n"
            f"Content-Length: {len(answer.body)}\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n\r\n"
        ).encode("ascii")
        self._answering.discard(conn)
        self._pending.pop(conn, None)
        conn.since = self._loop.time()
        self._closing[conn] = None
        conn.out = memoryview(head + answer.body if send_body else head)
        self._write(conn)
        self._schedule_sweep()

    def _write(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        if conn.out:
            if not conn.writing:
                self._loop.add_writer(conn.fd, self._write, conn)
                conn.writing = True
            return
        if conn.writing:
            self._loop.remove_writer(conn.fd)
            conn.writing = False
        # Half-close, then drain until the client hangs up (it does on our FIN).
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        self._read(conn)

    def _close(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._stop_reading(conn)
        if conn.writing:
            self._loop.remove_writer(conn.fd)
            conn.writing = False
        self._pending.pop(conn, None)
        self._answering.discard(conn)
        self._closing.pop(conn, None)
        conn.sock.close()
        if self._full:
            self._full = False
            self._start_accepting()

    # --- deadlines ------------------------------------------------------------

    def _schedule_sweep(self) -> None:
        """One timer for every deadline: both queues are in age order, so the
        next deadline is that of the oldest entry of one of them."""
        due = []
        if self._pending:
            due.append(next(iter(self._pending)).since + self.head_deadline_seconds)
        if self._closing:
            due.append(next(iter(self._closing)).since + CLOSE_DEADLINE_SECONDS)
        if not due:
            return
        when = max(min(due), self._loop.time() + SWEEP_GRANULARITY_SECONDS)
        handle = self._sweep_handle
        if handle is not None:
            if handle.when() <= when:
                return
            handle.cancel()
        self._sweep_handle = self._loop.call_at(when, self._sweep)

    def _sweep(self) -> None:
        self._sweep_handle = None
        now = self._loop.time()
        while self._pending:
            conn = next(iter(self._pending))
            if conn.since + self.head_deadline_seconds > now:
                break
            self.timed_out_heads += 1
            self._close(conn)
        while self._closing:
            conn = next(iter(self._closing))
            if conn.since + CLOSE_DEADLINE_SECONDS > now:
                break
            self._close(conn)
        self._schedule_sweep()


def _health_answer(verdict: HealthVerdict) -> _Answer:
    return _Answer(200 if verdict.healthy else 503, _TEXT, verdict.text.encode())


def _listen(address: tuple[str, int]) -> socket.socket:
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's default handler prints tracebacks. A client's misbehaviour
    never gets here (every socket error is handled where it happens); what
    does is a bug, said in one line, or the SystemExit of SIGTERM: nothing."""
    error = context.get("exception")
    if isinstance(error, SystemExit | KeyboardInterrupt | asyncio.CancelledError | OSError):
        return
    what = f"{type(error).__name__}" if error is not None else "no exception"
    print(f"check-status serve: internal error: {context.get('message')} ({what})", file=sys.stderr)


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT such as 127.0.0.1:8899")
    return host.strip("[]") or "127.0.0.1", int(port)
