"""The real cron daemon runs the installed checker; a misnamed cron file never runs.

This waits for cron's minute boundary (up to about two minutes), so it is one
test, always run in CI, where tests/run-all.sh has started Debian's cron.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.standins import NodeosStandIn
from tests.test_install import run_install

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="writing /etc/cron.d needs root")


def last_run(state_file: Path) -> str | None:
    try:
        return json.loads(state_file.read_text())["last_run"]["at"]
    except (OSError, ValueError, KeyError):
        return None


def test_cron_really_runs_the_installed_checker(tmp_path):
    if subprocess.run(["pgrep", "-x", "cron"], capture_output=True).returncode != 0:
        subprocess.run(["cron"], check=True)
    cron_file = Path("/etc/cron.d/check-status-test")
    misnamed = Path("/etc/cron.d/check_status.sh")
    marker = tmp_path / "misnamed-file-ran"
    paths = {
        "PREFIX": str(tmp_path / "venv"),
        "BIN_DIR": str(tmp_path / "bin"),
        "CONFIG_DIR": str(tmp_path / "etc"),
        "STATE_DIR": str(tmp_path / "state"),
        "LOG_FILE": str(tmp_path / "check-status.log"),
        "CRON_FILE": str(cron_file),
        "LOGROTATE_FILE": str(tmp_path / "logrotate"),
    }
    state_file = tmp_path / "state" / "state.json"
    with NodeosStandIn() as nodeos:
        try:
            done = run_install(paths)
            assert done.returncode == 0, done.stdout + done.stderr
            # The incident's mistake, beside the right install: cron must ignore it.
            misnamed.write_text(f"* * * * * root touch {marker}  # check-status\n")
            misnamed.chmod(0o644)
            env_file = Path(paths["CONFIG_DIR"]) / "check-status.env"
            with env_file.open("a") as handle:
                handle.write(
                    f"NODEOS_URL={nodeos.url}\nHTTP_TIMEOUT_SECONDS=1\nNODE_NAME=cron-test\n"
                )
            # Straight after install, self-test says how long to wait.
            early = subprocess.run(
                [paths["BIN_DIR"] + "/check-status", "self-test", "--env-file", str(env_file)],
                capture_output=True,
                text=True,
                env={**os.environ, "CRON_FILE": str(cron_file)},
            )
            assert (
                "WARN freshness: installed" in early.stdout or "PASS freshness" in early.stdout
            ), early.stdout
            assert f"FAIL misnamed cron file: {misnamed} mentions check-status" in early.stdout
            # install.sh --check has no grace: until cron has run it, it FAILs.
            early_check = run_install(paths, "--check")
            if last_run(state_file) is None:
                assert early_check.returncode != 0, early_check.stdout
                assert re.search(
                    r"^FAIL freshness: cron has not run check-status yet \(installed \d+s ago\);"
                    r" wait a minute and run \./install\.sh --check again$",
                    early_check.stdout,
                    re.MULTILINE,
                ), early_check.stdout

            deadline = time.monotonic() + 135
            while last_run(state_file) is None and time.monotonic() < deadline:
                time.sleep(1)
            first = last_run(state_file)
            assert first is not None, "cron did not run check-status within 2 minutes"
            assert nodeos.get_info_count >= 1
            time.sleep(3)
            assert not marker.exists(), "cron ran a file whose name has a dot"

            misnamed.unlink()
            late = subprocess.run(
                [paths["BIN_DIR"] + "/check-status", "self-test", "--env-file", str(env_file)],
                capture_output=True,
                text=True,
                env={**os.environ, "CRON_FILE": str(cron_file)},
            )
            assert "PASS freshness: last scheduled run" in late.stdout, late.stdout
            assert "PASS cron daemon" in late.stdout
            late_check = run_install(paths, "--check")
            assert late_check.returncode == 0, late_check.stdout
            assert "PASS freshness: last scheduled run" in late_check.stdout
            assert "\nFAIL " not in "\n" + late_check.stdout
            log = Path(paths["LOG_FILE"]).read_text()
            assert log.startswith("CHECK-STATUS OK - "), log
        finally:
            misnamed.unlink(missing_ok=True)
            run_install(paths, "--uninstall", "--purge")
    assert not cron_file.exists()
    assert not (tmp_path / "state").exists() and not (tmp_path / "venv").exists()
