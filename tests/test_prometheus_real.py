"""The Prometheus textfile read by the real node_exporter, linted by the real
promtool, and the shipped alerting rules run through promtool's rule tests.

node_exporter is started here on a free loopback port with only its textfile
collector, and stopped by its PID: the Debian package's service must not run.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from check_status.checks.disk import judge_disk
from check_status.checks.state_db import judge_state_db
from check_status.config import load
from check_status.probes.disk import DiskUsage
from check_status.probes.nodeos import DbSize
from check_status.prometheus import render
from check_status.runner import RunReport
from tests.conftest import remount
from tests.standins import HeartbeatStandIn, NodeosStandIn, TwilioStandIn, free_port

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "prometheus" / "check-status.rules.yml"
RULE_TESTS = REPO / "prometheus" / "check-status.rules.test.yml"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
PROMTOOL = "/usr/bin/promtool"

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
PING_PATH = "/ping/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def binary(path: str, package: str) -> str:
    """A real binary these tests need: missing is a failure, not a skip."""
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"{path} is missing: install the Debian package {package} (apt-get install {package})"
        )
    return path


def samples(text: str, prefix: str = "") -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith(prefix)
    }


def value(found: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted({"node": "eu2", **labels}.items())))
    assert key in found, f"{key} not in {sorted(found)}"
    return found[key]


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary(PROMTOOL, "prometheus"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )


@pytest.fixture
def node_exporter(tmp_path: Path) -> Iterator[Callable[[Path], str]]:
    """Start the real node_exporter on a textfile directory; returns its /metrics URL."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(directory: Path) -> str:
        port = free_port()
        log = (tmp_path / f"node_exporter-{port}.log").open("wb")
        process = subprocess.Popen(
            [
                binary(NODE_EXPORTER, "prometheus-node-exporter"),
                f"--web.listen-address=127.0.0.1:{port}",
                "--collector.disable-defaults",
                "--collector.textfile",
                f"--collector.textfile.directory={directory}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"node_exporter exited with {process.returncode}: {log.name}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return url
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"node_exporter did not answer on {url} within 15 s")

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def textfile_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "textfile"
    directory.mkdir(mode=0o755)
    return directory


def test_node_exporter_serves_a_real_run(cli, nodeos, write_env, tmp_path, node_exporter):
    nodeos.db_size_enabled = True
    directory = textfile_dir(tmp_path)
    textfile = directory / "check_status.prom"
    with NodeosStandIn(head_lag_seconds=2.0) as endpoint:
        env_file = write_env(
            NODEOS_URL=nodeos.url,
            # A URL with credentials: only host:port may reach the textfile.
            ENDPOINTS=endpoint.url.replace("http://", "http://reader:hunter22@"),
            PROMETHEUS_TEXTFILE=textfile,
        )
        result = cli("--env-file", str(env_file))
    assert result.exit_code == 0, result.output
    written = textfile.read_text()
    assert "hunter22" not in written and "reader" not in written

    scraped = scrape(node_exporter(directory))
    everything = samples(scraped)
    assert everything[("node_textfile_scrape_error", ())] == 0
    found = samples(scraped, "check_status_")
    # node_exporter serves exactly what the run wrote, no more, no less.
    assert found == samples(written)

    endpoint_label = endpoint.url.removeprefix("http://")
    for check in ("nodeos", "head_block", "lib", "state_db", f"endpoint:{endpoint_label}"):
        assert value(found, "check_status_status", check=check) == 0
    assert 0 <= value(found, "check_status_head_lag_seconds") < 5
    assert value(found, "check_status_lib_lag_blocks") == 332
    assert 0 < value(found, "check_status_nodeos_response_seconds") < 3
    assert value(found, "check_status_state_db_used_ratio") == 0.25
    assert value(found, "check_status_state_db_used_bytes") == 268435456
    assert value(found, "check_status_state_db_size_bytes") == 1073741824

    path = str(tmp_path)
    used = value(found, "check_status_disk_used_bytes", path=path)
    available = value(found, "check_status_disk_available_bytes", path=path)
    assert value(found, "check_status_disk_used_ratio", path=path) == used / (used + available)
    assert value(found, "check_status_disk_size_bytes", path=path) >= used + available
    stats = os.statvfs(tmp_path)
    assert value(found, "check_status_disk_inodes", path=path) == stats.f_files
    inodes_used = value(found, "check_status_disk_inodes_used", path=path)
    ratio = value(found, "check_status_disk_inodes_used_ratio", path=path)
    assert ratio == inodes_used / stats.f_files

    assert value(found, "check_status_endpoint_up", endpoint=endpoint_label) == 1
    assert 0 < value(found, "check_status_endpoint_response_seconds", endpoint=endpoint_label) < 3
    assert 1.5 < value(found, "check_status_endpoint_head_lag_seconds", endpoint=endpoint_label) < 5
    assert abs(value(found, "check_status_last_run_timestamp_seconds") - time.time()) < 60
    assert value(found, "check_status_open_incidents") == 0


@pytest.fixture
def failing_run(cli, write_env, tmp_path) -> Iterator[Callable[[], Path]]:
    """A run with nodeos down and both endpoints failing, texting through a
    Twilio stand-in and pinging a heartbeat: its textfile."""
    with (
        NodeosStandIn(mode="html502") as bad_gateway,
        TwilioStandIn(auth_token=TOKEN) as twilio,
        HeartbeatStandIn() as heartbeat,
    ):

        def run() -> Path:
            textfile = textfile_dir(tmp_path) / "check_status.prom"
            env_file = write_env(
                NODEOS_URL=f"http://127.0.0.1:{free_port()}",
                ENDPOINTS=f"{bad_gateway.url},http://127.0.0.1:{free_port()}",
                PROMETHEUS_TEXTFILE=textfile,
                ALERT_AFTER=1,
                TWILIO_ACCOUNT_SID=SID,
                TWILIO_AUTH_TOKEN=TOKEN,
                TWILIO_FROM="+15005550006",
                ALERT_TO="+14155550101",
                TWILIO_API_BASE_URL=twilio.url,
                HEARTBEAT_URL=f"{heartbeat.url}{PING_PATH}",
            )
            assert cli("--env-file", str(env_file)).exit_code == 2
            return textfile

        yield run


def test_a_failing_run_is_in_the_file_without_made_up_numbers(failing_run):
    written = failing_run().read_text()
    assert TOKEN not in written and SID not in written and PING_PATH not in written
    found = samples(written)
    assert value(found, "check_status_status", check="nodeos") == 2
    assert value(found, "check_status_status", check="head_block") == 3
    endpoints = {
        dict(labels)["endpoint"]: v for (name, labels), v in found.items() if name.endswith("_up")
    }
    assert len(endpoints) == 2 and set(endpoints.values()) == {0}
    for endpoint in endpoints:
        assert value(found, "check_status_status", check=f"endpoint:{endpoint}") == 2
    names = {name for name, _ in found}
    assert "check_status_endpoint_response_seconds" not in names
    assert "check_status_endpoint_head_lag_seconds" not in names
    assert "check_status_head_lag_seconds" not in names
    assert value(found, "check_status_open_incidents") >= 1


def test_promtool_finds_nothing_to_lint_in_a_healthy_run(cli, nodeos, write_env, tmp_path):
    nodeos.db_size_enabled = True
    textfile = tmp_path / "check_status.prom"
    with NodeosStandIn() as endpoint:
        env_file = write_env(
            NODEOS_URL=nodeos.url, ENDPOINTS=endpoint.url, PROMETHEUS_TEXTFILE=textfile
        )
        assert cli("--env-file", str(env_file)).exit_code == 0
    checked = promtool("check", "metrics", stdin=textfile.read_text())
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


def test_promtool_finds_nothing_to_lint_in_a_failing_run(failing_run):
    checked = promtool("check", "metrics", stdin=failing_run().read_text())
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


def test_promtool_lints_what_it_should():
    # The lint checks above are worth something only if promtool complains at
    # all: a gauge named like a counter, as `check_status_disk_inodes_total` would be.
    text = "# HELP x_inodes_total Inodes.\n# TYPE x_inodes_total gauge\nx_inodes_total 5\n"
    checked = promtool("check", "metrics", stdin=text)
    assert checked.returncode != 0
    assert 'non-counter metrics should not have "_total" suffix' in checked.stderr


def test_the_rules_file_is_valid():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_rules_pass_their_unit_tests():
    checked = promtool("test", "rules", str(RULE_TESTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_a_ratio_of_exact_counts_has_no_float_noise(write_env):
    config = load(str(write_env()))
    usage = DiskUsage(
        path="/data",
        total_bytes=1100,
        available_bytes=768,
        used_percent=23.2,
        inodes_total=1000,
        inodes_available=768,
        inodes_used_percent=23.2,
        used_bytes=232,
        inodes_used=232,
    )
    results = (judge_disk("/data", usage, config), judge_state_db(DbSize(232, 1000), True, config))
    report = RunReport(
        node="eu2", now=datetime(2026, 11, 26, 2, 0, tzinfo=UTC), results=results, state_file="-"
    )
    lines = render(report, 0).splitlines()
    assert 23.2 / 100 == 0.23199999999999998  # what a rounded percentage would give
    assert 'check_status_disk_used_ratio{node="eu2",path="/data"} 0.232' in lines
    assert 'check_status_disk_inodes_used_ratio{node="eu2",path="/data"} 0.232' in lines
    assert 'check_status_state_db_used_ratio{node="eu2"} 0.232' in lines
    assert 'check_status_disk_used_bytes{node="eu2",path="/data"} 232' in lines
    assert 'check_status_disk_size_bytes{node="eu2",path="/data"} 1100' in lines


def test_a_real_run_writes_the_state_db_ratio_without_noise(cli, nodeos, write_env, tmp_path):
    nodeos.db_size_enabled = True
    nodeos.db_size = {"free_bytes": "768", "used_bytes": 232, "size": 1000, "indices": []}
    textfile = tmp_path / "check_status.prom"
    env_file = write_env(NODEOS_URL=nodeos.url, PROMETHEUS_TEXTFILE=textfile)
    cli("--env-file", str(env_file))
    assert 'check_status_state_db_used_ratio{node="eu2"} 0.232\n' in textfile.read_text()


# --- a textfile that cannot be written: WARNING, on the run's own line --------


def first_line(cli, write_env, nodeos, textfile: Path) -> tuple[int, str]:
    result = cli("--env-file", str(write_env(NODEOS_URL=nodeos.url, PROMETHEUS_TEXTFILE=textfile)))
    return result.exit_code, result.output.splitlines()[0]


def test_a_read_only_textfile_directory_is_a_warning(cli, nodeos, write_env, tmpfs):
    textfile = tmpfs / "check_status.prom"
    assert first_line(cli, write_env, nodeos, textfile)[0] == 0
    remount(tmpfs, "ro")
    code, line = first_line(cli, write_env, nodeos, textfile)
    assert code == 1
    assert line.startswith("CHECK-STATUS WARNING - ")
    assert (
        f"cannot write the Prometheus textfile {textfile} (Read-only file system): make its"
        " directory writable by this user or fix PROMETHEUS_TEXTFILE" in line
    )


def test_a_textfile_directory_others_can_write_is_refused(cli, nodeos, write_env, tmp_path):
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    textfile = directory / "check_status.prom"
    code, line = first_line(cli, write_env, nodeos, textfile)
    assert code == 1
    assert line.startswith("CHECK-STATUS WARNING - ")
    assert (
        f"cannot write the Prometheus textfile {textfile}: the textfile directory {directory}"
        f" is writable by other users (mode 777): run `chmod go-w {directory}`" in line
    )
    assert not textfile.exists()


def test_a_textfile_under_a_regular_file_is_a_warning(cli, nodeos, write_env, tmp_path):
    (tmp_path / "not-a-directory").write_text("")
    textfile = tmp_path / "not-a-directory" / "check_status.prom"
    code, line = first_line(cli, write_env, nodeos, textfile)
    assert code == 1
    assert f"cannot write the Prometheus textfile {textfile} (Not a directory)" in line


def test_a_textfile_in_a_missing_directory_says_to_create_it(cli, nodeos, write_env, tmp_path):
    textfile = tmp_path / "node-exporter" / "check_status.prom"
    code, line = first_line(cli, write_env, nodeos, textfile)
    assert code == 1
    assert (
        f"cannot write the Prometheus textfile {textfile} (No such file or directory):"
        f" create {textfile.parent} or fix PROMETHEUS_TEXTFILE" in line
    )
