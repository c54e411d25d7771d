"""check-status serve under attack: a nodeos that drips, floods or hangs, a DNS
that never answers, a slowloris, heads that never end or never stop, a FIFO
for a state file. Real sockets on loopback; every bound is checked only as
"answered at all within the client's timeout" (5 s), never to the millisecond.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from check_status.serve import HealthServer
from tests.hostile import HostileServer, continue_flood, drip
from tests.standins import HangingServer

CLIENT_TIMEOUT = 5  # seconds: "answered at all", with room for a loaded machine

Start = Callable[..., tuple[HealthServer, str]]


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; a timeout fails the test."""
    sock.settimeout(CLIENT_TIMEOUT)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


# --- a nodeos that never finishes its answer ------------------------------------------


@contextlib.contextmanager
def sick_nodeos(kind: str) -> Iterator[tuple[str, Callable[[], int]]]:
    """(url, how many connections it has had) of a nodeos that never answers in time."""
    if kind == "hanging":
        with HangingServer() as hanging:
            yield hanging.url, lambda: hanging.connection_count
        return
    behaviour = drip(b"HTTP/1.1 200 OK\r\n", every=0.5) if kind == "drip" else continue_flood
    with HostileServer(behaviour) as hostile:
        yield hostile.url, lambda: hostile.connections


@pytest.mark.parametrize("kind", ["drip", "continue_flood", "hanging"])
def test_health_is_bounded_and_probes_once_when_nodeos_never_answers(serve, kind):
    """Dripping its status line or flooding `100 Continue` would keep a plain
    http.client reading for ever; a listener that never speaks costs the whole
    timeout. Every /health answers within the client's timeout, concurrent
    ones share one probe, and /status does not wait for it."""
    with sick_nodeos(kind) as (url, connections):
        server, base = serve(NODEOS_URL=url, HTTP_TIMEOUT_SECONDS=1, HEALTH_CACHE_SECONDS=0)

        def checks(count: int) -> list[requests.Response]:
            with ThreadPoolExecutor(max_workers=count) as pool:
                return list(
                    pool.map(
                        lambda _: requests.get(base + "/health", timeout=CLIENT_TIMEOUT),
                        range(count),
                    )
                )

        answers = checks(10)
        assert [a.status_code for a in answers] == [503] * 10
        assert all("timeout after 1s" in a.text for a in answers), answers[0].text
        assert requests.get(base + "/status", timeout=CLIENT_TIMEOUT).status_code == 200
        assert server.health.probes == 1
        assert connections() == 1  # nodeos's own count: one probe reached it
        # The verdict is not cached (HEALTH_CACHE_SECONDS=0): the next burst
        # costs one more probe, not one each, and nothing is left running.
        answers = checks(5)
        assert [a.status_code for a in answers] == [503] * 5
        assert server.health.probes == 2 and connections() == 2


def _dns_query_types(packets: list[bytes]) -> list[int]:
    """QTYPE of each DNS query (A = 1, AAAA = 28), past the header and QNAME."""
    types = []
    for packet in packets:
        offset = 12
        while offset < len(packet) and packet[offset]:
            offset += packet[offset] + 1
        if offset + 3 <= len(packet):
            types.append(struct.unpack("!H", packet[offset + 1 : offset + 3])[0])
    return types


def _can_bind_resolv_conf() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    done = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "mount",
            "--bind",
            "/dev/null",
            "/etc/resolv.conf",
        ],
        capture_output=True,
    )
    return done.returncode == 0


def test_a_dns_lookup_that_never_returns_costs_one_thread_and_does_not_block_sigterm(
    write_env, tmp_path
):
    """serve runs in a mount namespace whose resolv.conf points at a UDP socket
    that reads queries and never answers: getaddrinfo blocks its thread for
    30 s. /health answers the timeout at once, no second lookup starts, /status
    answers, and SIGTERM stops the process at once despite the stuck thread."""
    if not _can_bind_resolv_conf():
        pytest.skip("needs root and unshare: serve gets a resolv.conf whose server never answers")
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    nameserver = "127.83.71.5"  # all of 127/8 is loopback: no clash with a real resolver
    try:
        sink.bind((nameserver, 53))
    except OSError as error:
        sink.close()
        pytest.skip(f"cannot bind {nameserver}:53: {error}")
    packets: list[bytes] = []

    def collect() -> None:
        with contextlib.suppress(OSError):
            while True:
                packets.append(sink.recv(4096))

    threading.Thread(target=collect, daemon=True).start()
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {nameserver}\noptions timeout:30 attempts:1\n")
    env_file = write_env(
        NODEOS_URL="http://nodeos.never-resolves.test:8888",
        HTTP_TIMEOUT_SECONDS=1,
        HEALTH_CACHE_SECONDS=0,
    )
    with socket.socket() as probe_port:
        probe_port.bind(("127.0.0.1", 0))
        port = probe_port.getsockname()[1]
    process = subprocess.Popen(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            'mount --bind "$0" /etc/resolv.conf && exec "$@"',
            str(resolv),
            sys.executable,
            "-m",
            "check_status",
            "serve",
            "--env-file",
            str(env_file),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        assert process.stderr.readline().startswith("check-status serve: listening")
        base = f"http://127.0.0.1:{port}"
        for _ in range(4):
            answer = requests.get(base + "/health", timeout=CLIENT_TIMEOUT)
            assert answer.status_code == 503
            assert answer.text == "timeout after 1s (probe still running)\n"
        assert requests.get(base + "/status", timeout=CLIENT_TIMEOUT).status_code == 200
        types = _dns_query_types(packets)
        # One lookup asks once for A and maybe once for AAAA; a second would repeat them.
        assert types and sorted(types) == sorted(set(types)), types
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=CLIENT_TIMEOUT) == 0
        assert process.stderr.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        sink.close()


# --- slow and oversized clients -----------------------------------------------------------


def server_side_sockets(port: int) -> int:
    """Sockets of this process connected on `port` (the in-process server's),
    counted by the kernel: /proc/self/fd against /proc/net/tcp. Connections
    still waiting in the listen queue are no descriptor of ours, so not counted."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] != "0A" and fields[9] in inodes:  # 0A: LISTEN
            count += 1
    return count


def test_a_slowloris_neither_starves_health_nor_passes_the_connection_cap(serve, nodeos):
    cap = 40
    # A long head deadline, so that only the cap closes anything here.
    server, base = serve(NODEOS_URL=nodeos.url, max_connections=cap, head_deadline_seconds=60)
    port = server.server_address[1]
    assert requests.get(base + "/health", timeout=CLIENT_TIMEOUT).status_code == 200
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, server_side_sockets(port))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    slow: list[socket.socket] = []
    try:
        for _ in range(300):  # a request's first byte each, and then nothing
            sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
            sock.sendall(b"G")
            slow.append(sock)
        for _ in range(3):  # fresh checks while the slowloris holds on
            answer = requests.get(base + "/health", timeout=CLIENT_TIMEOUT)
            assert answer.status_code == 200, answer.text
        # The server dropped the slow ones to make room, oldest first...
        for sock in slow[:200]:
            assert read_until_closed(sock) == b""
        for sock in slow[-30:]:  # ...and the newest are still waiting for their turn
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
    finally:
        stop.set()
        watcher.join()
        for sock in slow:
            sock.close()
    assert server.dropped_at_cap >= 200
    # ...and never held more than the cap, by its own count and by the kernel's.
    assert server.peak_connections <= cap
    assert 0 < peak <= cap


def test_a_head_that_never_ends_is_dropped_at_the_deadline(serve, nodeos):
    server, _base = serve(NODEOS_URL=nodeos.url, head_deadline_seconds=0.5)
    with socket.create_connection(server.server_address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        assert read_until_closed(sock) == b""
    assert server.timed_out_heads == 1


def test_a_head_that_keeps_trickling_is_dropped_too(serve, nodeos):
    """Bytes keep coming, so an idle timeout would never fire: the deadline
    counts from the connection, not from the last byte."""
    server, _base = serve(NODEOS_URL=nodeos.url, head_deadline_seconds=0.5)
    with socket.create_connection(server.server_address, timeout=CLIENT_TIMEOUT) as sock:
        sock.settimeout(0.1)
        started = time.monotonic()
        closed = False
        while not closed and time.monotonic() - started < CLIENT_TIMEOUT:
            try:
                sock.sendall(b"X")
                closed = sock.recv(1) == b""
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True  # closed with our last bytes unread: a reset
    assert closed
    assert server.timed_out_heads == 1


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", b"431"),
        # Over the cap before its end: answered at once, not at the deadline.
        (b"GET /health HTTP/1.1\r\n" + b"X-Filler: aaaaaaaa\r\n" * 600, b"431"),
        (b"GET /" + b"a" * 9000, b"400"),  # a request line that never ends
    ],
    ids=["big-header", "endless-headers", "endless-request-line"],
)
def test_a_head_over_8_kib_is_refused_and_closed(serve, nodeos, request_bytes, status):
    server, base = serve(NODEOS_URL=nodeos.url, head_deadline_seconds=30)
    with socket.create_connection(server.server_address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(request_bytes)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.0 " + status + b" "), answer[:200]
    assert b"Connection: close\r\n" in answer
    assert server.timed_out_heads == 0
    assert requests.get(base + "/health", timeout=CLIENT_TIMEOUT).status_code == 200


def test_every_answer_closes_the_connection_even_when_keep_alive_is_asked(serve, nodeos):
    server, _base = serve(NODEOS_URL=nodeos.url)
    with socket.create_connection(server.server_address, timeout=CLIENT_TIMEOUT) as sock:
        one = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
        sock.sendall(one + one)  # pipelined: only the first is answered
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.0 200 OK\r\n")
    assert answer.count(b"HTTP/1.0 ") == 1
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    for header in (b"connection: close", b"cache-control: no-store", b"content-length: "):
        assert header in head


# --- the state file ---------------------------------------------------------------------


def test_status_answers_when_the_state_file_is_a_fifo(serve, nodeos, state_file):
    """Opening a FIFO for reading blocks until someone writes: /status must not."""
    state_file.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(state_file)
    try:
        _server, base = serve(NODEOS_URL=nodeos.url, HTTP_TIMEOUT_SECONDS=1)
        for _ in range(3):
            answer = requests.get(base + "/status", timeout=CLIENT_TIMEOUT)
            document = answer.json()
            if answer.status_code == 503:
                assert "timeout after 1s" in document["message"]
            else:  # state.py refused the FIFO without opening it
                assert answer.status_code == 200 and document.get("problem"), document
        assert requests.get(base + "/health", timeout=CLIENT_TIMEOUT).status_code == 200
    finally:
        # Free the reader stuck in open(), if any: a writer that comes and goes.
        with contextlib.suppress(OSError):
            os.close(os.open(state_file, os.O_WRONLY | os.O_NONBLOCK))


# --- the process: limits, signals, and clients that misbehave -----------------------------


def start_serve(env_file: Path, soft_nofile: int | None = None) -> tuple[subprocess.Popen, int]:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    command = [sys.executable, "-m", "check_status", "serve", "--env-file", str(env_file)]
    command += ["--listen", f"127.0.0.1:{port}"]
    if soft_nofile is not None:  # the shell's ulimit: preexec_fn is unsafe with threads
        command = ["/bin/sh", "-c", 'ulimit -Sn "$0" && exec "$@"', str(soft_nofile), *command]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    assert process.stderr.readline().startswith("check-status serve: listening")
    return process, port


def test_serve_raises_its_descriptor_limit_to_the_hard_limit(write_env, nodeos):
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 256:
        pytest.skip("the hard limit is too low to see a raise")
    process, _port = start_serve(write_env(NODEOS_URL=nodeos.url), soft_nofile=256)
    try:
        limits = Path(f"/proc/{process.pid}/limits").read_text()
        row = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert row.split()[3:5] == [str(hard), str(hard)], row
    finally:
        process.terminate()
        process.wait(timeout=CLIENT_TIMEOUT)


def misbehave(port: int) -> None:
    """Clients that hang up, reset, send garbage or too much, mid-request or
    while their answer is being prepared."""
    address = ("127.0.0.1", port)
    reset = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset
    for request in (
        b"GET /health HTTP/1.1\r\n\r\n",  # waits on a probe of the dripping nodeos; resets
        b"GET /status HTTP/1.1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHo",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),  # a TLS hello
        b"GET /" + b"a" * 20_000,
        os.urandom(4096),
        b"",
    ):
        sock = socket.create_connection(address, timeout=CLIENT_TIMEOUT)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset)
        with contextlib.suppress(OSError):
            sock.sendall(request)
        sock.close()
    with socket.create_connection(address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)  # half-closed: still gets its answer
        assert read_until_closed(sock).startswith(b"HTTP/1.0 503 ")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "ctrl-C"])
def test_misbehaving_clients_reach_no_stderr_and_a_signal_stops_serve_cleanly(write_env, stop):
    with HostileServer(drip(b"HTTP/1.1 200 OK\r\n", every=1.0)) as hostile:
        # No cache: the clients that reset wait for a probe of their own.
        env_file = write_env(NODEOS_URL=hostile.url, HTTP_TIMEOUT_SECONDS=1, HEALTH_CACHE_SECONDS=0)
        process, port = start_serve(env_file)
        try:
            answer = requests.get(f"http://127.0.0.1:{port}/health", timeout=CLIENT_TIMEOUT)
            assert answer.status_code == 503 and "timeout after 1s" in answer.text
            misbehave(port)
            time.sleep(1.6)  # the reset clients' answers are due and find them gone
            status = requests.get(f"http://127.0.0.1:{port}/status", timeout=CLIENT_TIMEOUT)
            assert status.status_code == 200 and json.loads(status.text)["node"] == "eu2"
            process.send_signal(stop)
            assert process.wait(timeout=CLIENT_TIMEOUT) == 0
            assert process.stderr is not None
            assert process.stderr.read() == ""
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
