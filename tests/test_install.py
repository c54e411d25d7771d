"""install.sh into a temporary root, install.sh --check after each way an
installation can be silently broken, --user mode, and uninstall.

These tests need root (cron.d files must be owned by root) and Debian's cron
daemon running, as in CI (tests/run-all.sh starts it). The temporary root's
paths go on install.sh's command line (NAME=VALUE), never through the
environment, and CRON_D names the temporary etc/cron.d that stands in for
/etc/cron.d; the cron daemon never reads it, so a test that needs a scheduled
run makes one as cron would (`run_as_cron`). tests/test_cron_real.py has the
real daemon run the real /etc/cron.d.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "install.sh"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="install.sh tests need root")


def layout(root: Path) -> dict[str, str]:
    return {
        "PREFIX": str(root / "opt" / "check-status"),
        "BIN_DIR": str(root / "usr" / "local" / "bin"),
        "CONFIG_DIR": str(root / "etc" / "check-status"),
        "STATE_DIR": str(root / "var" / "lib" / "check-status"),
        "LOG_FILE": str(root / "var" / "log" / "check-status.log"),
        "CRON_FILE": str(root / "etc" / "cron.d" / "check-status"),
        "LOGROTATE_FILE": str(root / "etc" / "logrotate.d" / "check-status"),
        "CRON_D": str(root / "etc" / "cron.d"),
    }


PATH_VARIABLES = (
    "PREFIX",
    "BIN_DIR",
    "CONFIG_DIR",
    "STATE_DIR",
    "LOG_FILE",
    "CRON_FILE",
    "LOGROTATE_FILE",
    "CRON_D",
)


def run_install(
    paths: dict[str, str],
    *args: str,
    home: Path | None = None,
    environment: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """install.sh with `paths` on its command line; `environment` is what the caller exported."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHECK_STATUS", "STATE_FILE")) and k not in PATH_VARIABLES
    }
    env.update(environment or {})
    if home is not None:
        env["HOME"] = str(home)
    assignments = [f"{k}={v}" for k, v in paths.items()]
    return subprocess.run(
        ["bash", str(INSTALL), *args, *assignments],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_as_cron(paths: dict[str, str]) -> None:
    """One run as cron makes it: no terminal, so it counts as the scheduled run."""
    env_file = Path(paths["CONFIG_DIR"]) / "check-status.env"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHECK_STATUS", "STATE_FILE"))}
    subprocess.run(
        [str(Path(paths["PREFIX"]) / "bin" / "check-status"), "run", "--env-file", str(env_file)],
        env={**env, "CRON_FILE": paths["CRON_FILE"], "NODEOS_URL": "http://127.0.0.1:9"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    state = json.loads((Path(paths["STATE_DIR"]) / "state.json").read_text())
    assert state["last_scheduled_run"]["at"]


@pytest.fixture(scope="module")
def cron_running() -> None:
    if subprocess.run(["pgrep", "-x", "cron"], capture_output=True).returncode != 0:
        subprocess.run(["cron"], check=True)


@pytest.fixture(scope="module")
def installed(tmp_path_factory, cron_running) -> dict[str, str]:
    root = tmp_path_factory.mktemp("root")
    paths = layout(root)
    done = run_install(paths)
    assert done.returncode == 0, done.stdout + done.stderr
    return paths


@pytest.fixture
def restore_cron_file(installed):
    """Each breakage test restores the cron file and the executable afterwards."""
    cron_file = Path(installed["CRON_FILE"])
    executable = Path(installed["PREFIX"]) / "bin" / "check-status"
    saved = cron_file.read_bytes()
    yield
    for leftover in cron_file.parent.iterdir():
        leftover.unlink()
    cron_file.write_bytes(saved)
    cron_file.chmod(0o644)
    renamed = executable.with_name("check-status.old")
    if renamed.exists():
        renamed.rename(executable)


def check(paths: dict[str, str]) -> subprocess.CompletedProcess:
    return run_install(paths, "--check")


def test_fresh_install_lays_everything_out(installed):
    executable = Path(installed["PREFIX"]) / "bin" / "check-status"
    link = Path(installed["BIN_DIR"]) / "check-status"
    env_file = Path(installed["CONFIG_DIR"]) / "check-status.env"
    cron_file = Path(installed["CRON_FILE"])
    assert link.resolve() == executable.resolve() and os.access(executable, os.X_OK)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    env_text = env_file.read_text()
    assert f"\nSTATE_FILE={installed['STATE_DIR']}/state.json\n" in env_text
    assert f"\nCRON_FILE={installed['CRON_FILE']}\n" in env_text
    for key in ("NODEOS_URL", "TWILIO_AUTH_TOKEN", "ALERT_TO", "HEARTBEAT_URL", "DISK_PATHS"):
        assert f"\n#{key}=" in env_text  # every key, commented, with its default
    info = cron_file.stat()
    assert stat.S_IMODE(info.st_mode) == 0o644 and info.st_uid == 0
    text = cron_file.read_text()
    assert text.endswith("\n")
    assert 'SHELL=/bin/sh\nPATH=/usr/bin:/bin\nMAILTO=""\n' in text
    logrotate = Path(installed["LOGROTATE_FILE"]).read_text()
    assert logrotate.startswith(
        f"# check-status: written by install.sh\n{installed['LOG_FILE']} {{\n"
    )
    assert "rotate 8" in logrotate
    assert text.splitlines()[-1] == (
        f"* * * * * root {executable} run --env-file {env_file} >> {installed['LOG_FILE']} 2>&1"
    )


def test_check_passes_on_a_good_install(installed):
    run_as_cron(installed)
    done = check(installed)
    assert done.returncode == 0, done.stdout
    assert "\nFAIL " not in "\n" + done.stdout
    assert "check: 0 FAIL" in done.stdout
    assert "PASS freshness: last scheduled run" in done.stdout
    assert (
        f"WARN cron directory: {installed['CRON_D']} stands in for /etc/cron.d (CRON_D, for tests)"
        in done.stdout
    )
    assert (
        "PASS cron command:" in done.stdout and "PASS cron daemon: cron is running" in done.stdout
    )


def test_reinstall_is_idempotent_and_keeps_the_env_file(installed):
    env_file = Path(installed["CONFIG_DIR"]) / "check-status.env"
    env_file.write_text(env_file.read_text() + "NODE_NAME=eu2\n")
    before_env = env_file.read_bytes()
    before_cron = Path(installed["CRON_FILE"]).read_bytes()
    done = run_install(installed)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"keeping the existing {env_file}" in done.stdout
    assert env_file.read_bytes() == before_env
    assert Path(installed["CRON_FILE"]).read_bytes() == before_cron
    assert sorted(p.name for p in Path(installed["CRON_FILE"]).parent.iterdir()) == ["check-status"]


def test_renamed_executable_fails_check(installed, restore_cron_file):
    executable = Path(installed["PREFIX"]) / "bin" / "check-status"
    executable.rename(executable.with_name("check-status.old"))
    done = check(installed)
    assert done.returncode != 0
    assert f"FAIL cron command: {executable} does not exist: cron runs nothing" in done.stdout


def test_cron_file_with_a_dot_fails_check(installed, restore_cron_file):
    cron_file = Path(installed["CRON_FILE"])
    dotted = cron_file.with_name("check_status.sh")
    cron_file.rename(dotted)
    done = check(installed)
    assert done.returncode != 0
    assert f"FAIL cron file: {cron_file} does not exist" in done.stdout
    assert (
        f"FAIL misnamed cron file: {dotted} mentions check-status but cron never runs it"
        in done.stdout
    )
    assert "a character cron ignores (a dot?)" in done.stdout


def test_dotted_cron_file_named_in_config_explains_why(installed, restore_cron_file):
    cron_file = Path(installed["CRON_FILE"])
    dotted = cron_file.with_name("check-status.cron")
    cron_file.rename(dotted)
    done = check({**installed, "CRON_FILE": str(dotted)})
    assert done.returncode != 0
    assert "cron ignores the file without a word" in done.stdout


def test_group_writable_cron_file_fails_check(installed, restore_cron_file):
    Path(installed["CRON_FILE"]).chmod(0o664)
    done = check(installed)
    assert done.returncode != 0
    assert "is mode 0664, group- or other-writable: cron skips it" in done.stdout
    assert f"fix: chmod 0644 {installed['CRON_FILE']}" in done.stdout


def test_missing_final_newline_fails_check(installed, restore_cron_file):
    cron_file = Path(installed["CRON_FILE"])
    cron_file.write_bytes(cron_file.read_bytes().rstrip(b"\n"))
    done = check(installed)
    assert done.returncode != 0
    assert "has no final newline: cron ignores its last line" in done.stdout


def test_a_second_entry_fails_check(installed, restore_cron_file):
    cron_file = Path(installed["CRON_FILE"])
    last = cron_file.read_text().splitlines()[-1]
    cron_file.write_text(cron_file.read_text() + last.replace("* * * * *", "*/5 * * * *") + "\n")
    done = check(installed)
    assert done.returncode != 0
    assert "2 check-status entries" in done.stdout


def test_readable_env_file_fails_check_only_with_a_secret_in_it(installed):
    env_file = Path(installed["CONFIG_DIR"]) / "check-status.env"
    env_file.chmod(0o644)
    try:
        # As written by install.sh, with the token still empty: nothing to leak.
        quiet = check(installed)
        with env_file.open("a") as handle:
            handle.write("TWILIO_AUTH_TOKEN=" + "ab" * 16 + "\n")
        done = check(installed)
    finally:
        env_file.chmod(0o600)
    assert "it holds no secret" in quiet.stdout
    assert done.returncode != 0
    assert "other users can read the Twilio token in it (TWILIO_AUTH_TOKEN)" in done.stdout


def test_user_mode_keeps_other_crontab_lines(tmp_path, cron_running):
    saved = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    others = "# my backups\n15 3 * * * /usr/local/bin/backup --all\nMAILTO=ops@example.com\n"
    subprocess.run(["crontab", "-"], input=others, text=True, check=True)
    home = tmp_path / "home"
    home.mkdir()
    try:
        for _ in range(2):  # twice: the second must not duplicate the entry
            done = run_install({}, "--user", home=home)
            assert "cron entry written to your crontab (other lines kept)" in done.stdout, (
                done.stdout
            )
        lines = subprocess.run(
            ["crontab", "-l"], capture_output=True, text=True
        ).stdout.splitlines()
        assert lines[:3] == others.splitlines()
        ours = [line for line in lines if "check-status" in line]
        assert len(ours) == 1
        assert ours[0].startswith(
            f"* * * * * {home}/.local/share/check-status/venv/bin/check-status run "
        )
        assert ours[0].endswith(
            "# check-status (managed by install.sh; other lines are left alone)"
        )
        assert (home / ".config" / "check-status" / "check-status.env").exists()
        done = run_install({}, "--user", "--check", home=home)
        assert "PASS cron entry: schedule * * * * * in your crontab" in done.stdout, done.stdout
        run_install({}, "--user", "--uninstall", home=home)
        after = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
        assert after == others
    finally:
        if saved.returncode == 0:
            subprocess.run(["crontab", "-"], input=saved.stdout, text=True, check=True)
        else:
            subprocess.run(["crontab", "-r"], capture_output=True)


def test_uninstall_keeps_config_and_state_unless_purged(tmp_path, cron_running):
    paths = layout(tmp_path)
    assert run_install(paths).returncode == 0
    state_dir = Path(paths["STATE_DIR"])
    (state_dir / "state.json").write_text("{}")
    done = run_install(paths, "--uninstall")
    assert done.returncode == 0
    assert not Path(paths["CRON_FILE"]).exists()
    assert not Path(paths["LOGROTATE_FILE"]).exists()
    assert not Path(paths["PREFIX"]).exists()
    assert not (Path(paths["BIN_DIR"]) / "check-status").exists()
    assert (Path(paths["CONFIG_DIR"]) / "check-status.env").exists()
    assert (state_dir / "state.json").exists()
    run_install(paths, "--uninstall", "--purge")
    assert not (Path(paths["CONFIG_DIR"]) / "check-status.env").exists()
    assert not state_dir.exists()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_unknown_option_is_refused(tmp_path):
    done = run_install(layout(tmp_path), "--frobnicate")
    assert done.returncode == 2
    assert "unknown option '--frobnicate'" in done.stderr
