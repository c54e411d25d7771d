"""SHELL: `check-status serve`, a small HTTP server for load balancers and peers.

    GET|HEAD /health   200 while this node can serve correct data right now, else 503
    GET      /status   JSON from the state file: last run, checks, incidents

Why /health exists: HAProxy's bare `option httpchk` sends `OPTIONS /`, which
nodeos always answers with 200, and a plain get_info check passes on a node
whose head froze an hour ago. /health answers 200 only when nodeos answers,
its head is not CRITICAL (stale or stalled) and its chain id is right; so the
load balancer takes a broken node out by itself, and puts it back once it
has recovered.

A burst of health checks from several load balancers costs one get_info:
verdicts are reused for HEALTH_CACHE_SECONDS, and concurrent requests share
the one probe in flight (single flight). Every probe is bounded by the HTTP
timeout, so a hung nodeos cannot hang the server.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from check_status.checks.chain_id import judge_chain_id
from check_status.checks.head_block import judge_head_block
from check_status.checks.nodeos import judge_nodeos
from check_status.config import Config
from check_status.model import CheckResult, Status, utc_now
from check_status.probes.nodeos import fetch_chain_info

DEFAULT_LISTEN = "127.0.0.1:8899"


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


class HealthProbe:
    """Single-flight, cached health verdicts. Keeps head-block memory between probes,
    so a head that stops moving is caught here too, not only a stale one."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._verdict: HealthVerdict | None = None
        self._probes_done = 0  # lets a request that waited know a probe ended meanwhile
        self._in_flight = False
        self._memory: dict[str, Any] | None = None
        self.probes = 0  # how many times nodeos was asked: the single-flight test reads it

    def verdict(self) -> HealthVerdict:
        waited_since: int | None = None
        with self._lock:
            while True:
                fresh = self._verdict is not None and (
                    time.monotonic() - self._verdict.checked_at < self.config.health_cache_seconds
                )
                # A request that waited for the probe in flight takes its verdict,
                # however short the cache: otherwise, with HEALTH_CACHE_SECONDS=0,
                # 50 waiting requests would each start a probe of their own.
                shared = waited_since is not None and self._probes_done > waited_since
                if fresh or shared:
                    assert self._verdict is not None
                    return self._verdict
                if not self._in_flight:
                    self._in_flight = True
                    break
                if waited_since is None:
                    waited_since = self._probes_done
                self._done.wait()
        try:
            verdict = self._probe()
        except Exception as error:  # a bug must not leave waiters hanging
            verdict = HealthVerdict(
                False, f"UNKNOWN health probe failed: {type(error).__name__}", time.monotonic()
            )
        with self._lock:
            self._verdict = verdict
            self._probes_done += 1
            self._in_flight = False
            self._done.notify_all()
        return verdict

    def _probe(self) -> HealthVerdict:
        self.probes += 1
        info = fetch_chain_info(self.config.nodeos_url, self.config.http_timeout_seconds)
        now = utc_now()
        head, self._memory = judge_head_block(info, self._memory, now, self.config)
        results = [judge_nodeos(info, self.config.nodeos_url), head]
        if self.config.expected_chain_id:
            results.append(judge_chain_id(info, self.config.expected_chain_id))
        healthy, text = judge_health(results)
        return HealthVerdict(healthy, f"{text}\n", time.monotonic())


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer
    server_version = "check-status"
    sys_version = ""
    # A client that opens a connection and sends nothing must not hold a thread forever.
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a health check every 2 s from each balancer would flood the journal

    def do_HEAD(self) -> None:
        self._route(send_body=False)

    def do_GET(self) -> None:
        self._route(send_body=True)

    def _bad_method(self) -> None:
        self._reply(400, "text/plain", b"only GET and HEAD are served\n", True)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _bad_method

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, PROPFIND, FOO) is a bad request too, not a 501.
        if name.startswith("do_"):
            return self._bad_method
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # What the standard library refuses before we see the request (a 70 kB
        # path: 414, too many headers: 431, HTTP/2.0: 505) is a bad request.
        super().send_error(400 if code != 404 else code, message, explain)

    def _route(self, send_body: bool) -> None:
        path = urlsplit(self.path).path
        if path == "/health":
            verdict = self.server.health.verdict()
            status = 200 if verdict.healthy else 503
            self._reply(status, "text/plain; charset=utf-8", verdict.text.encode(), send_body)
        elif path == "/status":
            body = json.dumps(self.server.status_document(), indent=1).encode() + b"\n"
            self._reply(200, "application/json", body, send_body)
        else:
            self._reply(404, "text/plain", b"not found: try /health or /status\n", send_body)

    def _reply(self, status: int, content_type: str, body: bytes, send_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)


class HealthServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a burst of checks from several
    # balancers would overflow it, and each dropped SYN costs a 1 s retransmit.
    request_queue_size = 128

    def __init__(self, config: Config, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.config = config
        self.health = HealthProbe(config)

    def status_document(self) -> dict[str, Any]:
        from check_status import status_view
        from check_status.state import StateStore

        state, problem = StateStore(
            self.config.state_file, self.config.state_fallback_dir
        ).read_only()
        # Peers read this page over the network: operators' numbers stay masked.
        document = status_view.build(state, self.config, utc_now(), mask_numbers=True)
        if problem:
            document["problem"] = problem
        return document

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-answer is not worth a traceback


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT such as 127.0.0.1:8899")
    return host.strip("[]") or "127.0.0.1", int(port)
