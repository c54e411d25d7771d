"""check-status serve: /health and /status, single flight, and real HAProxy taking
a stale node out of rotation and putting it back."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.standins import NodeosStandIn, free_port

REPO = Path(__file__).resolve().parent.parent


def test_health_is_200_on_a_healthy_node(serve, nodeos):
    _server, url = serve(NODEOS_URL=nodeos.url)
    response = requests.get(url + "/health", timeout=5)
    assert response.status_code == 200
    assert response.text.startswith("OK head #333261268 by eoseouldotio")


def test_health_is_503_with_the_reason_on_a_stale_head(serve, nodeos):
    nodeos.head_lag_seconds = 600
    _server, url = serve(NODEOS_URL=nodeos.url)
    response = requests.get(url + "/health", timeout=5)
    assert response.status_code == 503
    assert response.text.startswith("CRITICAL head_block: head #333261268 is 10m behind")


def test_health_is_503_on_the_wrong_chain(serve, nodeos):
    _server, url = serve(NODEOS_URL=nodeos.url, EXPECTED_CHAIN_ID="ab" * 32)
    response = requests.get(url + "/health", timeout=5)
    assert response.status_code == 503
    assert "CRITICAL chain_id: wrong chain" in response.text


def test_health_catches_a_frozen_head_between_probes(serve, nodeos):
    """A head that stops moving while its time still looks fresh (a cached get_info)."""
    _server, url = serve(NODEOS_URL=nodeos.url, HEALTH_CACHE_SECONDS=0, HEAD_STALL_SECONDS=5)
    assert requests.get(url + "/health", timeout=5).status_code == 200
    time.sleep(5.2)
    response = requests.get(url + "/health", timeout=5)
    assert response.status_code == 503
    assert "head stalled at #333261268" in response.text


def test_head_answers_without_a_body(serve, nodeos):
    _server, url = serve(NODEOS_URL=nodeos.url)
    response = requests.head(url + "/health", timeout=5)
    assert response.status_code == 200 and response.content == b""
    nodeos.mode = "patroneos"
    time.sleep(2.1)  # past HEALTH_CACHE_SECONDS
    assert requests.head(url + "/health", timeout=5).status_code == 503


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("GET", "/health/../../etc/passwd", 404),
        ("POST", "/health", 400),
        ("DELETE", "/status", 400),
        ("TRACE", "/health", 400),
        ("PROPFIND", "/status", 400),
        ("FOO", "/health", 400),
        ("GET", "/health?" + "x" * 70_000, 400),  # a request line over the 8 KiB cap
    ],
)
def test_bad_requests_get_400_or_404(serve, nodeos, method, path, status):
    _server, url = serve(NODEOS_URL=nodeos.url)
    response = requests.request(method, url + path, timeout=5)
    assert response.status_code == status
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /health HTTP/2.0\r\n\r\n", b"400"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"400"),  # HTTP/2 with prior knowledge
        (b"GET /health\r\n\r\n", b"400"),  # HTTP/0.9
        (
            b"GET /health HTTP/1.1\r\n"
            + b"".join(b"X-%d: y\r\n" % i for i in range(200))
            + b"\r\n",
            b"431",
        ),
        (b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
    ],
    ids=["http-2.0", "h2-preface", "http-0.9", "200-headers", "bad-header-line"],
)
def test_requests_the_parser_refuses_get_400(serve, nodeos, request_bytes, status):
    server, url = serve(NODEOS_URL=nodeos.url)
    with socket.create_connection(server.server_address, timeout=5) as raw:
        raw.sendall(request_bytes)
        answer = b""
        while chunk := raw.recv(4096):  # the server closes after an error
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 " + status + b" "), answer[:300]
    assert b"Connection: close\r\n" in answer and b"Traceback" not in answer
    assert requests.get(url + "/health", timeout=5).status_code == 200


def test_garbage_on_the_socket_gets_400_and_the_server_lives_on(serve, nodeos):
    server, url = serve(NODEOS_URL=nodeos.url)
    with socket.create_connection(server.server_address, timeout=5) as raw:
        raw.sendall(b"\x00\xff garbage \r\n\r\n")
        answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.0 400 ") and b"Traceback" not in answer
    assert requests.get(url + "/health", timeout=5).status_code == 200


@pytest.mark.parametrize("cache_seconds", ["2", "0"])
def test_single_flight_fifty_concurrent_health_checks_cost_one_get_info(
    serve, nodeos, cache_seconds
):
    # A slow nodeos, so the 50 requests all arrive while the first probe is in
    # flight, even on a busy machine: with no cache, a latecomer probes again.
    nodeos.delay_seconds = 1.5
    # With no cache at all, the requests that waited still share the probe they waited for.
    server, url = serve(NODEOS_URL=nodeos.url, HEALTH_CACHE_SECONDS=cache_seconds)
    with ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(
            pool.map(lambda _: requests.get(url + "/health", timeout=10).status_code, range(50))
        )
    assert codes == [200] * 50
    assert nodeos.get_info_count <= 2, nodeos.get_info_count
    assert server.health.probes == nodeos.get_info_count


def test_health_keeps_serving_when_nodeos_hangs(serve, nodeos):
    nodeos.mode = "hang"
    _server, url = serve(NODEOS_URL=nodeos.url, HTTP_TIMEOUT_SECONDS=1)
    started = time.monotonic()
    response = requests.get(url + "/health", timeout=10)
    assert time.monotonic() - started < 3
    assert response.status_code == 503 and "timeout after 1s" in response.text
    assert requests.get(url + "/status", timeout=5).status_code == 200


def test_status_shows_the_last_run_and_no_secret(serve, nodeos, cli, write_env):
    token = "f00dfeedf00dfeedf00dfeedf00dfeed"
    settings = {
        "NODEOS_URL": nodeos.url,
        "TWILIO_ACCOUNT_SID": "AC" + "0123456789abcdef" * 2,
        "TWILIO_AUTH_TOKEN": token,
        "TWILIO_FROM": "+15005550006",
        "ALERT_TO": "+14155550101",
        "TWILIO_API_BASE_URL": "http://127.0.0.1:9",
    }
    env_file = write_env(**settings)
    cli("--env-file", str(env_file))
    _server, url = serve(**settings)
    response = requests.get(url + "/status", timeout=5)
    document = response.json()
    assert document["node"] == "eu2"
    assert document["last_run"]["status"] == "OK" and document["last_run"]["age_seconds"] < 60
    assert document["checks"]["head_block"]["status"] == "OK"
    assert token not in response.text


def test_status_page_masks_the_operators_numbers(serve, cli, write_env):
    # nodeos down and Twilio unreachable: the text waits for +14155550101.
    settings = {
        "NODEOS_URL": f"http://127.0.0.1:{free_port()}",
        "TWILIO_ACCOUNT_SID": "AC" + "0123456789abcdef" * 2,
        "TWILIO_AUTH_TOKEN": "f00dfeedf00dfeedf00dfeedf00dfeed",
        "TWILIO_FROM": "+15005550006",
        "ALERT_TO": "+14155550101",
        "ALERT_AFTER": "1",
        "TWILIO_API_BASE_URL": f"http://127.0.0.1:{free_port()}",
    }
    env_file = write_env(**settings)
    cli("--env-file", str(env_file))
    local = json.loads(cli("--env-file", str(env_file), "status", "--json").output)
    assert list(local["pending_sms"]) == ["+14155550101"]  # the operator sees whom
    _server, url = serve(**settings)
    page = requests.get(url + "/status", timeout=5)
    assert list(page.json()["pending_sms"]) == ["+14***0101"]
    assert "4155550101" not in page.text


def test_serve_binds_to_loopback_by_default(write_env, nodeos):
    env = dict(os.environ, CHECK_STATUS_ENV_FILE=str(write_env(NODEOS_URL=nodeos.url)))
    process = subprocess.Popen(
        [sys.executable, "-m", "check_status", "serve"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stderr.readline()
        assert line.startswith("check-status serve: listening on http://127.0.0.1:8899")
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- real HAProxy -----------------------------------------------------------


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def haproxy_states(sock_path: Path) -> dict[str, str]:
    """{server name: UP/DOWN} from the admin socket, as an operator would ask."""
    with socket.socket(socket.AF_UNIX) as admin:
        admin.settimeout(5)
        admin.connect(str(sock_path))
        admin.sendall(b"show stat\n")
        data = b""
        while chunk := admin.recv(65536):
            data += chunk
    states = {}
    for row in data.decode().splitlines():
        fields = row.split(",")
        if (
            len(fields) > 17
            and fields[0] == "nodeos_api"
            and fields[1] not in ("FRONTEND", "BACKEND")
        ):
            states[fields[1]] = fields[17]
    return states


def wait_for(predicate, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s")


@pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="Debian's haproxy is installed by tests/run-all.sh"
)
def test_haproxy_takes_a_stale_node_out_and_puts_it_back(tmp_path):
    with (
        NodeosStandIn() as eu1,
        NodeosStandIn(fixture="get_info_spring_v1.0.1_eos_mainnet.json") as eu2,
    ):
        serve_ports = {"eu1": free_tcp_port(), "eu2": free_tcp_port()}
        processes = []
        try:
            for name, nodeos in (("eu1", eu1), ("eu2", eu2)):
                env_file = tmp_path / f"{name}.env"
                env_file.write_text(
                    f"NODE_NAME={name}\nNODEOS_URL={nodeos.url}\nHEALTH_CACHE_SECONDS=1\n"
                    f"STATE_FILE={tmp_path}/{name}.json\n"
                )
                processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "check_status",
                            "serve",
                            "--env-file",
                            str(env_file),
                            "--listen",
                            f"127.0.0.1:{serve_ports[name]}",
                        ],
                        stderr=subprocess.DEVNULL,
                    )
                )
            frontend = free_tcp_port()
            admin_sock = tmp_path / "admin.sock"
            config = (REPO / "haproxy.cfg.example").read_text()
            config = config.replace("bind :80", f"bind 127.0.0.1:{frontend}")
            config = config.replace("/run/haproxy/admin.sock", str(admin_sock))
            config = config.replace("    log stdout format raw local0\n", "")
            config = re.sub(
                r"server eu1 \S+ check port 8899",
                f"server eu1 127.0.0.1:{eu1.port} check port {serve_ports['eu1']}",
                config,
            )
            config = re.sub(
                r"server eu2 \S+ check port 8899",
                f"server eu2 127.0.0.1:{eu2.port} check port {serve_ports['eu2']}",
                config,
            )
            (tmp_path / "haproxy.cfg").write_text(config)
            processes.append(
                subprocess.Popen(
                    ["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_for(lambda: admin_sock.exists(), 10)
            wait_for(lambda: haproxy_states(admin_sock) == {"eu1": "UP", "eu2": "UP"}, 15)

            eu2.head_lag_seconds = 600  # eu2's head goes stale: it must leave rotation
            took = wait_for(lambda: haproxy_states(admin_sock).get("eu2") == "DOWN", 15)
            assert took < 10
            versions = {
                requests.get(f"http://127.0.0.1:{frontend}/v1/chain/get_info", timeout=5).json()[
                    "server_version_string"
                ]
                for _ in range(20)
            }
            assert versions == {"v4.0.4"}  # every request reached the healthy eu1

            eu2.head_lag_seconds = 0.5  # fresh again: back in rotation by itself
            wait_for(lambda: haproxy_states(admin_sock).get("eu2") == "UP", 15)
            versions = {
                requests.get(f"http://127.0.0.1:{frontend}/v1/chain/get_info", timeout=5).json()[
                    "server_version_string"
                ]
                for _ in range(20)
            }
            assert versions == {"v4.0.4", "v1.0.1"}
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=10)


def test_status_json_matches_the_status_command(cli, write_env, nodeos):
    env_file = write_env(NODEOS_URL=nodeos.url)
    cli("--env-file", str(env_file))
    document = json.loads(cli("--env-file", str(env_file), "status", "--json").output)
    assert document["last_run"]["status"] == "OK"


@pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="Debian's haproxy is installed by tests/run-all.sh"
)
def test_the_original_outage_a_half_broken_pool_is_caught_in_one_run(
    tmp_path, cli, write_env, nodeos
):
    """HAProxy round-robins between a healthy backend and one answering NODEOS_UNREACHABLE,
    with no health check: the public URL fails half the time, as in the incident."""
    with NodeosStandIn() as eu1, NodeosStandIn(mode="patroneos") as eu2:
        frontend = free_tcp_port()
        config = (
            "defaults\n    mode http\n    timeout connect 3s\n    timeout client 10s\n    timeout server 10s\n"
            f"frontend public\n    bind 127.0.0.1:{frontend}\n    default_backend pool\n"
            f"backend pool\n    balance roundrobin\n"
            f"    server eu1 127.0.0.1:{eu1.port}\n    server eu2 127.0.0.1:{eu2.port}\n"
        )
        (tmp_path / "lb.cfg").write_text(config)
        haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(tmp_path / "lb.cfg")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", frontend)) == 0, 10)
            env_file = write_env(NODEOS_URL=nodeos.url, ENDPOINTS=f"http://127.0.0.1:{frontend}")
            result = cli("--env-file", str(env_file))
        finally:
            haproxy.terminate()
            haproxy.wait(timeout=10)
    assert result.exit_code == 2
    assert re.search(
        rf"endpoint:127.0.0.1:{frontend}: [12] of 3 requests failed: HTTP 503 NODEOS_UNREACHABLE",
        result.output,
    ), result.output
