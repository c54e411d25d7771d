"""Benchmark `check-status serve` under a slowloris, as HAProxy sees it.

    .venv/bin/python benchmarks/serve_slowloris.py        (starts its own nodeos stand-in)

2,000 connections each send one byte of a request every 4 s, and reconnect
as soon as the server drops them (a separate process, so that the attack's
own CPU is not counted and does not slow the measuring thread). Meanwhile a
fresh connection asks for /health once a second for 20 s, the way HAProxy's
`option httpchk` does, and the server's CPU is read from /proc/PID/stat.

benchmarks/bench.py calls `serve_under_slowloris(script, env)` for its table.
"""

from __future__ import annotations

import heapq
import json
import os
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CONNECTIONS = 2000
BYTE_EVERY_SECONDS = 4.0
CHECKS = 20  # one a second
CHECK_TIMEOUT_SECONDS = 5.0
# Long enough for the drops and reconnects to reach their steady state: one
# byte period, two head deadlines of the new server.
WARMUP_SECONDS = 5.0
TARGET_SECONDS = 1.0
TARGET_CORES = 0.5
# What HAProxy sends for `option httpchk GET /health`: the whole check at once.
CHECK_REQUEST = b"GET /health HTTP/1.0\r\n\r\n"
# systemd starts a service with a soft limit of 1024 descriptors, the hard one
# (524288) left for the service to raise; 0 here means "the hard limit we have".
SYSTEMD_NOFILE = (1024, 0)
# A request head that never ends: the attack sends it a byte at a time.
SLOW_REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: a\r\n" * 10_000


def serve_under_slowloris(
    script: str, env: dict[str, str], nofile: tuple[int, int] | None = SYSTEMD_NOFILE
) -> tuple[str, str, str, str, str]:
    """(measure, result, ratio, target, met) for bench.py's table.

    `env` must point NODEOS_URL at a healthy nodeos (or stand-in). serve starts
    with the RLIMIT_NOFILE `nofile` (soft, hard; a hard of 0 keeps ours), by
    default systemd's for a service, or with ours when None."""
    port = _free_port()
    command = [script, "serve", "--listen", f"127.0.0.1:{port}"]
    limits = None
    if nofile is not None:
        _soft, our_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limits = (nofile[0], nofile[1] or our_hard)
        # Through the shell, not preexec_fn: that is unsafe in a process with
        # threads (the caller's nodeos stand-in).
        # (The soft limit first: the hard one may not go below it.)
        shell = 'ulimit -Sn "$1" && ulimit -Hn "$0" && shift && exec "$@"'
        command = ["/bin/sh", "-c", shell, str(limits[1]), str(limits[0]), *command]

    # The stand-in's head number never moves; without this, serve would call it
    # stalled (HEAD_STALL_SECONDS, 30 s) partway through and answer 503.
    env = dict(env, HEAD_STALL_SECONDS="86400")
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, env=env, stderr=stderr)
        attack = None
        try:
            _wait_until_serving(port)
            duration = WARMUP_SECONDS + CHECKS + 2
            attack = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--slowloris",
                    str(port),
                    str(CONNECTIONS),
                    str(duration),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert attack.stdout is not None
            attack.stdout.readline()  # "ready": every connection was opened once
            time.sleep(WARMUP_SECONDS)
            ticks_before, started = _cpu_ticks(process.pid), time.monotonic()
            times, codes = [], []
            for i in range(CHECKS):
                pause = started + i - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                took, code = _check(port)
                times.append(took)
                codes.append(code)
            cores = (
                (_cpu_ticks(process.pid) - ticks_before)
                / os.sysconf("SC_CLK_TCK")
                / (time.monotonic() - started)
            )
            summary = json.loads(attack.communicate(timeout=duration + 30)[0].splitlines()[-1])
        finally:
            if attack is not None and attack.poll() is None:
                attack.kill()
                attack.wait()
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        stderr.seek(0)
        traceback = b"Traceback" in stderr.read()
    answered = [t for t, code in zip(times, codes, strict=True) if code is not None]
    healthy = sum(1 for code in codes if code == 200)
    result = (
        f"p50 {_ms(statistics.median(answered)) if answered else '-'},"
        f" max {_ms(max(answered)) if answered else '-'},"
        f" {len(answered)}/{CHECKS} answered"
        + (f" ({healthy} with 200)" if healthy != len(answered) else "")
        + f", CPU {cores:.2f} core"
        f" (attack held {summary['open_median']} connections, {summary['drops_per_second']:.0f}"
        " dropped/s)" + (", TRACEBACK on stderr" if traceback else "")
    )
    ok = (
        healthy == CHECKS
        and max(times) <= TARGET_SECONDS
        and cores < TARGET_CORES
        and not traceback
    )
    return (
        f"(i) serve /health under a slowloris of {CONNECTIONS:,} connections"
        f" (a byte every {BYTE_EVERY_SECONDS:g} s each, reconnecting; {CHECKS} checks in {CHECKS} s;"
        f" serve's RLIMIT_NOFILE {_limits_text(limits)})",
        result,
        "",
        f"/health <= {TARGET_SECONDS:g} s, CPU < {TARGET_CORES:g} core",
        "yes" if ok else "NO",
    )


def _limits_text(limits: tuple[int, int] | None) -> str:
    soft, hard = limits or resource.getrlimit(resource.RLIMIT_NOFILE)
    return f"{soft}:{hard}"


def _check(port: int) -> tuple[float, int | None]:
    """One health check from a fresh connection: (seconds, HTTP status or None)."""
    started = time.monotonic()
    answer = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=CHECK_TIMEOUT_SECONDS) as sock:
            sock.sendall(CHECK_REQUEST)
            while time.monotonic() - started < CHECK_TIMEOUT_SECONDS:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
    except OSError:
        pass
    took = time.monotonic() - started
    status = answer[9:12]
    if not answer.startswith(b"HTTP/1.") or not status.isdigit():
        return took, None
    return took, int(status)


def _cpu_ticks(pid: int) -> int:
    # Fields 14 and 15 of /proc/PID/stat (utime, stime); the command name in
    # field 2 may hold spaces, so count from its closing parenthesis.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(port: int) -> None:
    deadline = time.monotonic() + 10
    while _check(port)[1] is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"serve did not answer on port {port} within 10 s")
        time.sleep(0.05)


# --- the attack, in a process of its own ------------------------------------------------


def slowloris(port: int, count: int, duration: float) -> None:
    """Hold `count` connections to 127.0.0.1:`port`, each sending the next byte
    of SLOW_REQUEST every BYTE_EVERY_SECONDS, each reopened as soon as it is
    closed. Prints "ready" once all were opened, then a JSON summary at the end."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    selector = selectors.DefaultSelector()
    sent: dict[socket.socket, int] = {}  # bytes of SLOW_REQUEST sent so far; -1: connecting
    due: list[tuple[float, int, socket.socket]] = []  # (when, tiebreak, socket) for the next byte
    counter = 0
    drops = 0
    samples: list[int] = []

    def open_one() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        sent[sock] = -1
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)

    def drop(sock: socket.socket) -> None:
        selector.unregister(sock)
        del sent[sock]
        sock.close()
        open_one()

    def send_byte(sock: socket.socket, now: float) -> None:
        nonlocal counter
        offset = sent[sock]
        try:
            sock.send(SLOW_REQUEST[offset : offset + 1])
        except BlockingIOError:
            pass
        except OSError:
            drop(sock)
            return
        sent[sock] = offset + 1
        counter += 1
        heapq.heappush(due, (now + BYTE_EVERY_SECONDS, counter, sock))

    for _ in range(count):
        open_one()
    ready = False
    started = time.monotonic()
    next_sample = started + 1
    while (now := time.monotonic()) - started < duration:
        for key, events in selector.select(timeout=0.02):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock not in sent:
                continue  # dropped earlier in this batch
            if sent[sock] == -1 and events & selectors.EVENT_WRITE:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    drop(sock)
                    continue
                selector.modify(sock, selectors.EVENT_READ)
                sent[sock] = 0
                send_byte(sock, now)  # the first byte at once, then one every 4 s
            elif events & selectors.EVENT_READ:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    if sent[sock] >= 0:
                        drops += 1
                    drop(sock)
        while due and due[0][0] <= now:
            _when, _n, sock = heapq.heappop(due)
            if sent.get(sock, -1) >= 0:
                send_byte(sock, now)
        connected = sum(1 for offset in sent.values() if offset >= 0)
        # Against a server with a short listen queue, some never connect at once.
        if not ready and (connected >= count or now - started > WARMUP_SECONDS):
            ready = True
            print("ready", flush=True)
        if now >= next_sample:
            samples.append(connected)
            next_sample += 1
    if not ready:
        print("ready", flush=True)  # never all at once: say so in the summary instead
    summary = {
        "open_median": int(statistics.median(samples)) if samples else 0,
        "drops_per_second": drops / duration,
    }
    print(json.dumps(summary), flush=True)


def main() -> int:
    if sys.argv[1:2] == ["--slowloris"]:
        slowloris(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        return 0
    sys.path.insert(0, str(REPO))
    from tests.standins import NodeosStandIn

    script = shutil.which("check-status", path=str(Path(sys.executable).parent)) or "check-status"
    work = Path(tempfile.mkdtemp(prefix="check-status-slowloris-"))
    try:
        with NodeosStandIn() as nodeos:
            env = {
                "PATH": "/usr/bin:/bin",
                "HOME": str(work),
                "LANG": "C.UTF-8",
                "NODEOS_URL": nodeos.url,
                "STATE_FILE": str(work / "state.json"),
                "NODE_NAME": "bench",
            }
            row = serve_under_slowloris(script, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| measure | result | ratio | target | met |\n|---|---|---|---|---|")
    print(f"| {' | '.join(row)} |")
    return 0 if row[4] == "yes" else 1


if __name__ == "__main__":
    sys.exit(main())
