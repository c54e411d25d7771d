"""Ways monitoring could look installed while it cannot page, and that it no longer can.

- a heartbeat the service refuses (4xx) is a WARNING on the run's own line;
- the ping carries the run's one-line result, not just its status word;
- `install.sh --check` fails until cron has run the job, and when the last
  scheduled run is stale;
- a cron file outside the one directory cron reads FAILs;
- `install.sh --uninstall --purge` removes only what its manifest lists, never a
  STATE_DIR (or PREFIX) that the operator's shell happens to export.

The install tests drive the real install.sh into a temporary root (see
tests/test_install.py), with CRON_D naming the root's etc/cron.d.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from check_status.model import CheckResult, Status, format_time
from check_status.runner import MAX_PING_BODY_BYTES, RunReport, ping_body
from tests.test_install import layout, run_as_cron, run_install

SECRET = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="install.sh tests need root")


# --- a heartbeat service that answers what it is told -------------------------------


class PingService:
    """A dead-man's switch that records each ping's path and body and answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.pings: list[tuple[str, str]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                service.pings.append((self.path, body))
                answer = b"OK" if service.status < 300 else b"not found"
                self.send_response(service.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ping/{SECRET}"
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> PingService:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ping_service() -> Iterator[PingService]:
    with PingService() as service:
        yield service


def the_line(output: str) -> str:
    [line] = [ln for ln in output.splitlines() if ln.startswith("CHECK-STATUS ")]
    return line


def test_a_ping_answered_404_is_a_warning_on_the_runs_own_line(
    cli, nodeos, write_env, ping_service
):
    ping_service.status = 404
    result = cli(
        "--env-file", str(write_env(NODEOS_URL=nodeos.url, HEARTBEAT_URL=ping_service.url))
    )
    line = the_line(result.output)
    assert result.exit_code == 1, result.output
    assert line.startswith("CHECK-STATUS WARNING - "), line
    assert (
        f" / heartbeat to {ping_service.host} failed: HTTP 404: the check does not exist,"
        " fix HEARTBEAT_URL" in line
    ), line
    assert SECRET not in result.output


@pytest.mark.parametrize(
    ("status", "why"),
    [(403, "the service refuses the ping key"), (410, "the check was deleted")],
)
def test_every_refusal_names_what_to_fix(cli, nodeos, write_env, ping_service, status, why):
    ping_service.status = status
    result = cli(
        "--env-file", str(write_env(NODEOS_URL=nodeos.url, HEARTBEAT_URL=ping_service.url))
    )
    assert f"failed: HTTP {status}: {why}, fix HEARTBEAT_URL" in the_line(result.output)


def test_a_ping_answered_503_stays_a_remark(cli, nodeos, write_env, ping_service):
    # The service is down, not refusing: it alerts on its own when pings stop.
    ping_service.status = 503
    env_file = write_env(NODEOS_URL=nodeos.url, HEARTBEAT_URL=ping_service.url)
    result = cli("--env-file", str(env_file))
    assert result.exit_code == 0, result.output
    assert the_line(result.output).startswith("CHECK-STATUS OK - ")
    assert "heartbeat" not in the_line(result.output)
    verbose = cli("--env-file", str(env_file), "-v")
    assert f"note: heartbeat to {ping_service.host} failed: HTTP 503" in verbose.output


def test_the_ping_carries_the_runs_line_without_perfdata(cli, nodeos, write_env, ping_service):
    result = cli(
        "--env-file", str(write_env(NODEOS_URL=nodeos.url, HEARTBEAT_URL=ping_service.url))
    )
    line = the_line(result.output)
    assert " | " in line  # perfdata on the printed line...
    [(path, body)] = ping_service.pings
    assert path == f"/ping/{SECRET}"
    assert body == line.partition(" | ")[0]  # ...but not in the ping
    assert body.startswith("CHECK-STATUS OK - ")


def test_a_critical_ping_says_what_is_wrong(cli, write_env, ping_service):
    down = "http://127.0.0.1:9"
    result = cli("--env-file", str(write_env(NODEOS_URL=down, HEARTBEAT_URL=ping_service.url)))
    assert result.exit_code == 2
    [(path, body)] = ping_service.pings
    assert path == f"/ping/{SECRET}/fail"
    assert body.startswith("CHECK-STATUS CRITICAL - nodeos: connection refused (127.0.0.1:9)"), body
    assert body == the_line(result.output).partition(" | ")[0]


def test_the_trouble_rides_on_the_line(cli, nodeos, write_env, ping_service, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env_file = write_env(
        NODEOS_URL=nodeos.url,
        HEARTBEAT_URL=ping_service.url,
        STATE_FILE=str(blocker / "state.json"),
    )
    result = cli("--env-file", str(env_file))
    [(path, body)] = ping_service.pings
    assert path.endswith("/fail")
    assert body == the_line(result.output).partition(" | ")[0] + (
        " / run lock unavailable, nothing texted"
    )


def test_a_ping_body_stays_under_10000_bytes():
    result = CheckResult("nodeos", Status.CRITICAL, "é" * 30_000)
    report = RunReport("eu2", datetime.now(UTC), (result,), "/tmp/state.json", ("x" * 20_000,))
    body = ping_body(report, "state file not saved")
    assert body.startswith("CHECK-STATUS CRITICAL - nodeos: éé")
    assert len(body.encode()) <= MAX_PING_BODY_BYTES < 10_000


# --- install.sh --check: freshness ---------------------------------------------------


@pytest.fixture
def cron_running() -> None:
    import subprocess

    if subprocess.run(["pgrep", "-x", "cron"], capture_output=True).returncode != 0:
        subprocess.run(["cron"], check=True)


@pytest.fixture
def installed(tmp_path, cron_running) -> Iterator[dict[str, str]]:
    paths = layout(tmp_path / "root")
    done = run_install(paths)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "SKIP freshness: NOT CHECKED: cron has not had its first minute yet; in a minute run"
        " ./install.sh --check, which fails until cron has run it" in done.stdout
    )
    yield paths
    run_install(paths, "--uninstall", "--purge")


@needs_root
def test_check_fails_until_cron_has_run_the_job(installed):
    done = run_install(installed, "--check")
    assert done.returncode != 0, done.stdout
    assert re.search(
        r"^FAIL freshness: cron has not run check-status yet \(installed \d+s ago\);"
        r" wait a minute and run \./install\.sh --check again$",
        done.stdout,
        re.MULTILINE,
    ), done.stdout
    run_as_cron(installed)
    done = run_install(installed, "--check")
    assert done.returncode == 0, done.stdout
    assert "PASS freshness: last scheduled run" in done.stdout


@needs_root
def test_check_fails_when_cron_ran_it_long_ago(installed):
    run_as_cron(installed)
    state_file = Path(installed["STATE_DIR"]) / "state.json"
    state = json.loads(state_file.read_text())
    ten_minutes_ago = format_time(datetime.now(UTC) - timedelta(minutes=10))
    state["last_scheduled_run"] = {"at": ten_minutes_ago}
    state["last_run"]["at"] = ten_minutes_ago
    state_file.write_text(json.dumps(state))
    hour_ago = time.time() - 3600
    os.utime(installed["CRON_FILE"], (hour_ago, hour_ago))
    done = run_install(installed, "--check")
    assert done.returncode != 0, done.stdout
    assert (
        "FAIL freshness: installed but not running: the last scheduled run was 10m ago"
        in done.stdout
    ), done.stdout


@needs_root
def test_check_fails_when_no_scheduled_run_was_ever_recorded(installed):
    hour_ago = time.time() - 3600
    os.utime(installed["CRON_FILE"], (hour_ago, hour_ago))
    done = run_install(installed, "--check")
    assert done.returncode != 0
    assert (
        "FAIL freshness: installed but not running: no scheduled run recorded in the state file"
        in done.stdout
    ), done.stdout


# --- the cron file must be where cron reads ------------------------------------------


@needs_root
def test_a_cron_file_outside_cron_d_fails(tmp_path, cron_running):
    root = tmp_path / "root"
    paths = {**layout(root), "CRON_FILE": str(root / "etc" / "check-status" / "cron")}
    cron_d = paths["CRON_D"]
    expected = (
        f"FAIL cron file: {paths['CRON_FILE']} is not in {cron_d}, which is the only directory"
        f" cron reads; move it to {cron_d}/check-status"
    )
    try:
        done = run_install(paths)
        assert done.returncode != 0, done.stdout
        assert expected in done.stdout.splitlines(), done.stdout
        assert "the installation is not right; see FAIL above" in done.stderr
        done = run_install(paths, "--check")
        assert done.returncode != 0
        assert expected in done.stdout.splitlines()
        assert (
            f"     fix: mv {paths['CRON_FILE']} {cron_d}/check-status,"
            f" and set CRON_FILE={cron_d}/check-status in the env file" in done.stdout
        )
    finally:
        run_install(paths, "--uninstall", "--purge")
    assert not Path(paths["CRON_FILE"]).exists()


# --- --uninstall --purge removes only what the manifest lists -------------------------


def manifest_paths(paths: dict[str, str]) -> list[Path]:
    text = (Path(paths["CONFIG_DIR"]) / "install-manifest").read_text()
    lines = text.splitlines()
    assert lines[0].startswith("# check-status install manifest")
    return [Path(line.split(" ", 1)[1]) for line in lines[1:]]


@needs_root
def test_the_manifest_lists_what_install_created(installed):
    manifest = Path(installed["CONFIG_DIR"]) / "install-manifest"
    info = manifest.stat()
    assert oct(info.st_mode & 0o777) == "0o644" and info.st_uid == 0
    kinds = [line.split(" ", 1)[0] for line in manifest.read_text().splitlines()[1:]]
    assert kinds == [
        "venv",
        "link",
        "config-dir",
        "env",
        "state-dir",
        "log",
        "cron",
        "logrotate",
    ]
    assert all(path.exists() for path in manifest_paths(installed))


@needs_root
def test_purge_leaves_a_state_dir_exported_for_nodeos_alone(tmp_path, cron_running):
    paths = layout(tmp_path / "root")
    assert run_install(paths).returncode == 0
    (Path(paths["STATE_DIR"]) / "state.json").write_text("{}")
    ours = manifest_paths(paths)
    # The operator's shell, set up for nodeos: its data dir, and another venv.
    nodeos_data = tmp_path / "nodeos" / "data"
    (nodeos_data / "blocks").mkdir(parents=True)
    (nodeos_data / "blocks" / "blocks.log").write_text("blocks")
    (nodeos_data / "state.json").write_text("{}")
    other_venv = tmp_path / "other-venv"
    other_venv.mkdir()
    (other_venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    exported = {
        "STATE_DIR": str(nodeos_data),
        "PREFIX": str(other_venv),
        "LOG_FILE": str(nodeos_data / "blocks" / "blocks.log"),
    }
    # Only CONFIG_DIR on the command line: it says where the manifest is.
    done = run_install(
        {"CONFIG_DIR": paths["CONFIG_DIR"]},
        "--uninstall",
        "--purge",
        environment=exported,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (nodeos_data / "blocks" / "blocks.log").read_text() == "blocks"
    assert (nodeos_data / "state.json").exists()
    assert (other_venv / "pyvenv.cfg").exists()
    assert f"install.sh: ignoring STATE_DIR={nodeos_data} from the environment" in done.stdout
    assert [path for path in ours if path.exists()] == []
    assert not (Path(paths["CONFIG_DIR"]) / "install-manifest").exists()


@needs_root
def test_the_old_environment_form_works_when_it_matches_the_manifest(tmp_path, cron_running):
    paths = layout(tmp_path / "root")
    assert run_install(paths).returncode == 0
    ours = manifest_paths(paths)
    done = run_install({}, "--uninstall", "--purge", environment=paths)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [path for path in ours if path.exists()] == []


@needs_root
def test_a_listed_state_dir_with_foreign_files_is_kept(tmp_path, cron_running):
    paths = layout(tmp_path / "root")
    assert run_install(paths).returncode == 0
    state_dir = Path(paths["STATE_DIR"])
    (state_dir / "state.json").write_text("{}")
    (state_dir / "notes.txt").write_text("mine")
    done = run_install(paths, "--uninstall", "--purge")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"kept {state_dir}: it holds files check-status did not write" in done.stdout
    assert (state_dir / "notes.txt").read_text() == "mine"
    assert not (Path(paths["CONFIG_DIR"]) / "check-status.env").exists()
    assert not Path(paths["PREFIX"]).exists()


def test_a_textfile_that_cannot_be_written_rides_on_the_ping(
    cli, nodeos, write_env, ping_service, tmp_path
):
    """Prometheus alerting blind is the heartbeat's business too: its body says so."""
    textfile = tmp_path / "missing-dir" / "check_status.prom"
    env_file = write_env(
        NODEOS_URL=nodeos.url, HEARTBEAT_URL=ping_service.url, PROMETHEUS_TEXTFILE=textfile
    )
    result = cli("--env-file", str(env_file))
    assert result.exit_code == 1, result.output
    [(_path, body)] = ping_service.pings
    assert f"cannot write the Prometheus textfile {textfile}" in body
    assert body == the_line(result.output).partition(" | ")[0]
