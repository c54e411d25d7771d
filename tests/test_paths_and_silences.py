"""Paths that would destroy things or let another user interfere, and silences of
checks that do not exist: each is refused with one line that names the fix.

The cases where another user plants a symlink or holds the lock run as a real
second user, created here (`useradd`), so the kernel's permission checks are
the ones a node would apply.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.standins import NodeosStandIn, TwilioStandIn, free_port

SCRIPT = str(Path(sys.executable).with_name("check-status"))
TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
SMS = {
    "TWILIO_ACCOUNT_SID": "AC" + "0123456789abcdef" * 2,
    "TWILIO_AUTH_TOKEN": TOKEN,
    "TWILIO_FROM": "+15005550006",
    "ALERT_TO": "+14155550101",
    "ALERT_AFTER": "1",
}
OTHER_USER = "cs-other-user"


def run(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args, "--env-file", str(env_file)],
        env={"PATH": os.environ["PATH"], "HOME": str(env_file.parent), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    return lines[0]


@pytest.fixture
def fallback(tmp_path: Path) -> Path:
    return tmp_path / "fallback"


def test_state_file_pointing_at_the_env_file_is_never_touched(
    write_env, nodeos, tmp_path, fallback
):
    """Root once renamed the env file away and wrote JSON in its place: SMS went off."""
    env_file = tmp_path / "check-status.env"
    write_env(NODEOS_URL=nodeos.url, STATE_FILE=env_file, STATE_FALLBACK_DIR=fallback)
    before = env_file.read_bytes()
    done = run(env_file)
    line = one_line(done)
    assert done.returncode == 3
    assert (
        f"STATE_FILE {env_file} is the env file itself: set STATE_FILE to a file of its own" in line
    )
    assert env_file.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name] == []


def test_state_file_pointing_at_a_nodeos_state_directory_is_never_touched(
    write_env, nodeos, tmp_path, fallback
):
    data = tmp_path / "nodeos" / "data" / "state"
    data.mkdir(parents=True)
    (data / "shared_memory.bin").write_bytes(b"\x00" * 1024)
    env_file = write_env(NODEOS_URL=nodeos.url, STATE_FILE=data, STATE_FALLBACK_DIR=fallback)
    done = run(env_file)
    assert done.returncode == 3
    assert f"state file {data} is a directory, not a file" in one_line(done)
    assert (data / "shared_memory.bin").stat().st_size == 1024
    assert sorted(p.name for p in data.parent.iterdir()) == ["state"]


@pytest.mark.parametrize(
    "content",
    [b"\x7fELF\x02\x01\x01binary", b"NODEOS_URL=http://x\n", b"[1, 2, 3]"],
    ids=["binary", "an-env-file", "a-json-list"],
)
def test_a_file_that_is_not_ours_is_never_moved_aside(
    write_env, nodeos, tmp_path, fallback, content
):
    target = tmp_path / "somebody-elses-file"
    target.write_bytes(content)
    env_file = write_env(NODEOS_URL=nodeos.url, STATE_FILE=target, STATE_FALLBACK_DIR=fallback)
    done = run(env_file)
    assert done.returncode == 3
    assert f"state file {target} is not a check-status state (it is not JSON): not touched" in (
        one_line(done)
    )
    assert target.read_bytes() == content


def test_a_corrupt_state_of_ours_is_still_moved_aside(write_env, nodeos, state_file):
    state_file.parent.mkdir(parents=True)
    state_file.write_bytes(b'{"schema": 1, "checks": {"nodeos": ')  # truncated: ours
    env_file = write_env(NODEOS_URL=nodeos.url)
    done = run(env_file)
    assert done.returncode == 1
    assert ", moved to " in one_line(done)


def test_state_file_root_is_one_line_not_an_internal_error(write_env, nodeos, fallback):
    env_file = write_env(NODEOS_URL=nodeos.url, STATE_FILE="/", STATE_FALLBACK_DIR=fallback)
    done = run(env_file)
    line = one_line(done)
    assert done.returncode == 3, line
    assert "internal error" not in line
    assert "STATE_FILE / names a directory" in line or "state file / is a directory" in line


def test_a_refused_state_path_still_texts_the_outage(write_env, tmp_path, fallback):
    """Refusing a path never costs an alert: the state lives in the fallback copy."""
    with TwilioStandIn(auth_token=TOKEN) as twilio:
        env_file = tmp_path / "check-status.env"
        write_env(
            NODEOS_URL=f"http://127.0.0.1:{free_port()}",
            STATE_FILE=env_file,
            STATE_FALLBACK_DIR=fallback,
            TWILIO_API_BASE_URL=twilio.url,
            **SMS,
        )
        for _ in range(3):
            done = run(env_file)
            assert done.returncode == 3
        assert len(twilio.messages) == 1  # once, not once a run


def test_a_state_directory_other_users_can_write_is_refused(write_env, nodeos, tmp_path, fallback):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    env_file = write_env(
        NODEOS_URL=nodeos.url, STATE_FILE=shared / "state.json", STATE_FALLBACK_DIR=fallback
    )
    done = run(env_file)
    line = one_line(done)
    assert done.returncode == 3
    assert f"the state directory {shared} is writable by other users (mode 1777)" in line
    assert f"chmod go-w {shared}" in line
    assert list(shared.iterdir()) == []  # no state, no lock: both are in the fallback


# --- a real second user ---------------------------------------------------------------


@pytest.fixture(scope="module")
def other_user() -> Iterator[pwd.struct_passwd]:
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("a second user needs root and useradd")
    subprocess.run(["userdel", OTHER_USER], capture_output=True)
    subprocess.run(["useradd", "--no-create-home", OTHER_USER], check=True)
    try:
        yield pwd.getpwnam(OTHER_USER)
    finally:
        subprocess.run(["userdel", OTHER_USER], capture_output=True)


@pytest.fixture
def reachable(tmp_path: Path) -> Iterator[Path]:
    """A directory the second user can reach (pytest's own tmp dirs are 0700)."""
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="check-status-paths-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def as_other(user: pwd.struct_passwd, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *command],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_symlink_another_user_plants_at_the_lock_clobbers_nothing(
    other_user, write_env, nodeos, reachable, fallback
):
    """A world-writable state directory lets another user plant `state.json.lock` ->
    any file; root once truncated and rewrote it. Now the directory is refused, and
    the target keeps every byte."""
    shared = reachable / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = reachable / "important.conf"
    victim.write_text("keep me\n")
    planted = as_other(other_user, "ln", "-s", str(victim), str(shared / "state.json.lock"))
    assert planted.returncode == 0, planted.stderr
    env_file = write_env(
        NODEOS_URL=nodeos.url, STATE_FILE=shared / "state.json", STATE_FALLBACK_DIR=fallback
    )
    done = run(env_file)
    assert done.returncode == 3
    assert "writable by other users" in one_line(done)
    assert victim.read_text() == "keep me\n"


def test_another_user_cannot_hold_the_lock(other_user, write_env, nodeos, reachable):
    """Any user who could open the lock could flock it and hold every run off: the
    lock is 0600, so they cannot even open it (an older 0644 lock is made 0600)."""
    state_file = reachable / "state.json"
    env_file = write_env(NODEOS_URL=nodeos.url, STATE_FILE=state_file)
    assert run(env_file).returncode == 0
    lock = Path(f"{state_file}.lock")
    lock.chmod(0o644)  # as an older version made it
    assert run(env_file).returncode == 0
    assert oct(lock.stat().st_mode & 0o777) == "0o600"
    holder = as_other(
        other_user,
        sys.executable,
        "-c",
        "import fcntl, sys; fd = open(sys.argv[1]); fcntl.flock(fd, fcntl.LOCK_EX); print('held')",
        str(lock),
    )
    assert holder.returncode != 0 and "Permission denied" in holder.stderr
    assert run(env_file).returncode == 0


# --- silences ---------------------------------------------------------------------------


def test_silencing_a_check_that_does_not_exist_is_refused(write_env, nodeos):
    env_file = write_env(NODEOS_URL=nodeos.url)
    assert run(env_file).returncode == 0  # a run, so the checks are known
    done = run(env_file, "silence", "head-block", "--for", "2h", "--reason", "upgrade")
    line = one_line(done)
    assert done.returncode == 3
    assert "no check is named 'head-block': did you mean head_block?" in line
    assert "nothing was silenced" in line
    status = json.loads(run(env_file, "status", "--json").stdout)
    assert status["silences"] == []


def test_a_pattern_must_match_a_check_and_unsilence_ends_what_it_began(write_env, tmp_path):
    with NodeosStandIn() as nodeos:
        env_file = write_env(NODEOS_URL=nodeos.url, DISK_PATHS=f"{tmp_path},/")
        assert run(env_file).returncode == 0
        refused = run(env_file, "silence", "disks:*", "--for", "1h", "--reason", "resize")
        assert refused.returncode == 3 and "no check is named 'disks:*'" in refused.stdout
        done = run(env_file, "silence", "disk:*", "--for", "1h", "--reason", "resize")
        assert done.returncode == 0, done.stdout
        assert json.loads(run(env_file, "status", "--json").stdout)["silences"][0]["checks"] == [
            "disk:*"
        ]
        ended = run(env_file, "unsilence", "disk:*")
        assert ended.returncode == 0, ended.stdout
        assert "1 silence(s) ended or narrowed; 0 left" in ended.stdout
        assert json.loads(run(env_file, "status", "--json").stdout)["silences"] == []


def test_a_check_of_the_settings_can_be_silenced_before_the_first_run(write_env, nodeos):
    """Maintenance planned before the node ever ran: the settings name the checks."""
    env_file = write_env(NODEOS_URL=nodeos.url, ENDPOINTS="https://api.example.io")
    done = run(env_file, "silence", "endpoint:api.example.io", "--for", "1h", "--reason", "move")
    assert done.returncode == 0, done.stdout


def test_a_textfile_directory_other_users_can_write_is_refused(write_env, nodeos, tmp_path):
    """Its owner could swap the temp file for a symlink before a chmod by name: the
    directory is refused, and in a safe one the mode is set through the descriptor."""
    shared = tmp_path / "textfile-shared"
    shared.mkdir()
    shared.chmod(0o1777)
    env_file = write_env(NODEOS_URL=nodeos.url, PROMETHEUS_TEXTFILE=shared / "check_status.prom")
    done = run(env_file, "run", "-v")
    assert f"the textfile directory {shared} is writable by other users" in done.stdout
    assert list(shared.iterdir()) == []
    safe = tmp_path / "textfile"
    safe.mkdir(mode=0o755)
    env_file = write_env(NODEOS_URL=nodeos.url, PROMETHEUS_TEXTFILE=safe / "check_status.prom")
    assert run(env_file).returncode == 0
    assert oct((safe / "check_status.prom").stat().st_mode & 0o777) == "0o644"


def test_a_textfile_directory_of_node_exporters_group_is_used(
    other_user, write_env, nodeos, tmp_path
):
    """node_exporter's textfile directory is often group-writable by its own group:
    that is no reason to refuse it (our file's mode is set through its descriptor)."""
    directory = tmp_path / "node-exporter"
    directory.mkdir()
    os.chown(directory, 0, other_user.pw_gid)
    directory.chmod(0o2775)
    env_file = write_env(NODEOS_URL=nodeos.url, PROMETHEUS_TEXTFILE=directory / "check_status.prom")
    done = run(env_file, "run", "-v")
    assert done.returncode == 0, done.stdout
    assert "writable by other users" not in done.stdout
    assert (directory / "check_status.prom").exists()
