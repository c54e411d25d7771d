"""A whole run against a real nodeos stand-in on loopback, through the CLI or run_once."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from check_status.config import load
from check_status.runner import run_once
from check_status.state import run_lock
from tests.conftest import checks_by_name
from tests.standins import HangingServer, NodeosStandIn, free_port

OTHER_CHAIN = "1064487b3cd1a897ce03ae5b6a865651747e2e152090f99c1d19d44e01aea5a4"


def run_json(cli, env_file: Path, *extra: str):
    result = cli("--env-file", str(env_file), "--json", *extra)
    return result.exit_code, checks_by_name(result.output)


def test_healthy_node_is_ok_on_one_nagios_line(cli, nodeos, write_env):
    env_file = write_env(NODEOS_URL=nodeos.url)
    result = cli("--env-file", str(env_file))
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert re.match(r"^CHECK-STATUS OK - \d+ checks OK / head #\d+ .* \| ", lines[0])
    assert "'head_lag'=" in lines[0] and "'lib_lag'=332;400;1200;0" in lines[0]
    assert re.search(r"'nodeos_response'=[\d.]+ms", lines[0])
    assert re.search(r"'disk:[^']+'=[\d.]+%;80;88;0;100", lines[0])


def test_healthy_node_json_names_every_check(cli, nodeos, write_env, tmp_path):
    env_file = write_env(NODEOS_URL=nodeos.url, ENDPOINTS=nodeos.url)
    code, checks = run_json(cli, env_file)
    assert code == 0
    assert set(checks) == {
        "nodeos",
        "head_block",
        "lib",
        "state_db",
        f"endpoint:127.0.0.1:{nodeos.port}",
        f"disk:{tmp_path}",
    }
    assert all(c["status"] == "OK" for c in checks.values())
    assert checks["lib"]["metrics"]["lib_lag_blocks"] == 332
    assert 0 <= checks["head_block"]["metrics"]["head_lag_seconds"] < 5


def test_verbose_shows_a_table_and_the_state_file(cli, nodeos, write_env, state_file):
    env_file = write_env(NODEOS_URL=nodeos.url)
    result = cli("--env-file", str(env_file), "run", "-v")
    assert result.exit_code == 0
    assert re.search(r"^head_block\s+OK\s+head #333261268", result.output, re.M)
    assert f"state file: {state_file}" in result.output
    assert json.loads(state_file.read_text())["checks"]["nodeos"]["status"] == "OK"


def test_stale_head_is_critical(cli, nodeos, write_env):
    nodeos.head_lag_seconds = 150
    code, checks = run_json(cli, write_env(NODEOS_URL=nodeos.url))
    assert code == 2
    assert checks["head_block"]["status"] == "CRITICAL"
    assert re.search(r"head #333261268 is 2m(29|30)s behind", checks["head_block"]["summary"])


def test_head_lag_between_thresholds_is_warning(cli, nodeos, write_env):
    nodeos.head_lag_seconds = 30
    code, checks = run_json(cli, write_env(NODEOS_URL=nodeos.url))
    assert (code, checks["head_block"]["status"]) == (1, "WARNING")


def test_stalled_head_across_two_runs(nodeos, write_env):
    # Generous lag thresholds, so only the frozen number can make it CRITICAL.
    config = load(
        str(write_env(NODEOS_URL=nodeos.url, HEAD_LAG_WARN_SECONDS=300, HEAD_LAG_CRIT_SECONDS=600))
    )
    now = datetime.now(UTC)
    first = run_once(config, now)
    manual = run_once(config, now + timedelta(seconds=0.4))  # a manual run right after cron's
    later = run_once(config, now + timedelta(seconds=45))
    status = {r.name: r for r in later.results}["head_block"]
    assert {r.name: r.status.name for r in first.results}["head_block"] == "OK"
    assert {r.name: r.status.name for r in manual.results}["head_block"] == "OK"
    assert status.status.name == "CRITICAL" and "stalled at #333261268 for 45s" in status.summary


def test_advancing_head_is_not_stalled(nodeos, write_env):
    config = load(
        str(write_env(NODEOS_URL=nodeos.url, HEAD_LAG_WARN_SECONDS=300, HEAD_LAG_CRIT_SECONDS=600))
    )
    now = datetime.now(UTC)
    run_once(config, now)
    nodeos.head_block_num = 333261268 + 90
    later = run_once(config, now + timedelta(seconds=45))
    assert {r.name: r.status.name for r in later.results}["head_block"] == "OK"


def test_resync_head_going_back_is_a_warning(cli, nodeos, write_env):
    env_file = write_env(NODEOS_URL=nodeos.url)
    nodeos.head_block_num = 5_000_000
    run_json(cli, env_file)
    nodeos.head_block_num = 1_000
    code, checks = run_json(cli, env_file)
    assert code == 1
    assert "went back from #5000000 to #1000" in checks["head_block"]["summary"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("html502", "HTTP 502 not JSON (HTML page)"),
        ("error404", "HTTP 404 Not Found"),
        ("error500", "HTTP 500 timeout_exception"),
        ("patroneos", "HTTP 503 NODEOS_UNREACHABLE"),
        ("empty400", "HTTP 400 (empty body)"),
        ("invalid_utf8", "not JSON"),
        ("big", "response larger than 1024 KiB"),
    ],
)
def test_nodeos_failures_are_named(cli, nodeos, write_env, mode, expected):
    nodeos.mode = mode
    code, checks = run_json(cli, write_env(NODEOS_URL=nodeos.url))
    assert code == 2
    assert checks["nodeos"]["status"] == "CRITICAL"
    assert checks["nodeos"]["summary"].startswith(expected), checks["nodeos"]["summary"]
    # One outage is one problem: the rest are consequences, not CRITICALs.
    assert checks["head_block"]["status"] == "UNKNOWN"
    assert checks["head_block"]["caused_by"] == "nodeos"


def test_a_pipe_in_a_summary_never_breaks_the_perfdata(cli, nodeos, write_env):
    # Nagios splits the line at the first '|': text before, perfdata after.
    nodeos.mode = "html502_cloudflare"
    result = cli("--env-file", str(write_env(NODEOS_URL=nodeos.url)))
    assert result.exit_code == 2
    text, perf = result.output.strip().split("|")  # exactly one '|'
    assert "HTTP 502 not JSON (HTML page)" in text
    assert perf.strip().startswith("'")
    # The page's own title is shown by -v, where a '|' is harmless.
    verbose = cli("run", "--env-file", str(write_env(NODEOS_URL=nodeos.url)), "-v", "--dry-run")
    assert "[remote said: api.example.io | 502: Bad gateway]" in verbose.output


def test_unreachable_port_says_connection_refused(cli, write_env):
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("--env-file", str(write_env(NODEOS_URL=url)))
    assert result.exit_code == 2
    assert result.output.startswith(
        "CHECK-STATUS CRITICAL - nodeos: connection refused (127.0.0.1:"
    )
    assert "head_block" not in result.output.split(" | ")[0]


def test_dns_failure_is_named(cli, write_env):
    code, checks = run_json(cli, write_env(NODEOS_URL="http://no-such-host.invalid:8888"))
    assert code == 2
    assert checks["nodeos"]["summary"].startswith("DNS lookup failed")


def test_hung_nodeos_is_a_timeout_within_the_timeout(cli, write_env):
    with HangingServer() as hanging:
        started = time.monotonic()
        code, checks = run_json(cli, write_env(NODEOS_URL=hanging.url, HTTP_TIMEOUT_SECONDS=1))
        elapsed = time.monotonic() - started
    assert code == 2
    assert checks["nodeos"]["summary"].startswith("timeout after 1s")
    assert elapsed < 3


def test_trickling_body_is_cut_at_the_timeout(cli, nodeos, write_env):
    nodeos.mode = "trickle"
    started = time.monotonic()
    code, checks = run_json(cli, write_env(NODEOS_URL=nodeos.url, HTTP_TIMEOUT_SECONDS=1))
    assert time.monotonic() - started < 3.5
    assert code == 2 and "timeout" in checks["nodeos"]["summary"]


def test_eight_hung_endpoints_cost_one_timeout(cli, nodeos, write_env):
    servers = [HangingServer().start() for _ in range(8)]
    try:
        endpoints = ",".join(s.url for s in servers)
        started = time.monotonic()
        code, checks = run_json(
            cli, write_env(NODEOS_URL=nodeos.url, ENDPOINTS=endpoints, HTTP_TIMEOUT_SECONDS=1)
        )
        elapsed = time.monotonic() - started
    finally:
        for server in servers:
            server.stop()
    endpoint_checks = [c for name, c in checks.items() if name.startswith("endpoint:")]
    assert len(endpoint_checks) == 8
    assert all(c["summary"].startswith("timeout") for c in endpoint_checks)
    assert code == 2
    assert elapsed < 3


def test_endpoint_behind_a_broken_balancer(cli, nodeos, write_env):
    with NodeosStandIn(mode="patroneos") as balancer:
        code, checks = run_json(cli, write_env(NODEOS_URL=nodeos.url, ENDPOINTS=balancer.url))
    assert code == 2
    check = checks[f"endpoint:127.0.0.1:{balancer.port}"]
    assert (check["status"], check["summary"]) == ("CRITICAL", "HTTP 503 NODEOS_UNREACHABLE")
    assert checks["nodeos"]["status"] == "OK"


def test_endpoint_on_another_chain(cli, nodeos, write_env):
    with NodeosStandIn(chain_id=OTHER_CHAIN) as other:
        code, checks = run_json(cli, write_env(NODEOS_URL=nodeos.url, ENDPOINTS=other.url))
    assert code == 2
    assert "another chain" in checks[f"endpoint:127.0.0.1:{other.port}"]["summary"]


def test_wrong_chain_id_is_critical(cli, nodeos, write_env):
    code, checks = run_json(cli, write_env(NODEOS_URL=nodeos.url, EXPECTED_CHAIN_ID=OTHER_CHAIN))
    assert code == 2
    assert checks["chain_id"]["status"] == "CRITICAL"
    assert "wrong chain aca376f206b8" in checks["chain_id"]["summary"]


def test_right_chain_id_is_ok(cli, nodeos, write_env):
    eos = "aca376f206b8fc25a6ed44dbdc66547c36c6c33e3a119ffbeaef943642f0e906"
    code, checks = run_json(cli, write_env(NODEOS_URL=nodeos.url, EXPECTED_CHAIN_ID=eos))
    assert (code, checks["chain_id"]["status"]) == (0, "OK")


def test_numbers_as_strings_are_accepted(cli, nodeos, write_env):
    nodeos.numbers_as_strings = True
    nodeos.head_block_num = 5_000_000_000  # above 2^32, as nodeos would send a uint64
    code, checks = run_json(cli, write_env(NODEOS_URL=nodeos.url))
    assert code == 0
    assert checks["head_block"]["metrics"]["head_block_num"] == 5_000_000_000


@pytest.mark.parametrize("fixture", ["get_info_eosio_v1.0_eos_mainnet_stale_head.json"])
def test_timestamps_without_milliseconds(cli, nodeos, write_env, fixture):
    nodeos.fixture = fixture
    nodeos.millis = False
    nodeos.head_lag_seconds = 2
    code, checks = run_json(cli, write_env(NODEOS_URL=nodeos.url))
    assert code == 0
    assert 1 <= checks["head_block"]["metrics"]["head_lag_seconds"] < 5


def test_lag_is_right_whatever_the_local_time_zone(nodeos, write_env):
    env = dict(
        os.environ, TZ="Asia/Seoul", CHECK_STATUS_ENV_FILE=str(write_env(NODEOS_URL=nodeos.url))
    )
    done = subprocess.run(
        [sys.executable, "-m", "check_status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    checks = checks_by_name(done.stdout)
    assert checks["head_block"]["metrics"]["head_lag_seconds"] < 5


def test_db_size_not_enabled_is_ok(cli, nodeos, write_env):
    nodeos.db_size_enabled = False
    code, checks = run_json(cli, write_env(NODEOS_URL=nodeos.url))
    assert code == 0
    assert checks["state_db"]["summary"].startswith("not enabled")


def test_db_size_nearly_full_is_critical(cli, nodeos, write_env):
    nodeos.db_size_enabled = True
    nodeos.db_size = {
        "free_bytes": "53687091",
        "used_bytes": "1020054732",
        "size": "1073741824",
        "indices": [],
    }
    code, checks = run_json(cli, write_env(NODEOS_URL=nodeos.url))
    assert code == 2
    assert checks["state_db"]["metrics"]["used_percent"] == 95.0
    assert "raise chain-state-db-size-mb" in checks["state_db"]["summary"]


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=400", "tmpfs", str(mount_point)],
        check=True,
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(path: Path, kib: int) -> None:
    (path / "filler").write_bytes(b"\0" * kib * 1024)


@pytest.mark.parametrize(("kib", "status"), [(100, "OK"), (860, "WARNING"), (930, "CRITICAL")])
def test_disk_thresholds_on_a_real_tmpfs(cli, nodeos, write_env, small_tmpfs, kib, status):
    fill(small_tmpfs, kib)
    _code, checks = run_json(cli, write_env(NODEOS_URL=nodeos.url, DISK_PATHS=str(small_tmpfs)))
    check = checks[f"disk:{small_tmpfs}"]
    assert check["status"] == status, check
    assert re.search(r"\d+% used, [\d.]+ KiB left", check["summary"])


def test_inodes_running_out_on_a_real_tmpfs(cli, nodeos, write_env, small_tmpfs):
    for i in range(380):
        (small_tmpfs / f"f{i}").touch()
    _code, checks = run_json(cli, write_env(NODEOS_URL=nodeos.url, DISK_PATHS=str(small_tmpfs)))
    check = checks[f"disk:{small_tmpfs}"]
    assert check["status"] == "CRITICAL"
    assert "inodes" in check["summary"]


def test_missing_disk_path_is_unknown(cli, nodeos, write_env, tmp_path):
    code, checks = run_json(cli, write_env(NODEOS_URL=nodeos.url, DISK_PATHS=f"{tmp_path}/nope"))
    assert checks[f"disk:{tmp_path}/nope"]["status"] == "UNKNOWN"
    assert code == 3


@pytest.mark.parametrize(
    "line",
    [
        "error 2024-10-14T02:30:34.000 nodeos main.cpp:176 main ] std::bad_alloc",
        "error ... database dirty flag set (likely due to unclean shutdown): replay required",
        "warn  ... Database has reached an unsafe level of usage, shutting down",
    ],
)
def test_fatal_log_lines_are_critical_and_stay_so(cli, nodeos, write_env, tmp_path, line):
    log = tmp_path / "nodeos.log"
    log.write_text("info old line\nerror std::bad_alloc from last month\n")
    env_file = write_env(NODEOS_URL=nodeos.url, NODEOS_LOG=log)
    code, checks = run_json(cli, env_file)
    assert checks["nodeos_log"]["status"] == "OK"  # history before the first run is not news
    with log.open("a") as handle:
        handle.write(f"info applied block\n{line}\n")
    code, checks = run_json(cli, env_file)
    assert code == 2
    assert checks["nodeos_log"]["status"] == "CRITICAL"
    assert "fatal line just now" in checks["nodeos_log"]["summary"]
    code, checks = run_json(cli, env_file)  # no new lines, but the node is still broken
    assert checks["nodeos_log"]["status"] == "CRITICAL"


def test_log_rotation_loses_no_line(cli, nodeos, write_env, tmp_path):
    log = tmp_path / "nodeos.log"
    log.write_text("info start\n")
    env_file = write_env(NODEOS_URL=nodeos.url, NODEOS_LOG=log)
    run_json(cli, env_file)
    with log.open("a") as handle:
        handle.write("error std::bad_alloc just before rotation\n")
    log.rename(tmp_path / "nodeos.log.1")
    log.write_text("info new file\n")
    _code, checks = run_json(cli, env_file)
    assert checks["nodeos_log"]["status"] == "CRITICAL"
    assert "bad_alloc" in checks["nodeos_log"]["summary"]


def test_log_truncation_restarts_from_the_top(cli, nodeos, write_env, tmp_path):
    log = tmp_path / "nodeos.log"
    log.write_text("info " + "x" * 500 + "\n")
    env_file = write_env(NODEOS_URL=nodeos.url, NODEOS_LOG=log)
    run_json(cli, env_file)
    log.write_text("error std::bad_alloc\n")  # truncated and rewritten, shorter than before
    _code, checks = run_json(cli, env_file)
    assert checks["nodeos_log"]["status"] == "CRITICAL"


def test_a_second_run_while_one_holds_the_lock_exits_unknown(cli, nodeos, write_env, state_file):
    env_file = write_env(NODEOS_URL=nodeos.url)
    config = load(str(env_file))
    with run_lock(config.lock_file, datetime.now(UTC)):
        result = cli("--env-file", str(env_file))
    assert result.exit_code == 3
    assert result.output.startswith("CHECK-STATUS UNKNOWN - another check-status run holds")
    assert f"pid {os.getpid()}" in result.output
    assert not state_file.exists()  # it touched nothing


@pytest.mark.parametrize("json_flag_first", [True, False], ids=["group", "command"])
def test_json_asked_for_gets_json_even_when_the_run_cannot_start(
    cli, nodeos, write_env, state_file, json_flag_first
):
    def args(env_file) -> list[str]:
        common = ["--env-file", str(env_file)]
        return ["--json", *common, "run"] if json_flag_first else ["run", *common, "--json"]

    bad = write_env(NODEOS_URL=nodeos.url, HEAD_LAG_WARN_SECONDS="abc")
    result = cli(*args(bad))
    assert result.exit_code == 3
    document = json.loads(result.output)
    assert document["status"] == "UNKNOWN" and document["checks"] == []
    assert document["error"].startswith("config: HEAD_LAG_WARN_SECONDS='abc' is not valid")

    good = write_env(NODEOS_URL=nodeos.url)
    with run_lock(load(str(good)).lock_file, datetime.now(UTC)):
        result = cli(*args(good))
    assert result.exit_code == 3
    assert json.loads(result.output)["error"].startswith("another check-status run holds")


def test_concurrent_processes_one_proceeds(nodeos, write_env, state_file):
    nodeos.delay_seconds = 1.5
    env = dict(os.environ, CHECK_STATUS_ENV_FILE=str(write_env(NODEOS_URL=nodeos.url)))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "check_status"], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(5)
    ]
    outputs = [(p.wait(timeout=30), p.stdout.read()) for p in procs]
    codes = sorted(code for code, _ in outputs)
    assert codes == [0, 3, 3, 3, 3], outputs
    assert json.loads(state_file.read_text())["schema"] == 1


def test_corrupt_state_file_is_moved_aside(cli, nodeos, write_env, state_file):
    state_file.parent.mkdir(parents=True)
    state_file.write_text('{"schema": 1, "checks": {')
    result = cli("--env-file", str(write_env(NODEOS_URL=nodeos.url)), "-v")
    assert "not valid JSON" in result.output and "moved to" in result.output
    assert len(list(state_file.parent.glob("state.json.corrupt-*"))) == 1
    assert json.loads(state_file.read_text())["checks"]["nodeos"]["status"] == "OK"
    assert result.exit_code == 1  # the lost memory is worth a warning, once
    assert cli("--env-file", str(write_env(NODEOS_URL=nodeos.url))).exit_code == 0


def test_a_state_directory_that_is_a_file_still_reports_and_exits_3(
    cli, nodeos, write_env, tmp_path
):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    result = cli(
        "--env-file", str(write_env(NODEOS_URL=nodeos.url, STATE_FILE=blocker / "state.json"))
    )
    # No lock can be opened there: the run judges and reports, but sends and saves nothing.
    assert result.output.startswith("CHECK-STATUS UNKNOWN - ")
    assert f"cannot open the run lock {blocker}/state.json.lock" in result.output
    assert f"{blocker} is not a directory: fix STATE_FILE" in result.output
    assert "| 'nodeos_response'=" in result.output  # the results are still there
    assert result.exit_code == 3
    assert blocker.read_text() == "a file where the state directory should be"
    as_json = json.loads(
        cli(
            "--env-file",
            str(write_env(NODEOS_URL=nodeos.url, STATE_FILE=blocker / "state.json")),
            "--json",
        ).output
    )
    assert as_json["alerts"]["sms"] == "nothing sent: the run lock could not be opened"


def test_bad_config_value_is_one_line_and_exit_3(cli, write_env):
    result = cli("--env-file", str(write_env(HEAD_LAG_CRIT_SECONDS="soon")))
    assert result.exit_code == 3
    assert result.output == (
        "CHECK-STATUS UNKNOWN - config: HEAD_LAG_CRIT_SECONDS='soon' is not valid: "
        "expected a whole number from 1 to 86400\n"
    )


def test_missing_env_file_is_one_line_and_exit_3(cli, tmp_path):
    result = cli("--env-file", str(tmp_path / "missing.env"))
    assert result.exit_code == 3
    assert "missing.env does not exist" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_process_environment_wins_over_the_env_file(cli, nodeos, write_env):
    env_file = write_env(NODEOS_URL=f"http://127.0.0.1:{free_port()}")
    result = cli("--env-file", str(env_file), env={"NODEOS_URL": nodeos.url})
    assert result.exit_code == 0, result.output


def test_installed_console_script_against_nothing(tmp_path):
    """The "done when" of a fresh install: no nodeos at the default URL -> exit 2, plainly."""
    script = Path(sys.executable).with_name("check-status")
    if not script.exists():
        pytest.skip("console script not installed next to this python")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "STATE_FILE": str(tmp_path / "s.json")}
    env["NODEOS_URL"] = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [str(script), "-v"], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=30
    )
    assert done.returncode == 2
    assert "nodeos      CRITICAL  connection refused" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_config_is_frozen(nodeos, write_env):
    config = load(str(write_env(NODEOS_URL=nodeos.url)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.node_name = "x"  # type: ignore[misc]


def test_tls_error_is_named(cli, nodeos, write_env):
    """https:// to a plain-HTTP port: the handshake fails and says so."""
    code, checks = run_json(cli, write_env(NODEOS_URL=nodeos.url.replace("http://", "https://")))
    assert code == 2
    assert checks["nodeos"]["summary"].startswith("TLS error: ")


def test_a_cron_line_that_closes_stdin_still_runs_and_counts_as_scheduled(
    nodeos, write_env, state_file
):
    # `... run <&- >> log 2>&1`: Python then has no sys.stdin at all.
    env_file = write_env(NODEOS_URL=nodeos.url)
    done = subprocess.run(
        ["sh", "-c", f'exec "{sys.executable}" -m check_status --env-file "{env_file}" <&-'],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("CHECK-STATUS OK - ")
    state = json.loads(state_file.read_text())
    assert state["last_run"]["by"] == "schedule"
    assert state["last_scheduled_run"]["at"] == state["last_run"]["at"]


def test_a_usage_error_under_json_is_json_too(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "check_status", "--json", "--no-such-option"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parent.parent,
        env=dict(os.environ, STATE_FILE=str(tmp_path / "state.json")),
    )
    assert done.returncode == 3
    document = json.loads(done.stdout)
    assert document["status"] == "UNKNOWN"
    assert document["error"].startswith("usage: No such option '--no-such-option'")


def test_status_reads_damaged_delivery_records_without_a_traceback(cli, write_env, state_file):
    state_file.parent.mkdir(parents=True)
    state_file.write_text(
        json.dumps(
            {
                "schema": 1,
                "checks": {},
                "memory": {},
                "outbox": {"+14155550101": ["x", 5]},
                "delivery_failures": {"+14155550101": "bounced", "+14155550102": None},
            }
        )
    )
    for args in (["status"], ["status", "--json"]):
        result = cli("--env-file", str(write_env()), *args)
        assert result.exit_code == 0, result.output
        assert "internal error" not in result.output
