"""The Prometheus textfile, parsed strictly, and peers watching each other's checker."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from check_status.config import load
from check_status.serve import HealthServer
from tests.conftest import checks_by_name
from tests.standins import free_port


def families(path: Path) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(path.read_text())}


def test_every_run_writes_a_textfile_that_parses(cli, nodeos, write_env, tmp_path):
    nodeos.db_size_enabled = True
    textfile = tmp_path / "check_status.prom"
    env_file = write_env(NODEOS_URL=nodeos.url, PROMETHEUS_TEXTFILE=textfile)
    assert cli("--env-file", str(env_file)).exit_code == 0
    metrics = families(textfile)
    status = {s.labels["check"]: s.value for s in metrics["check_status_status"]}
    assert status["nodeos"] == 0 and status["head_block"] == 0 and status[f"disk:{tmp_path}"] == 0
    assert 0 <= metrics["check_status_head_lag_seconds"][0].value < 5
    assert metrics["check_status_lib_lag_blocks"][0].value == 332
    assert metrics["check_status_state_db_used_ratio"][0].value == 0.25
    assert 0 < metrics["check_status_disk_used_ratio"][0].value < 1
    assert metrics["check_status_disk_used_ratio"][0].labels["path"] == str(tmp_path)
    assert 0 < metrics["check_status_nodeos_response_seconds"][0].value < 3
    now = datetime.now(UTC).timestamp()
    assert abs(metrics["check_status_last_run_timestamp_seconds"][0].value - now) < 60
    assert metrics["check_status_open_incidents"][0].value == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".check_status.prom")] == []


def test_textfile_tracks_an_outage(cli, write_env, tmp_path):
    textfile = tmp_path / "out.prom"
    env_file = write_env(NODEOS_URL=f"http://127.0.0.1:{free_port()}", ALERT_AFTER=1)
    cli("--env-file", str(env_file), "run", "--prometheus-textfile", str(textfile))
    metrics = families(textfile)
    status = {s.labels["check"]: s.value for s in metrics["check_status_status"]}
    assert status["nodeos"] == 2 and status["head_block"] == 3
    assert metrics["check_status_open_incidents"][0].value == 1
    assert "check_status_head_lag_seconds" not in metrics  # no number is better than a made-up one


def test_an_unwritable_textfile_is_a_warning_on_the_runs_own_line(cli, nodeos, write_env, tmp_path):
    """Silent before: Prometheus alerting went blind while every run said OK."""
    env_file = write_env(
        NODEOS_URL=nodeos.url, PROMETHEUS_TEXTFILE=tmp_path / "missing-dir" / "x.prom"
    )
    result = cli("--env-file", str(env_file))
    assert result.exit_code == 1
    assert "cannot write the Prometheus textfile" in result.output.splitlines()[0]


@pytest.fixture
def peer(write_env, tmp_path):
    """A peer node's `check-status serve`, with a state file whose last run we choose."""
    servers = []

    def start(last_run_age: float | None, by_hand_age: float | None = None):
        """The peer's last scheduled run so long ago; then maybe one typed by hand."""
        state_file = tmp_path / "peer-state.json"
        state = {"schema": 1, "checks": {}, "memory": {}}
        if last_run_age is not None:
            at = (datetime.now(UTC) - timedelta(seconds=last_run_age)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            state["last_run"] = {"at": at, "status": "OK", "by": "schedule"}
            state["last_scheduled_run"] = {"at": at}
        if by_hand_age is not None:
            at = (datetime.now(UTC) - timedelta(seconds=by_hand_age)).strftime("%Y-%m-%dT%H:%M:%SZ")
            state["last_run"] = {"at": at, "status": "OK", "by": "hand"}
        state_file.write_text(json.dumps(state))
        config = load(str(write_env(STATE_FILE=state_file, NODE_NAME="eu1")))
        server = HealthServer(config, ("127.0.0.1", 0))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def run_with_peer(cli, nodeos, tmp_path, peer_url):
    env_file = tmp_path / "me.env"
    env_file.write_text(
        f"NODE_NAME=eu2\nNODEOS_URL={nodeos.url}\nPEERS=eu1={peer_url}\n"
        f"STATE_FILE={tmp_path}/me.json\nDISK_PATHS={tmp_path}\n"
    )
    result = cli("--env-file", str(env_file), "--json")
    return result.exit_code, checks_by_name(result.output)["peer:eu1"]


def test_a_peer_whose_checker_stopped_is_critical(cli, nodeos, tmp_path, peer):
    code, check = run_with_peer(cli, nodeos, tmp_path, peer(last_run_age=300))
    assert code == 2
    assert check["status"] == "CRITICAL"
    assert check["summary"] == "its checker stopped: last cron run 5m ago"


def test_a_peer_run_by_hand_while_its_cron_is_broken_is_still_critical(cli, nodeos, tmp_path, peer):
    # An operator's `check-status -v` on the peer a moment ago proves nothing about its cron.
    code, check = run_with_peer(cli, nodeos, tmp_path, peer(last_run_age=600, by_hand_age=10))
    assert code == 2
    assert check["summary"] == "its checker stopped: last cron run 10m ago"


def test_a_peer_that_runs_is_ok(cli, nodeos, tmp_path, peer):
    code, check = run_with_peer(cli, nodeos, tmp_path, peer(last_run_age=40))
    assert code == 0
    # 40s, or 41s when the second turns over between the peer's answer and our judging it.
    assert check["status"] == "OK"
    assert re.match(r"checker ran 4[01]s ago \(OK\)", check["summary"]), check["summary"]


def test_a_peer_that_never_ran_is_critical(cli, nodeos, tmp_path, peer):
    _code, check = run_with_peer(cli, nodeos, tmp_path, peer(last_run_age=None))
    assert check["status"] == "CRITICAL" and "never run" in check["summary"]


def test_an_unreachable_peer_is_critical(cli, nodeos, tmp_path):
    _code, check = run_with_peer(cli, nodeos, tmp_path, f"http://127.0.0.1:{free_port()}")
    assert check == {
        "name": "peer:eu1",
        "status": "CRITICAL",
        "summary": "unreachable: connection refused",
        "metrics": {},
    }


@pytest.mark.parametrize(
    ("peer_clock_ahead_minutes", "ran_before_peer_now", "expected"),
    [
        (60, 30, "OK"),  # the peer's clock is an hour ahead: still ran 30 s ago
        (-60, 30, "OK"),  # an hour behind
        (60, 300, "CRITICAL"),  # stopped 5 minutes ago by its own clock
        (-60, 300, "CRITICAL"),
    ],
)
def test_a_peer_is_judged_on_its_own_clock(peer_clock_ahead_minutes, ran_before_peer_now, expected):
    from check_status.checks.peer import judge_peer

    ours = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
    theirs = ours + timedelta(minutes=peer_clock_ahead_minutes)
    ran = theirs - timedelta(seconds=ran_before_peer_now)
    status = {
        "time": theirs.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "last_run": {"at": ran.strftime("%Y-%m-%dT%H:%M:%SZ"), "status": "OK"},
        "last_scheduled_run": {"at": ran.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }
    assert judge_peer("eu1", status, ours).status.name == expected


@pytest.mark.parametrize(
    ("status", "expected", "words"),
    [
        ({"last_scheduled_run": {"at": "2026-11-26T01:59:30Z"}, "last_run": None}, "OK", "(?)"),
        ({"last_scheduled_run": {"at": "2026-11-26T01:59:30Z"}, "last_run": "x"}, "OK", "(?)"),
        (
            {"last_scheduled_run": {"at": None}, "last_run": {"at": "2026-11-26T01:59:30Z"}},
            "CRITICAL",
            "never run by cron",
        ),
        (
            {"last_scheduled_run": {"at": "2026-11-26T01:59:30Z"}, "time": "not a time"},
            "OK",
            "30s ago",
        ),  # an unreadable peer clock: judged on ours
        ("not a document", "CRITICAL", "never run by cron"),
        ({"last_run": {"at": "2026-11-26T01:59:30Z", "status": "OK"}}, "OK", "(OK)"),  # older peer
    ],
)
def test_a_damaged_peer_status_is_judged_without_a_traceback(status, expected, words):
    from check_status.checks.peer import judge_peer

    result = judge_peer("eu1", status, datetime(2026, 11, 26, 2, 0, tzinfo=UTC))
    assert result.status.name == expected and words in result.summary, result
