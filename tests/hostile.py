"""Hostile servers on loopback: real sockets that misbehave the way an attacker
or a sick network does. Used by the tests and by the benchmark.

    with HostileServer(drip(b"HTTP/1.1 200 OK\\r\\n", every=1.0)) as server:
        ... server.url ...

A behaviour is a function `(conn, stop)` run in its own thread for each
accepted connection; `stop` is a threading.Event set when the server stops.
The server reads the request first (up to the blank line) unless the
behaviour is marked `before_request`.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import socket
import threading
import time
from collections.abc import Callable

Behaviour = Callable[[socket.socket, threading.Event], None]


class HostileServer:
    def __init__(self, behaviour: Behaviour, read_request: bool = True) -> None:
        self.behaviour = behaviour
        self.read_request = read_request
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.connections = 0
        self.request_lines: list[str] = []  # "POST /2010-04-01/...", as read
        self.port = 0
        self.url = ""

    def __enter__(self) -> HostileServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(256)
        listener.settimeout(0.05)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            request = _read_request(conn) if self.read_request else b""
            if request:
                line = request.split(b"\r\n", 1)[0].decode("latin-1")
                with self._lock:
                    self.request_lines.append(" ".join(line.split()[:2]))
            if getattr(self.behaviour, "takes_request", False):
                self.behaviour(conn, self._stop, request)  # type: ignore[call-arg]
            else:
                self.behaviour(conn, self._stop)


def _read_request(conn: socket.socket) -> bytes:
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


# --- behaviours -------------------------------------------------------------------------


def drip(data: bytes, every: float = 1.0) -> Behaviour:
    """Send `data` one byte at a time, `every` seconds apart, then hang."""

    def behaviour(conn: socket.socket, stop: threading.Event) -> None:
        for byte in data:
            if stop.wait(every):
                return
            conn.sendall(bytes([byte]))
        stop.wait()

    return behaviour


def continue_flood(conn: socket.socket, stop: threading.Event) -> None:
    """`100 Continue` interim answers as fast as the socket takes them, forever."""
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" * 64
    while not stop.is_set():
        conn.sendall(interim)


def header_flood(conn: socket.socket, stop: threading.Event) -> None:
    """A status line, then headers without end."""
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    while not stop.is_set():
        conn.sendall(b"X-Filler: " + b"a" * 60 + b"\r\n")


def answer(
    body: bytes,
    status: str = "200 OK",
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Behaviour:
    """One whole HTTP answer with this body, then close."""

    def behaviour(conn: socket.socket, stop: threading.Event) -> None:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
        )
        conn.sendall(head.encode() + body)
        conn.shutdown(socket.SHUT_WR)
        stop.wait(1)

    return behaviour


def gzip_bomb(size: int, status: str = "201 Created") -> Behaviour:
    """A gzip body of `size` zero bytes (1 GiB packs into about 1 MiB)."""
    compressed = gzip_of_zeros(size)
    return answer(compressed, status, headers={"Content-Encoding": "gzip"})


def gzip_of_zeros(size: int) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9) as compressor:
        block = b"\0" * (1024 * 1024)
        whole, rest = divmod(size, len(block))
        for _ in range(whole):
            compressor.write(block)
        compressor.write(block[:rest])
    return buffer.getvalue()


def nodeos_error(message: str, status: str = "503 Service Unavailable") -> Behaviour:
    """A JSON error envelope whose message is `message`, raw (surrogates and all)."""
    body = '{"code": 503, "message": ' + json.dumps(message) + "}"
    return answer(body.encode(), status)


def get_info_with(**fields: object) -> Behaviour:
    """A healthy-looking get_info with these fields replaced (head time is now)."""
    now = time.gmtime()
    info: dict[str, object] = {
        "server_version": "d1bc8d3",
        "chain_id": "aca376f206b8fc25a6ed44dbdc66547c36c6c33e3a119ffbeaef943642f0e906",
        "head_block_num": 330000000,
        "last_irreversible_block_num": 329999670,
        "head_block_id": "13ab6d80" + "0" * 56,
        "head_block_time": time.strftime("%Y-%m-%dT%H:%M:%S.000", now),
        "head_block_producer": "eosnationftw",
        "server_version_string": "v4.0.4",
    }
    info.update(fields)
    # ensure_ascii keeps lone surrogates as \ud800 escapes, as a hostile server would send them.
    healthy = answer(json.dumps(info).encode())
    no_plugin = answer(
        b'{"code":404,"message":"Not Found","error":{"details":[{"message":"Unknown Endpoint"}]}}',
        "404 Not Found",
    )

    def behaviour(conn: socket.socket, stop: threading.Event, request: bytes) -> None:
        # db_size_api_plugin "not loaded", as on most nodes: only get_info is hostile.
        (healthy if b"/v1/chain/get_info" in request else no_plugin)(conn, stop)

    behaviour.takes_request = True  # type: ignore[attr-defined]
    return behaviour
