"""Real loopback HTTP servers used by the tests instead of mocks.

- ``NodeosStandIn``: answers ``/v1/chain/get_info`` and ``/v1/db_size/get`` the way nodeos
  (and the proxies in front of it) do, including the ugly failure shapes.
- ``TwilioStandIn``: the part of Twilio's REST API that the ``twilio`` 9.x client uses to
  send an SMS, list messages (inbound replies), place a voice call, check credentials and
  the account, and find the sender (IncomingPhoneNumbers, Messaging Services).
- ``HeartbeatStandIn``: healthchecks.io's ping and /log endpoints.
- ``HangingServer``: accepts TCP connections and never says anything.
- ``free_port()``: a port with nothing listening (connection refused).

Every server binds 127.0.0.1 on an ephemeral port, serves from daemon threads, and is a
context manager. Public attributes may be changed between (or during) runs; each request
takes a consistent snapshot of them under the server's lock. ``configure(**kw)`` changes
several at once atomically.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

__all__ = [
    "DB_SIZE_404_FIXTURE",
    "DEFAULT_GET_INFO_FIXTURE",
    "ERROR_404_FIXTURE",
    "ERROR_500_FIXTURE",
    "FIXTURES_DIR",
    "HTML_502",
    "HangingServer",
    "NodeosStandIn",
    "TwilioStandIn",
    "format_block_time",
    "free_port",
    "load_fixture",
]

_env_fixtures = os.environ.get("CHECK_STATUS_FIXTURES")
FIXTURES_DIR: Path = (
    Path(_env_fixtures)
    if _env_fixtures
    else Path(__file__).resolve().parent / "fixtures" / "nodeos"
)

DEFAULT_GET_INFO_FIXTURE = "get_info_leap_v4.0.4_eos_mainnet.json"
ERROR_404_FIXTURE = "error_404_unknown_endpoint_leap_v3.2.0.json"
ERROR_500_FIXTURE = "error_500_timeout_exception_http_max_response_time.json"
DB_SIZE_404_FIXTURE = ERROR_404_FIXTURE

HTML_502 = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
    b"</h1></center><hr><center>nginx</center></body></html>"
)
# Cloudflare's error pages put a '|' in the title, the Nagios perfdata separator.
HTML_502_CLOUDFLARE = (
    b"<!DOCTYPE html><html><head><title>api.example.io | 502: Bad gateway</title></head>"
    b"<body>Bad gateway</body></html>"
)
PATRONEOS_503 = b'{"message":"NODEOS_UNREACHABLE","code":503}'
BIG_BODY = b'{"x":"' + b"a" * 10_000_000 + b'"}'
INVALID_UTF8_BODY = b'{"chain_id":"\xff\xfe"}'

GET_INFO_PATH = "/v1/chain/get_info"
DB_SIZE_PATH = "/v1/db_size/get"

NODEOS_MODES = frozenset(
    {
        "ok",
        "html502",
        "html502_cloudflare",
        "error404",
        "error500",
        "patroneos",
        "empty400",
        "hang",
        "trickle",
        "big",
        "invalid_utf8",
        "raw",
    }
)
TWILIO_MODES = frozenset(
    {"ok", "error500", "error429", "html", "slow", "accepted_html", "accepted_no_sid"}
)

_JSON = "application/json"
_HTML = "text/html"


def load_fixture(name: str) -> dict:
    """Load a JSON fixture from FIXTURES_DIR by file name."""
    return json.loads((FIXTURES_DIR / name).read_text(encoding="utf-8"))


def _fixture_bytes(name: str) -> bytes:
    return (FIXTURES_DIR / name).read_bytes()


def format_block_time(dt: datetime, millis: bool = True) -> str:
    """Format like nodeos: UTC, no zone suffix.

    ``2023-09-27T12:51:57.500`` (millis, always 3 digits) or ``2018-06-16T09:56:38``
    (EOSIO 1.0 style). A naive datetime is taken to be UTC already.
    """
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if millis:
        text += f".{dt.microsecond // 1000:03d}"
    return text


def free_port() -> int:
    """Return a loopback port with nothing listening on it (bind port 0, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_block_num(block_id: Any, num: int) -> Any:
    """A block id starts with the block number as 8 hex digits; keep that consistent."""
    if isinstance(block_id, str) and len(block_id) == 64:
        return f"{num & 0xFFFFFFFF:08x}{block_id[8:]}"
    return block_id


# --------------------------------------------------------------------------------------
# Shared server machinery
# --------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # never let a stuck handler block stop()
    allow_reuse_address = True

    standin: _LoopbackHTTP

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response are expected here; stay quiet.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: clean stop()
    timeout = 30  # socket timeout so a stuck peer cannot pin a thread forever

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.standin._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.standin._untrack(self.connection)

    # helpers -----------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str | None = _JSON,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        try:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra_headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if body:
                self.wfile.write(body)
                self.wfile.flush()
        except OSError:
            pass

    def _stopped(self) -> threading.Event:
        return self.server.standin._stop_event


class _LoopbackHTTP:
    """Start/stop and context-manager plumbing shared by the HTTP stand-ins."""

    handler_class: type[_Handler] = _Handler

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._lifecycle = threading.Lock()
        self._stop_event = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self.port: int = 0
        self.url: str = ""
        self.requests: list[tuple[str, str]] = []

    # lifecycle -----------------------------------------------------------------------

    def start(self) -> _LoopbackHTTP:
        """Start serving. After stop(), start() again re-binds the same port if it can."""
        with self._lifecycle:
            if self._server is not None:
                return self
            self._stop_event = threading.Event()
            server = _Server(("127.0.0.1", self.port), self.handler_class)
            server.standin = self
            self._server = server
            self.port = server.server_address[1]
            self.url = f"http://127.0.0.1:{self.port}"
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{type(self).__name__}:{self.port}",
                daemon=True,
            )
            self._thread.start()
            return self

    def stop(self) -> None:
        """Stop serving, release every waiting handler and drop open connections."""
        with self._lifecycle:
            server, self._server = self._server, None
            if server is None:
                return
            # Close the listener first, then release waiting handlers, so no client sees
            # a disconnect while the port is still bound (a restart right after is safe).
            server.shutdown()
            server.server_close()
            self._stop_event.set()
            self._drop_connections()
            if self._thread is not None:
                self._thread.join(timeout=5)
                self._thread = None

    def _drop_connections(self) -> None:
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # configuration -------------------------------------------------------------------

    def configure(self, **changes: Any) -> None:
        """Set several public attributes at once, atomically with respect to requests."""
        with self._lock:
            for key, value in changes.items():
                if key.startswith("_") or not hasattr(self, key):
                    raise AttributeError(f"{type(self).__name__} has no setting {key!r}")
                setattr(self, key, value)

    # bookkeeping ---------------------------------------------------------------------

    def _record_request(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)


# --------------------------------------------------------------------------------------
# a dead-man's switch (healthchecks.io)
# --------------------------------------------------------------------------------------


class _HeartbeatHandler(_Handler):
    """As healthchecks.io: HEAD, GET or POST on /ping/<uuid>[/fail] is a ping;
    /ping/<uuid>/log (or /ping/<key>/<slug>/log) records a log event, which is no
    ping: 200 "OK" for a check in ``checks``, 404 "not found" for any other."""

    def do_HEAD(self) -> None:
        self._ping()

    def do_GET(self) -> None:
        self._ping()

    def do_POST(self) -> None:
        self._ping()

    def _ping(self) -> None:
        body = b""
        with contextlib.suppress(OSError, ValueError):
            body = self._read_body()
        standin: HeartbeatStandIn = self.server.standin  # type: ignore[assignment]
        standin._record_request(self.command, self.path)
        path = urlsplit(self.path).path
        with standin._lock:
            checks = set(standin.checks)
        if path.startswith("/ping/") and path.endswith("/log"):
            check = path[len("/ping/") : -len("/log")]
            with standin._lock:
                standin.log_events.append((check, body))
            if check in checks:
                self._send(200, b"OK", "text/plain")
            else:
                self._send(404, b"not found", "text/plain")
        elif path.startswith("/ping/"):
            check = path[len("/ping/") :].removesuffix("/fail")
            if checks and check not in checks:
                self._send(404, b"not found", "text/plain")
            else:
                self._send(200, b"OK", "text/plain")
        else:
            self._send(404, b"not found", "text/plain")


class HeartbeatStandIn(_LoopbackHTTP):
    """healthchecks.io's ping API on 127.0.0.1.

    ``checks``: the checks that exist, as the part of the path after /ping/ (a uuid,
    or "<key>/<slug>"). /log answers 404 for any other. Pings answer 200 for any
    check while ``checks`` is empty (as before it existed), else 404 for unknown ones.
    ``log_events``: (check, body) of every POST to /log, recorded apart from pings.
    """

    handler_class = _HeartbeatHandler

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.checks: set[str] = set()
        self.log_events: list[tuple[str, bytes]] = []
        if settings:
            self.configure(**settings)

    @property
    def pings(self) -> list[str]:
        """Every request the service counts as a ping: `METHOD /ping/...`, not /log."""
        with self._lock:
            return [
                f"{m} {p}"
                for m, p in self.requests
                if urlsplit(p).path.startswith("/ping/") and not urlsplit(p).path.endswith("/log")
            ]


# --------------------------------------------------------------------------------------
# nodeos
# --------------------------------------------------------------------------------------


def _default_db_size() -> dict:
    size = 1073741824  # 1 GiB, nodeos's default chain-state-db-size-mb of 1024
    used = 268435456  # 25 %
    return {"free_bytes": str(size - used), "used_bytes": used, "size": size, "indices": []}


class _NodeosHandler(_Handler):
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        standin: NodeosStandIn = self.server.standin  # type: ignore[assignment]
        with contextlib.suppress(OSError, ValueError):
            self._read_body()
        standin._record_request(self.command, self.path)
        cfg = standin._snapshot()
        stop = self._stopped()
        if cfg["delay_seconds"] > 0 and stop.wait(cfg["delay_seconds"]):
            return
        path = urlsplit(self.path).path
        if path == GET_INFO_PATH:
            self._get_info(standin, cfg)
        elif path == DB_SIZE_PATH:
            if cfg["db_size_enabled"] and cfg["db_size"] is not None:
                self._send(200, json.dumps(cfg["db_size"]).encode())
            else:
                self._send(404, _fixture_bytes(ERROR_404_FIXTURE))
        else:
            self._send(404, _fixture_bytes(ERROR_404_FIXTURE))

    def _get_info(self, standin: NodeosStandIn, cfg: dict) -> None:
        mode = cfg["mode"]
        stop = self._stopped()
        if mode == "ok":
            body = standin._build_get_info(cfg)
            self._send(200, json.dumps(body, indent=2).encode())
        elif mode == "html502":
            self._send(502, HTML_502, _HTML)
        elif mode == "html502_cloudflare":
            self._send(502, HTML_502_CLOUDFLARE, _HTML)
        elif mode == "error404":
            self._send(404, _fixture_bytes(ERROR_404_FIXTURE))
        elif mode == "error500":
            self._send(500, _fixture_bytes(ERROR_500_FIXTURE))
        elif mode == "patroneos":
            self._send(503, PATRONEOS_503)
        elif mode == "empty400":
            self._send(400, b"", None)
        elif mode == "hang":
            stop.wait()
        elif mode == "trickle":
            try:
                self.send_response(200)
                self.send_header("Content-Type", _JSON)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self.wfile.flush()
                self.wfile.write(b"{")
                self.wfile.flush()
                while not stop.wait(1.0):
                    self.wfile.write(b" ")
                    self.wfile.flush()
            except OSError:
                pass
        elif mode == "big":
            self._send(200, BIG_BODY)
        elif mode == "invalid_utf8":
            self._send(200, INVALID_UTF8_BODY)
        elif mode == "raw":
            self._send(cfg["raw_status"], cfg["raw_body"], cfg["raw_content_type"])
        else:  # a typo in a test should be loud, not a silent 200
            self._send(599, f"unknown NodeosStandIn mode {mode!r}".encode(), "text/plain")


class NodeosStandIn(_LoopbackHTTP):
    """A nodeos HTTP API (get_info, db_size) on 127.0.0.1.

    get_info in mode "ok" is the ``fixture`` body with:

    - ``head_block_time`` = ``head_block_time`` if set, else now - ``head_lag_seconds``,
      formatted with or without milliseconds (``millis``);
    - ``head_block_num`` overridden if set (and ``fork_db_head_block_num`` and the block-number
      prefix of ``head_block_id`` follow it);
    - ``last_irreversible_block_num`` = head - ``lib_gap`` when ``lib_gap`` is set, else
      head - (the fixture's own gap); ``last_irreversible_block_id`` and
      ``last_irreversible_block_time`` (head time - gap * 0.5 s) follow when present;
    - ``chain_id`` overridden if set;
    - head and LIB numbers as JSON strings when ``numbers_as_strings``.

    ``/v1/db_size/get`` answers 200 with ``db_size`` only when ``db_size_enabled`` is True
    (default False, like a node without ``db_size_api_plugin``); otherwise 404 with the
    "Unknown Endpoint" body. ``mode`` applies to get_info only; ``delay_seconds`` to every
    request. GET and POST both work everywhere; unknown paths get nodeos's 404.
    """

    handler_class = _NodeosHandler

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.fixture: str = DEFAULT_GET_INFO_FIXTURE
        self.head_block_num: int | None = None
        self.lib_gap: int | None = None
        self.head_lag_seconds: float = 0.5
        self.head_block_time: datetime | None = None
        self.millis: bool = True
        self.numbers_as_strings: bool = False
        self.chain_id: str | None = None
        self.db_size: dict | None = _default_db_size()
        self.db_size_enabled: bool = False
        self.mode: str = "ok"
        self.raw_status: int = 200
        self.raw_body: bytes = b""
        self.raw_content_type: str | None = _JSON
        self.delay_seconds: float = 0.0
        if settings:
            self.configure(**settings)

    def __enter__(self) -> NodeosStandIn:
        self.start()
        return self

    def start(self) -> NodeosStandIn:
        super().start()
        return self

    _SETTINGS = (
        "fixture",
        "head_block_num",
        "lib_gap",
        "head_lag_seconds",
        "head_block_time",
        "millis",
        "numbers_as_strings",
        "chain_id",
        "db_size",
        "db_size_enabled",
        "mode",
        "raw_status",
        "raw_body",
        "raw_content_type",
        "delay_seconds",
    )

    def _snapshot(self) -> dict:
        with self._lock:
            cfg = {name: getattr(self, name) for name in self._SETTINGS}
        if cfg["db_size"] is not None:
            cfg["db_size"] = json.loads(json.dumps(cfg["db_size"]))
        return cfg

    @property
    def get_info_count(self) -> int:
        with self._lock:
            return sum(1 for _, p in self.requests if urlsplit(p).path == GET_INFO_PATH)

    def get_info_body(self) -> dict:
        """The body mode "ok" would send right now (head time computed from now)."""
        return self._build_get_info(self._snapshot())

    @staticmethod
    def _build_get_info(cfg: dict) -> dict:
        body = load_fixture(cfg["fixture"])
        orig_head = int(body["head_block_num"])
        orig_lib = int(body["last_irreversible_block_num"])
        head = orig_head if cfg["head_block_num"] is None else int(cfg["head_block_num"])
        gap = orig_head - orig_lib if cfg["lib_gap"] is None else int(cfg["lib_gap"])
        lib = head - gap

        if cfg["head_block_time"] is not None:
            head_time: datetime = cfg["head_block_time"]
            if head_time.tzinfo is None:
                head_time = head_time.replace(tzinfo=UTC)
        else:
            head_time = datetime.now(UTC) - timedelta(seconds=cfg["head_lag_seconds"])
        millis = cfg["millis"]

        body["head_block_num"] = str(head) if cfg["numbers_as_strings"] else head
        body["last_irreversible_block_num"] = str(lib) if cfg["numbers_as_strings"] else lib
        body["head_block_time"] = format_block_time(head_time, millis)
        if "fork_db_head_block_num" in body:
            body["fork_db_head_block_num"] = head
        for key in ("head_block_id", "fork_db_head_block_id"):
            if key in body:
                body[key] = _with_block_num(body[key], head)
        if "last_irreversible_block_id" in body:
            body["last_irreversible_block_id"] = _with_block_num(
                body["last_irreversible_block_id"], lib
            )
        if "last_irreversible_block_time" in body:
            lib_time = head_time - timedelta(seconds=gap * 0.5)
            body["last_irreversible_block_time"] = format_block_time(lib_time, millis)
        if cfg["chain_id"] is not None:
            body["chain_id"] = cfg["chain_id"]
        return body


# --------------------------------------------------------------------------------------
# A TCP listener that never answers
# --------------------------------------------------------------------------------------


class HangingServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: list[socket.socket] = []
        self.port: int = 0
        self.url: str = ""

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._conns)

    def start(self) -> HangingServer:
        if self._listener is not None:
            return self
        self._stop_event = threading.Event()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"HangingServer:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        listener = self._listener
        stop = self._stop_event
        while listener is not None and not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if stop.is_set():
                    conn.close()
                    return
                self._conns.append(conn)

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def __enter__(self) -> HangingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------
# Twilio
# --------------------------------------------------------------------------------------

_ACCOUNT_PREFIX = "/2010-04-01/Accounts/"

# Wording for each code as Twilio's API sends it in "message". 21211's and 21606's are
# Twilio's own, as quoted in public reports; the others follow the titles of Twilio's
# error pages. Placeholders: {to}, {from} (From, or the Messaging Service SID), {code}.
_RECIPIENT_ERRORS = {
    21211: "The 'To' number {to} is not a valid phone number.",
    21265: "'To' number cannot be a Short Code: {to}",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the "
    "'To' number: {to}.",
    21610: "Attempt to send to unsubscribed recipient",
    21612: "The 'To' phone number: {to}, is not currently reachable using the 'From' phone "
    "number: {from} via SMS.",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21635: "'To' number cannot be a landline: {to}",
    21608: "The number {to} is unverified. Trial accounts cannot send messages to "
    "unverified numbers; verify {to} at twilio.com/user/account/phone-numbers/verified, "
    "or purchase a Twilio number to send messages to unverified numbers.",
}
_SENDER_ERRORS = {
    21212: "The 'From' number {from} is not a valid phone number, shortcode, or "
    "alphanumeric sender ID.",
    21606: "The From phone number {from} is not a valid, SMS-capable inbound phone number "
    "or short code for your account.",
    21659: "'From' {from} is not a Twilio phone number or Short Code country mismatch",
    21660: "Mismatch between the 'From' number {from} and the account",
    21703: "The Messaging Service {from} does not have a phone number available to send a message.",
    21704: "The Messaging Service {from} contains no phone numbers.",
}
# Calls.json: codes the Voice API answers a call request with (same placeholders). They
# follow Twilio's error pages and the wording quoted in public reports.
_CALL_RECIPIENT_ERRORS = {
    13223: "The phone number you are attempting to call, {to}, is not in a valid format.",
    13224: "The phone number you are attempting to call, {to}, is not valid.",
    13227: "Geo Permission configuration is not permitting call to {to}",
    21215: "Account not authorized to call {to}. Perhaps you need to enable some "
    "international permissions: https://www.twilio.com/console/voice/calls/geo-permissions",
    21216: "Account not allowed to call {to}",
    21219: "The number {to} is unverified. Trial accounts may only make calls to verified numbers.",
}
_CALL_SENDER_ERRORS = {
    21210: "The source phone number provided, {from}, is not yet verified for your account. "
    "You may only make calls from phone numbers that you've verified or purchased from "
    "Twilio.",
}
_ACCEPTED_HTML = (
    b"<html><head><title>201 Created</title></head>"
    b"<body><h1>Created</h1><p>Your message was queued.</p></body></html>"
)


def _rfc2822(dt: datetime) -> str:
    """A date as Twilio's API sends it: "Wed, 02 Dec 2026 02:10:00 +0000", always UTC.

    The SDK's ``deserialize.rfc2822_datetime`` drops the zone (``email.utils.parsedate``)
    and labels the result UTC, so anything but UTC here would be read wrong. A naive
    datetime is taken to be UTC already."""
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return format_datetime(dt.replace(microsecond=0))


def _date_range(value: str) -> tuple[datetime, datetime] | None:
    """What a ``DateSent``/``DateSent<``/``DateSent>`` value covers, as [start, end): the
    SDK sends "YYYY-MM-DD" (that day from 00:00 UTC) or "YYYY-MM-DDTHH:MM:SSZ" (that
    second). None for anything else."""
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        try:
            at = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None
        return at, at + timedelta(seconds=1)
    return day, day + timedelta(days=1)


def _error_body(code: int, message: str, status: int, problem_json: bool = False) -> bytes:
    """Twilio's legacy error JSON, or the RFC 9457 shape newer Twilio services send."""
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    if problem_json:
        payload: dict[str, Any] = {
            "type": more_info,
            "title": message,
            "status": status,
            "code": code,
            "detail": message,
            "instance": None,
        }
    else:
        payload = {"code": code, "message": message, "more_info": more_info, "status": status}
    return json.dumps(payload).encode()


class _TwilioHandler(_Handler):
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        standin: TwilioStandIn = self.server.standin  # type: ignore[assignment]
        try:
            raw = self._read_body()
        except (OSError, ValueError):
            raw = b""
        standin._record_request(self.command, self.path)
        cfg = standin._snapshot()
        path = urlsplit(self.path).path

        route, account_sid, service_sid = None, "", ""
        if path.startswith(_ACCOUNT_PREFIX):
            rest = path[len(_ACCOUNT_PREFIX) :]
            if self.command == "POST" and rest.endswith("/Messages.json") and rest.count("/") == 1:
                route, account_sid = "messages", unquote(rest.split("/", 1)[0])
            elif self.command == "GET" and rest.endswith("/Messages.json") and rest.count("/") == 1:
                route, account_sid = "message_list", unquote(rest.split("/", 1)[0])
            elif self.command == "POST" and rest.endswith("/Calls.json") and rest.count("/") == 1:
                route, account_sid = "calls", unquote(rest.split("/", 1)[0])
            elif self.command == "GET" and rest.endswith(".json") and "/" not in rest:
                route, account_sid = "account", unquote(rest[: -len(".json")])
            elif (
                self.command == "GET"
                and rest.endswith("/IncomingPhoneNumbers.json")
                and rest.count("/") == 1
            ):
                route, account_sid = "numbers", unquote(rest.split("/", 1)[0])
        elif path.startswith(_SERVICES_PREFIX) and self.command == "GET":
            # Messaging (messaging.twilio.com/v1): the account is the Basic auth user.
            parts = path[len(_SERVICES_PREFIX) :].split("/")
            account_sid = self._basic_user()
            if len(parts) == 1 and parts[0]:
                route, service_sid = "service", unquote(parts[0])
            elif len(parts) == 2 and parts[0] and parts[1] in _SERVICE_SENDERS:
                route, service_sid = _SERVICE_SENDERS[parts[1]], unquote(parts[0])

        auth_ok = self._auth_ok(account_sid, cfg["auth_token"])
        record: dict[str, Any] | None = None
        form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        if route == "messages":
            record = {
                "to": form.get("To", [None])[0],
                "from": form.get("From", [None])[0],
                "messaging_service_sid": form.get("MessagingServiceSid", [None])[0],
                "body": form.get("Body", [None])[0],
                "account_sid": account_sid,
                "auth_ok": auth_ok,
            }
        elif route == "calls":
            record = {
                "to": form.get("To", [None])[0],
                "from": form.get("From", [None])[0],
                "twiml": form.get("Twiml", [None])[0],
                "url": form.get("Url", [None])[0],
                "account_sid": account_sid,
                "auth_ok": auth_ok,
            }

        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        if route == "message_list":
            with standin._lock:
                standin.listings.append({key: values[0] for key, values in query.items()})
        now = datetime.now(UTC)
        status, body, ctype = self._answer(
            route, account_sid, auth_ok, record, cfg, service_sid=service_sid, query=query, now=now
        )
        if record is not None:
            if route == "calls":
                tried, accepted = standin.call_attempts, standin.calls
            else:
                tried, accepted = standin.attempts, standin.messages
            with standin._lock:
                tried.append({**record, "status": status})
                if status == 201:  # accepted, even when the answer carries no sid
                    entry = {**record, "sid": _sid_of(body)}
                    accepted.append(entry)
                    if route == "messages":  # for the Messages list; not a key of entry
                        standin._accepted_at[id(entry)] = (entry, now)
            # Accepted (recorded above) first, answered late: a client that dies or
            # times out meanwhile never learns that Twilio took the message.
            delay = cfg["slow_numbers"].get(record["to"]) if status == 201 else None
            if delay is not None and self._stopped().wait(delay):
                return  # stop(): no answer at all; stop() drops the connection
        self._send(status, body, ctype)

    def _basic_user(self) -> str:
        header = self.headers.get("Authorization") or ""
        try:
            return base64.b64decode(header[6:]).decode().partition(":")[0]
        except ValueError:
            return ""

    def _auth_ok(self, account_sid: str, token: str) -> bool:
        header = self.headers.get("Authorization") or ""
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return bool(account_sid) and user == account_sid and password == token

    def _answer(
        self,
        route: str | None,
        account_sid: str,
        auth_ok: bool,
        record: dict | None,
        cfg: dict,
        *,
        service_sid: str = "",
        query: dict[str, list[str]] | None = None,
        now: datetime | None = None,
    ) -> tuple[int, bytes, str]:
        mode = cfg["mode"]
        now = now or datetime.now(UTC)

        def err(code: int, message: str, status: int) -> bytes:
            return _error_body(code, message, status, cfg["problem_json"])

        if mode == "slow" and self._stopped().wait(cfg["delay_seconds"]):
            return 503, err(20503, "Service unavailable", 503), _JSON
        if mode == "error500":
            return 500, err(20500, "Internal Server Error", 500), _JSON
        if mode == "error429":
            return 429, err(20429, "Too Many Requests", 429), _JSON
        if mode == "html":
            return 502, HTML_502, _HTML
        if mode not in TWILIO_MODES:
            return 599, f"unknown TwilioStandIn mode {mode!r}".encode(), "text/plain"

        if route is None:
            msg = f"The requested resource {urlsplit(self.path).path} was not found"
            return 404, err(20404, msg, 404), _JSON
        if not auth_ok:
            return 401, err(20003, "Authenticate", 401), _JSON

        if route == "account":
            payload = {
                "sid": account_sid,
                "friendly_name": "test",
                "status": cfg["account_status"],
                "type": "Trial",
            }
            return 200, json.dumps(payload).encode(), _JSON
        if route == "message_list":
            return self._message_list(account_sid, query or {}, cfg, err)
        if route == "numbers":
            wanted = (query or {}).get("PhoneNumber", [""])[0]
            return 200, _numbers_page(account_sid, wanted, cfg["phone_numbers"]), _JSON
        if route is not None and route.startswith("service"):
            services = cfg["messaging_services"]
            if services is None:
                services = {service_sid: [_DEFAULT_SENDER]} if service_sid.startswith("MG") else {}
            if service_sid not in services:
                msg = f"The requested resource /Services/{service_sid} was not found"
                return 404, err(20404, msg, 404), _JSON
            if route == "service":
                payload = {
                    "sid": service_sid,
                    "account_sid": account_sid,
                    "friendly_name": "check-status",
                    "url": f"{_SERVICES_PREFIX}{service_sid}",
                }
                return 200, json.dumps(payload).encode(), _JSON
            key = route.removeprefix("service_")
            numbers = services[service_sid] if key == "phone_numbers" else []
            return 200, _service_page(service_sid, key, numbers), _JSON

        assert record is not None
        if route == "calls":
            return self._call(account_sid, record, cfg, err, now)
        to = record["to"]
        if not to:
            return 400, err(21604, "A 'To' phone number is required.", 400), _JSON
        if not record["from"] and not record["messaging_service_sid"]:
            msg = "A 'From' phone number is required."
            return 400, err(21603, msg, 400), _JSON
        if not record["body"]:
            return 400, err(21602, "Message body is required.", 400), _JSON
        sender = record["messaging_service_sid"] or record["from"]
        code = cfg["sender_errors"].get(sender)
        templates = _SENDER_ERRORS
        if code is None:
            code = 21211 if to in cfg["invalid_numbers"] else cfg["recipient_errors"].get(to)
            templates = _RECIPIENT_ERRORS
        if code is not None:
            template = cfg["error_texts"].get(code, templates.get(code, "Error {code} for {to}"))
            words = template.format_map({"to": to, "from": sender, "code": code})
            return 400, err(code, words, 400), _JSON

        if mode == "accepted_html":
            return 201, _ACCEPTED_HTML, _HTML
        sid = "SM" + secrets.token_hex(16)
        payload = {
            "sid": sid,
            "account_sid": account_sid,
            "to": to,
            "from": record["from"],
            "messaging_service_sid": record["messaging_service_sid"],
            "body": record["body"],
            "status": "queued" if record["from"] else "accepted",
            "num_segments": "1",
            "num_media": "0",
            "date_created": _rfc2822(now),
            "date_updated": _rfc2822(now),
            "date_sent": None,
            "api_version": "2010-04-01",
            "uri": f"{_ACCOUNT_PREFIX}{account_sid}/Messages/{sid}.json",
            "error_code": None,
            "error_message": None,
            "price": None,
            "price_unit": "USD",
            "direction": "outbound-api",
            "subresource_uris": {
                "media": f"{_ACCOUNT_PREFIX}{account_sid}/Messages/{sid}/Media.json"
            },
        }
        if mode == "accepted_no_sid":
            del payload["sid"]
        return 201, json.dumps(payload).encode(), _JSON

    def _call(
        self, account_sid: str, record: dict, cfg: dict, err: Any, now: datetime
    ) -> tuple[int, bytes, str]:
        """POST Calls.json, after mode, route and auth passed."""
        to, sender = record["to"], record["from"]
        if not to:
            return 400, err(21201, "No 'To' number is specified", 400), _JSON
        if not sender:
            return 400, err(21213, "No 'From' number is specified", 400), _JSON
        if not record["twiml"] and not record["url"]:
            return 400, err(21205, "Url parameter is required", 400), _JSON
        code = cfg["sender_errors"].get(sender)
        templates = {**_SENDER_ERRORS, **_CALL_SENDER_ERRORS}
        if code is None:
            code = cfg["call_errors"].get(to)
            if code is None:
                code = 21211 if to in cfg["invalid_numbers"] else cfg["recipient_errors"].get(to)
            templates = {**_RECIPIENT_ERRORS, **_CALL_RECIPIENT_ERRORS}
        if code is not None:
            template = cfg["error_texts"].get(code, templates.get(code, "Error {code} for {to}"))
            words = template.format_map({"to": to, "from": sender, "code": code})
            return 400, err(code, words, 400), _JSON

        if cfg["mode"] == "accepted_html":
            return 201, _ACCEPTED_HTML, _HTML
        sid = "CA" + secrets.token_hex(16)
        uri = f"{_ACCOUNT_PREFIX}{account_sid}/Calls/{sid}"
        payload: dict[str, Any] = {
            "sid": sid,
            "date_created": _rfc2822(now),
            "date_updated": _rfc2822(now),
            "parent_call_sid": None,
            "account_sid": account_sid,
            "to": to,
            "to_formatted": to,
            "from": sender,
            "from_formatted": sender,
            "phone_number_sid": None,
            "status": "queued",
            "start_time": None,
            "end_time": None,
            "duration": None,
            "price": None,
            "price_unit": "USD",
            "direction": "outbound-api",
            "answered_by": None,
            "api_version": "2010-04-01",
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "trunk_sid": None,
            "uri": f"{uri}.json",
            "subresource_uris": {
                name: f"{uri}/{name.title().replace('_', '')}.json"
                for name in ("notifications", "recordings", "payments", "events")
            },
        }
        if cfg["mode"] == "accepted_no_sid":
            del payload["sid"]
        return 201, json.dumps(payload).encode(), _JSON

    def _message_list(
        self, account_sid: str, query: dict[str, list[str]], cfg: dict, err: Any
    ) -> tuple[int, bytes, str]:
        """GET Messages.json: inbound plus accepted outbound, filtered, newest first."""
        if cfg["list_down"]:  # the list alone fails: texts still go out
            return 500, err(20500, "Internal Server Error", 500), _JSON
        params = {key: values[0] for key, values in query.items()}
        ranges: dict[str, tuple[datetime, datetime]] = {}
        for key in ("DateSent", "DateSent<", "DateSent>"):
            if key in params:
                span = _date_range(params[key])
                if span is None:
                    msg = f"Invalid {key} value: {params[key]}"
                    return 400, err(20001, msg, 400), _JSON
                ranges[key] = span
        try:
            page_size = int(params.get("PageSize", "50"))
        except ValueError:
            page_size = 0
        if not 1 <= page_size <= 1000:
            msg = f"PageSize must be between 1 and 1000: {params.get('PageSize')}"
            return 400, err(20001, msg, 400), _JSON

        found = [_listed(account_sid, m, "inbound") for m in cfg["inbound"]]
        found += [_listed(account_sid, m, "outbound-api") for m in cfg["messages"]]
        kept = []
        for when, message in found:
            if "To" in params and message["to"] != params["To"]:
                continue
            if "From" in params and message["from"] != params["From"]:
                continue
            if "DateSent>" in ranges and when < ranges["DateSent>"][0]:
                continue
            if "DateSent<" in ranges and when >= ranges["DateSent<"][1]:
                continue
            if "DateSent" in ranges:
                day = ranges["DateSent"][0].replace(hour=0, minute=0, second=0)
                if not day <= when < day + timedelta(days=1):
                    continue
            kept.append((when, message))
        kept.sort(key=lambda pair: pair[0], reverse=True)
        records = [message for _, message in kept[:page_size]]

        shown = {k: v for k, v in params.items() if k not in ("PageSize", "Page", "PageToken")}
        uri = f"{_ACCOUNT_PREFIX}{account_sid}/Messages.json"
        first = f"{uri}?{urlencode({**shown, 'PageSize': page_size, 'Page': 0})}"
        page = {
            "messages": records,
            "end": max(len(records) - 1, 0),
            "first_page_uri": first,
            "next_page_uri": None,
            "page": 0,
            "page_size": page_size,
            "previous_page_uri": None,
            "start": 0,
            "uri": first,
        }
        return 200, json.dumps(page).encode(), _JSON


def _listed(account_sid: str, message: dict, direction: str) -> tuple[datetime, dict]:
    """One Message of a Messages.json list, with its date_sent (UTC) to sort by. Inbound:
    the dicts of ``inbound``; outbound-api: those of ``messages``."""
    when = message.get("date_sent") or datetime.now(UTC)
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    to = message.get("to") or _DEFAULT_SENDER
    sender = message.get("from")
    body = message.get("body") or ""
    sid = message.get("sid")
    if not sid:  # a hand-made inbound dict: a sid that stays the same on every listing
        seed = f"{sender}|{to}|{body}|{when.isoformat()}".encode()
        sid = "SM" + hashlib.md5(seed).hexdigest()
    uri = f"{_ACCOUNT_PREFIX}{account_sid}/Messages/{sid}"
    stamp = _rfc2822(when)
    payload = {
        "sid": sid,
        "account_sid": account_sid,
        "to": to,
        "from": sender,
        "messaging_service_sid": message.get("messaging_service_sid"),
        "body": body,
        "status": "received" if direction == "inbound" else "sent",
        "num_segments": str(max(1, -(-len(body) // 160))),
        "num_media": "0",
        "date_created": stamp,
        "date_updated": stamp,
        "date_sent": stamp,
        "api_version": "2010-04-01",
        "uri": f"{uri}.json",
        "error_code": None,
        "error_message": None,
        "price": None,
        "price_unit": "USD",
        "direction": direction,
        "subresource_uris": {"media": f"{uri}/Media.json"},
    }
    return when, payload


_SERVICES_PREFIX = "/v1/Services/"
_SERVICE_SENDERS = {
    "PhoneNumbers": "service_phone_numbers",
    "ShortCodes": "service_short_codes",
    "AlphaSenders": "service_alpha_senders",
}
_DEFAULT_SENDER = "+15005550006"


def _numbers_page(account_sid: str, wanted: str, numbers: dict[str, dict] | None) -> bytes:
    """IncomingPhoneNumbers.json, as Twilio lists them: PhoneNumber matches a part of a
    number. ``numbers`` None: the number asked for is the account's, SMS-capable."""
    if numbers is None:
        numbers = {wanted: {"sms": True}} if wanted.startswith("+") else {}
    digits = wanted.lstrip("+")
    uri = f"{_ACCOUNT_PREFIX}{account_sid}/IncomingPhoneNumbers.json"
    records = [
        {
            "sid": "PN" + secrets.token_hex(16),
            "account_sid": account_sid,
            "phone_number": number,
            "friendly_name": number,
            "capabilities": {"voice": True, "sms": False, "mms": False, "fax": False, **caps},
            "status": "in-use",
            "api_version": "2010-04-01",
            "uri": f"{_ACCOUNT_PREFIX}{account_sid}/IncomingPhoneNumbers/PN.json",
        }
        for number, caps in numbers.items()
        if digits in number
    ]
    page = {
        "incoming_phone_numbers": records,
        "end": max(len(records) - 1, 0),
        "first_page_uri": f"{uri}?PageSize=50&Page=0",
        "next_page_uri": None,
        "page": 0,
        "page_size": 50,
        "previous_page_uri": None,
        "start": 0,
        "uri": f"{uri}?PageSize=50&Page=0",
    }
    return json.dumps(page).encode()


def _service_page(service_sid: str, key: str, numbers: list[str]) -> bytes:
    """A Messaging v1 list (PhoneNumbers, ShortCodes, AlphaSenders) with its "meta"."""
    url = f"https://messaging.twilio.com/v1/Services/{service_sid}"
    records = [
        {
            "sid": "PN" + secrets.token_hex(16),
            "service_sid": service_sid,
            "phone_number": number,
            "country_code": "US",
            "capabilities": ["SMS"],
        }
        for number in numbers
    ]
    meta = {
        "page": 0,
        "page_size": 50,
        "first_page_url": f"{url}?PageSize=50&Page=0",
        "previous_page_url": None,
        "url": f"{url}?PageSize=50&Page=0",
        "next_page_url": None,
        "key": key,
    }
    return json.dumps({key: records, "meta": meta}).encode()


def _sid_of(body: bytes) -> str | None:
    """The sid of a 201 answer, or None when it has none (accepted_html, accepted_no_sid)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    sid = payload.get("sid") if isinstance(payload, dict) else None
    return sid if isinstance(sid, str) else None


class TwilioStandIn(_LoopbackHTTP):
    """Twilio's Messages, Calls and Accounts REST endpoints, enough for the twilio 9.x client.

    Pointing the real client here (checked against twilio 9.13.0)::

        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        client = Client(sid, token, http_client=TwilioHttpClient(timeout=2))
        client.region = client.edge = None  # see "environment={}" below
        client.api.base_url = standin.url  # "http://127.0.0.1:PORT", no path
        client.messages.create(to=..., from_=..., body=...)
        client.messages.list(to=..., date_sent_after=...)  # inbound + accepted outbound
        client.calls.create(to=..., from_=..., twiml="<Response>...</Response>")
        client.api.v2010.accounts(sid).fetch()  # credential check, sends no SMS

    Why ``client.api.base_url`` works: ``client.api`` is created on first access and cached
    on the client, and ``Domain.absolute_url()`` reads ``self.base_url`` on every request.
    ``client.messages``, ``client.calls`` and ``client.api.v2010.accounts(...)`` all go
    through that one Domain object, so the assignment redirects both, and it can be changed at any time.
    Other domains (``client.messaging``, ``client.lookups``, ...) keep their real URLs.

    ``environment={}`` does NOT isolate the client from ``os.environ``: the constructor does
    ``environment = environment or os.environ`` and an empty dict is falsy. So a real
    ``TWILIO_REGION``/``TWILIO_EDGE`` is still read, and ``get_hostname()`` then rewrites
    the netloc: ``127.0.0.1:PORT`` with TWILIO_REGION=au1 becomes ``127.au1.0.1:PORT``
    (a DNS error). Set ``client.region = client.edge = None`` after construction, or pass a
    non-empty mapping such as ``environment={"TWILIO_REGION": ""}``.

    Recorded (under the lock): ``requests`` is (method, path) for every request;
    ``attempts`` has one dict per POST to Messages.json with keys to, from,
    messaging_service_sid, body, account_sid, auth_ok and status (the HTTP status sent);
    ``messages`` holds only the accepted (201) ones, with ``sid`` instead of ``status``.
    Twilio accepted those too, so the "accepted_html" and "accepted_no_sid" answers are
    recorded in ``messages``, with ``sid`` None. The Messages list shows each with the
    time it was accepted as its date_sent (kept aside, not a key of the dict).
    ``call_attempts`` has one dict per POST to Calls.json with keys to, from, twiml, url,
    account_sid, auth_ok and status; ``calls`` holds the accepted (201) ones, with ``sid``
    ("CA" + 32 hex; None for "accepted_html"/"accepted_no_sid") instead of ``status``.
    ``listings`` has one dict per GET of Messages.json (whatever its answer): the query
    parameters as the SDK sent them, first value of each, e.g. {"To": "+15005550006",
    "DateSent>": "2026-12-02T02:00:00Z", "PageSize": "50"} (no key for an unset filter).

    Listing messages (GET Messages.json): the messages of ``inbound`` (direction
    "inbound", status "received") plus those of ``messages`` (direction "outbound-api",
    status "sent", date_sent when accepted), in Twilio's list shape ({"messages": [...],
    "page": 0, "page_size": N, "next_page_uri": null, ...}: one page, so the SDK reads
    once per list() call), newest date_sent first. Filters, as Twilio's: ``To`` and
    ``From`` (exact), ``DateSent>`` (on or after), ``DateSent<`` (on or before),
    ``DateSent`` (that UTC day), ``PageSize`` (1..1000, default 50; the newest N). A date
    value is "YYYY-MM-DD" (the UTC day: ``DateSent>`` from its 00:00, ``DateSent<``
    through its end) or "YYYY-MM-DDTHH:MM:SSZ" (that second, inclusive); anything else,
    or a bad PageSize, is 400/20001 (the stand-in's choice). Dates are sent as Twilio
    does, RFC 2822 in UTC ("Wed, 02 Dec 2026 02:10:00 +0000"): the SDK's
    ``rfc2822_datetime`` ignores the zone and labels the result UTC.

    Placing a call (POST Calls.json, form To, From, Twiml or Url): 201 with a Twilio Call
    (status "queued", direction "outbound-api"). Missing To is 400/21201 "No 'To' number
    is specified", missing From 400/21213 "No 'From' number is specified", neither Twiml
    nor Url 400/21205 "Url parameter is required"; then ``sender_errors`` (From), then
    ``call_errors``, ``invalid_numbers`` (21211) and ``recipient_errors`` (To), all
    status 400, worded as for messages plus Twilio-like wording for 13223, 13224, 13227,
    21215, 21216, 21219 and (From) 21210 (see _CALL_RECIPIENT_ERRORS).

    Settings:

    - ``auth_token``: Basic auth must be (the path's AccountSid, auth_token), else 401/20003.
    - ``invalid_numbers``: a To in this set gets 400/21211.
    - ``recipient_errors``: To -> any Twilio code, sent with status 400 (21610, 21614, ...).
      Twilio-like wording for 21211, 21265, 21408, 21608, 21610, 21612, 21614, 21617 and
      21635 (see _RECIPIENT_ERRORS); any other code says "Error {code} for {to}".
    - ``sender_errors``: From (or MessagingServiceSid) -> Twilio code, status 400, checked
      before the recipient: {"+15005550009": 21606} answers every message from that number
      with "The From phone number +15005550009 is not a valid, SMS-capable inbound phone
      number or short code for your account." (Twilio's words). Twilio-like wording
      for 21212, 21659, 21660, 21703 and 21704; others say "Error {code} for {to}".
    - ``error_texts``: code -> message template, overriding the wording above for
      recipient and sender errors (placeholders {to}, {from}, {code}); "" sends an empty
      message. For answers that echo something they should not, or say nothing.
    - ``mode``: "ok" | "error500" (500/20500) | "error429" (429/20429) | "html" (502 HTML
      page; the client raises TwilioRestException with code == status == 502) | "slow"
      (wait ``delay_seconds``, default 10, then answer normally; stop() ends the wait).
      These modes apply to every route. Two more apply only to a message or call that
      would be accepted (every check passed) and change only the 201 answer: "accepted_html" (201
      with an HTML page: the SDK raises ValueError) and "accepted_no_sid" (201 JSON
      without "sid": the SDK returns a message whose sid is None).
    - ``slow_numbers``: To -> seconds. A message to that number that would be accepted is
      recorded in ``attempts`` (status 201) and ``messages`` at once, as Twilio queues it,
      and its 201 answer is sent only after that many seconds; stop() ends the wait, like
      the "slow" mode, and then no answer is sent. Other numbers answer at once, so with
      concurrent sends one recipient's answer can be made late: a client killed, or timed
      out, during the wait never learns that Twilio accepted that text. Calls to that
      number are answered late the same way.
    - ``call_errors``: To -> Twilio code, status 400, for calls only (messages to that
      number still go): {"+15005550001": 13224} answers "The phone number you are
      attempting to call, +15005550001, is not valid."
    - ``list_down``: True answers every GET Messages.json with 500/20500, while texts
      and calls still go through: the replies cannot be read, the alerts can be sent.
    - ``inbound``: the received messages that GET Messages.json lists, dicts with keys
      sid, from, to, body and date_sent (a datetime; naive is UTC), as ``add_inbound``
      makes them; a dict without sid gets one derived from its contents, to defaults to
      +15005550006.
    - ``problem_json``: True sends every error in the RFC 9457 shape
      (type/title/status/code), which twilio >= 9.10 raises as ``TwilioServiceException``,
      NOT a subclass of ``TwilioRestException`` (both derive from ``TwilioException``).

    - ``account_status``: the Account's ``status``: "active" (default), "suspended",
      "closed".
    - ``phone_numbers``: the account's IncomingPhoneNumbers, number -> capabilities
      ({"+15005550006": {"sms": True}}), listed by GET IncomingPhoneNumbers.json with
      Twilio's ``PhoneNumber`` filter (a part of a number matches). None (the default):
      whatever number is asked for is the account's, SMS-capable.
    - ``messaging_services``: Messaging v1 (``client.messaging``, whose base_url must be
      pointed here too): service SID -> its phone numbers, served as GET
      /v1/Services/{sid} and /v1/Services/{sid}/PhoneNumbers (ShortCodes and
      AlphaSenders list nothing); an unknown SID is 404/20404. None (the default): any
      MG... SID exists, with the one number +15005550006. Basic auth as the account.

    Order of checks for a message: mode, route (404/20404), auth, then To/From/Body presence
    (21604/21603/21602), then sender errors, then recipient errors, then 201 (after the
    ``slow_numbers`` wait, if any).
    """

    handler_class = _TwilioHandler

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.auth_token: str = "test-token"
        self.invalid_numbers: set[str] = set()
        self.recipient_errors: dict[str, int] = {}
        self.sender_errors: dict[str, int] = {}
        self.error_texts: dict[int, str] = {}
        self.mode: str = "ok"
        self.delay_seconds: float = 10.0
        self.slow_numbers: dict[str, float] = {}
        self.problem_json: bool = False
        self.account_status: str = "active"
        self.phone_numbers: dict[str, dict] | None = None
        self.messaging_services: dict[str, list[str]] | None = None
        self.call_errors: dict[str, int] = {}
        self.inbound: list[dict] = []
        self.messages: list[dict] = []
        self.attempts: list[dict] = []
        self.listings: list[dict] = []
        self.list_down: bool = False
        self.calls: list[dict] = []
        self.call_attempts: list[dict] = []
        self._accepted_at: dict[int, tuple[dict, datetime]] = {}
        if settings:
            self.configure(**settings)

    def __enter__(self) -> TwilioStandIn:
        self.start()
        return self

    def start(self) -> TwilioStandIn:
        super().start()
        return self

    def _snapshot(self) -> dict:
        with self._lock:
            return {
                "auth_token": self.auth_token,
                "invalid_numbers": set(self.invalid_numbers),
                "recipient_errors": dict(self.recipient_errors),
                "sender_errors": dict(self.sender_errors),
                "error_texts": dict(self.error_texts),
                "mode": self.mode,
                "delay_seconds": self.delay_seconds,
                "slow_numbers": dict(self.slow_numbers),
                "problem_json": self.problem_json,
                "account_status": self.account_status,
                "phone_numbers": (
                    None
                    if self.phone_numbers is None
                    else {k: dict(v) for k, v in self.phone_numbers.items()}
                ),
                "messaging_services": (
                    None
                    if self.messaging_services is None
                    else {k: list(v) for k, v in self.messaging_services.items()}
                ),
                "call_errors": dict(self.call_errors),
                "inbound": [dict(m) for m in self.inbound],
                "list_down": self.list_down,
                "messages": [{**m, "date_sent": self._sent_at(m)} for m in self.messages],
            }

    def _sent_at(self, message: dict) -> datetime | None:
        """When an entry of ``messages`` was accepted (None: put there by hand)."""
        entry, when = self._accepted_at.get(id(message), (None, None))
        return when if entry is message else None

    def add_inbound(
        self, from_: str, body: str, date_sent: datetime, to: str = _DEFAULT_SENDER
    ) -> dict:
        """Append a message received from ``from_`` (sid "SM" + 32 hex) and return it."""
        message = {
            "sid": "SM" + secrets.token_hex(16),
            "from": from_,
            "to": to,
            "body": body,
            "date_sent": date_sent,
        }
        with self._lock:
            self.inbound.append(message)
        return message

    def wait_for_messages(self, count: int, timeout: float = 2.0) -> list[dict]:
        """Poll until at least ``count`` messages were accepted (or timeout); return a copy."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.messages) >= count or time.monotonic() >= deadline:
                    return list(self.messages)
            time.sleep(0.01)

    def wait_for_calls(self, count: int, timeout: float = 2.0) -> list[dict]:
        """Poll until at least ``count`` calls were accepted (or timeout); return a copy."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.calls) >= count or time.monotonic() >= deadline:
                    return list(self.calls)
            time.sleep(0.01)
