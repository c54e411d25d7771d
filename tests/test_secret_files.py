"""Secrets apart from settings: TWILIO_AUTH_TOKEN_FILE and HEARTBEAT_URL_FILE.

Real files in temporary directories, the real CLI, the Twilio stand-in on
loopback. Every output of every command is checked for the token.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from check_status.config import ConfigError, load
from tests.standins import HeartbeatStandIn, TwilioStandIn, free_port
from tests.test_install import layout, run_install

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
GOOD = "+14155550101"
SENDER = "+15005550006"
EXECUTABLE = Path(sys.prefix) / "bin" / "check-status"


@pytest.fixture
def twilio() -> Iterator[TwilioStandIn]:
    with TwilioStandIn(auth_token=TOKEN) as standin:
        yield standin


@pytest.fixture
def outputs() -> Iterator[list[str]]:
    """Every output of the test's commands: none may hold the token."""
    seen: list[str] = []
    yield seen
    for text in seen:
        assert TOKEN not in text
        assert TOKEN.upper() not in text


def token_file(directory: Path, content: str = TOKEN + "\n", mode: int = 0o600) -> Path:
    path = directory / "twilio-token"
    path.write_text(content)
    path.chmod(mode)
    return path


@pytest.fixture
def sms_env(write_env, twilio, tmp_path) -> Callable[..., Path]:
    """An env file texting GOOD through the stand-in, the token in a file of its own."""

    def write(**extra: str) -> Path:
        settings = {
            "NODEOS_URL": f"http://127.0.0.1:{free_port()}",
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN_FILE": str(token_file(tmp_path)),
            "TWILIO_FROM": SENDER,
            "ALERT_TO": GOOD,
            "ALERT_AFTER": "1",
            "TWILIO_API_BASE_URL": twilio.url,
        }
        settings.update(extra)
        return write_env(**settings)

    return write


def invoke(cli, outputs: list[str], *args: str):
    result = cli(*args)
    outputs.append(result.output)
    outputs.append(getattr(result, "stderr", "") or "")
    return result


def test_the_token_from_its_file_texts_the_operator(cli, sms_env, twilio, outputs):
    env_file = sms_env()
    env_file.chmod(0o644)  # no secret in it: a monitoring user may read it
    result = invoke(cli, outputs, "--env-file", str(env_file), "--json")
    assert result.exit_code == 2, result.output
    [message] = twilio.wait_for_messages(1)
    assert message["to"] == GOOD and message["auth_ok"]
    assert json.loads(result.output)["alerts"]["sms"] == "SMS sent to 1 of 1"


def test_a_heartbeat_url_from_its_file_is_pinged(cli, write_env, tmp_path, outputs):
    with HeartbeatStandIn() as heartbeat:
        url_file = tmp_path / "heartbeat-url"
        url_file.write_text(f"{heartbeat.url}/ping/5f1e0c3a\n")
        url_file.chmod(0o600)
        env_file = write_env(
            NODEOS_URL=f"http://127.0.0.1:{free_port()}", HEARTBEAT_URL_FILE=str(url_file)
        )
        invoke(cli, outputs, "--env-file", str(env_file))
        deadline = time.monotonic() + 5
        while not heartbeat.pings and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [ping.split()[1] for ping in heartbeat.pings] == [
            "/ping/5f1e0c3a/fail"
        ]  # a CRITICAL run
    assert all("5f1e0c3a" not in text for text in outputs)


def test_the_token_and_its_file_both_set_is_one_line_and_exit_3(cli, sms_env, outputs):
    env_file = sms_env(TWILIO_AUTH_TOKEN=TOKEN)
    result = invoke(cli, outputs, "--env-file", str(env_file))
    assert result.exit_code == 3
    [line] = result.output.strip().splitlines()
    assert "TWILIO_AUTH_TOKEN and TWILIO_AUTH_TOKEN_FILE are both set: keep one of them" in line


def test_a_fifo_as_token_file_is_refused_at_once(write_env, tmp_path, outputs):
    fifo = tmp_path / "twilio-token"
    os.mkfifo(fifo)
    env_file = write_env(
        TWILIO_ACCOUNT_SID=SID,
        TWILIO_AUTH_TOKEN_FILE=str(fifo),
        TWILIO_FROM=SENDER,
        ALERT_TO=GOOD,
    )
    started = time.monotonic()
    done = subprocess.run(
        [str(EXECUTABLE), "run", "--env-file", str(env_file)],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
    )
    outputs += [done.stdout, done.stderr]
    assert time.monotonic() - started < 10
    assert done.returncode == 3
    [line] = (done.stdout + done.stderr).strip().splitlines()
    assert f"TWILIO_AUTH_TOKEN_FILE file {fifo} is a FIFO, not a regular file" in line
    # Never opened at all when the secrets are not to be read.
    config = load(str(env_file), {}, read_secrets=False)
    assert config.secrets_not_read == ("TWILIO_AUTH_TOKEN_FILE",)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "is empty: write the Twilio auth token into it"),
        (TOKEN.upper() + "\n", "this one has 32 characters, 24 of them upper case"),
        ("TWILIO_AUTH_TOKEN=" + TOKEN + "\n", "this one has 50 characters"),
        ("x" * 5000, "is larger than 4 KiB"),
    ],
)
def test_a_bad_token_file_is_one_line_that_shows_none_of_it(
    cli, sms_env, tmp_path, outputs, content, problem
):
    env_file = sms_env()
    token_file(tmp_path, content)
    result = invoke(cli, outputs, "--env-file", str(env_file))
    assert result.exit_code == 3
    [line] = result.output.strip().splitlines()
    assert f"TWILIO_AUTH_TOKEN_FILE file {tmp_path / 'twilio-token'}" in line
    assert problem in line
    assert "xxxx" not in line


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO", "CHECK_STATUS"))}


def as_other_user(command: list[str]) -> list[str]:
    """`command` as a user who cannot read a root 0600 file (nobody), when we are root."""
    if os.geteuid() != 0:
        return command
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory other users may enter (pytest's tmp_path is 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="check-status-secrets-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_a_load_without_secrets_still_validates_everything_else(sms_env):
    env_file = sms_env(HEAD_LAG_WARN_SECONDS="abc", TWILIO_AUTH_TOKEN_FILE="twilio-token")
    with pytest.raises(ConfigError, match="HEAD_LAG_WARN_SECONDS='abc' is not valid"):
        load(str(env_file), {}, read_secrets=False)
    env_file = sms_env(TWILIO_AUTH_TOKEN_FILE="twilio-token")
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN_FILE='twilio-token' is not valid"):
        load(str(env_file), {}, read_secrets=False)
    with pytest.raises(ConfigError, match="are both set"):
        load(str(sms_env(TWILIO_AUTH_TOKEN=TOKEN)), {}, read_secrets=False)
    config = load(str(sms_env()), {})
    assert config.twilio_auth_token == TOKEN and config.secrets_not_read == ()
    assert TOKEN not in repr(config)


def self_test_output(cli, outputs: list[str], env_file: Path) -> tuple[int, str]:
    result = invoke(cli, outputs, "self-test", "--env-file", str(env_file))
    return result.exit_code, result.output


def test_a_token_file_others_can_read_fails_self_test(cli, sms_env, tmp_path, outputs):
    env_file = sms_env()
    env_file.chmod(0o644)
    secret = token_file(tmp_path, mode=0o644)
    code, output = self_test_output(cli, outputs, env_file)
    assert code != 0
    assert (
        f"FAIL token file: {secret} (TWILIO_AUTH_TOKEN_FILE) is mode 0644: "
        "other users can read the Twilio token in it\n"
        f"     fix: chmod 600 {secret}\n"
    ) in output
    assert f"PASS env file: {env_file} is mode 0644; it holds no secret" in output
    owner = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    assert (
        f"WARN readers: {env_file} is readable by everyone (0644 {owner}:{group}); "
        f"{secret} is readable by everyone (0644 {owner}:{group})"
    ) in output


def test_a_private_token_file_passes_and_readers_are_named(cli, sms_env, tmp_path, outputs):
    env_file = sms_env()
    env_file.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(env_file, 0, grp.getgrnam("nogroup").gr_gid)
    secret = tmp_path / "twilio-token"
    _code, output = self_test_output(cli, outputs, env_file)
    info = env_file.stat()
    owner = pwd.getpwuid(info.st_uid).pw_name
    group = grp.getgrgid(info.st_gid).gr_name
    assert f"PASS token file: {secret} (TWILIO_AUTH_TOKEN_FILE) is mode 0600" in output
    who = "root only" if os.geteuid() == 0 else f"{owner} only"
    assert (
        f"PASS readers: {env_file} is readable by {owner} and group {group} "
        f"(0640 {owner}:{group}); {secret} is readable by {who} (0600 {owner}:"
    ) in output
    assert "FAIL env file" not in output and "FAIL token file" not in output


def test_an_inline_token_keeps_the_env_file_private(cli, write_env, twilio, outputs):
    env_file = write_env(
        TWILIO_ACCOUNT_SID=SID,
        TWILIO_AUTH_TOKEN=TOKEN,
        TWILIO_FROM=SENDER,
        ALERT_TO=GOOD,
        TWILIO_API_BASE_URL=twilio.url,
    )
    env_file.chmod(0o644)
    code, output = self_test_output(cli, outputs, env_file)
    assert code != 0
    assert "other users can read the Twilio token in it (TWILIO_AUTH_TOKEN)" in output
    readers = [line for line in output.splitlines() if line.startswith("WARN readers: ")]
    assert readers and f"{env_file} is readable by everyone" in readers[0]
    assert f"fix: chmod 600 {env_file}; or, for other users to read the settings" in output


# --- install.sh --token-file ----------------------------------------------


@pytest.fixture(scope="module")
def cron_running() -> None:
    if os.geteuid() != 0:
        pytest.skip("install.sh tests need root")
    if subprocess.run(["pgrep", "-x", "cron"], capture_output=True).returncode != 0:
        subprocess.run(["cron"], check=True)


def test_install_writes_the_token_apart_and_uninstall_removes_it(tmp_path, cron_running):
    paths = layout(tmp_path)
    done = run_install(paths, "--token-file", environment={"TWILIO_AUTH_TOKEN": TOKEN})
    assert done.returncode == 0, done.stdout + done.stderr
    assert TOKEN not in done.stdout + done.stderr
    config_dir = Path(paths["CONFIG_DIR"])
    secret = config_dir / "twilio-token"
    info = secret.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == 0 and info.st_gid == 0
    assert secret.read_text() == TOKEN + "\n"
    env_file = config_dir / "check-status.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o644
    text = env_file.read_text()
    assert TOKEN not in text
    assert f"\nTWILIO_AUTH_TOKEN_FILE={secret}\n" in text
    assert f"token {secret}" in (config_dir / "install-manifest").read_text().splitlines()
    assert not list(config_dir.glob(".twilio-token.*"))
    # A token on install.sh's own command line would be in ps: refused.
    refused = run_install(paths, f"TWILIO_AUTH_TOKEN={TOKEN}")
    assert refused.returncode == 2 and TOKEN not in refused.stdout + refused.stderr
    assert "visible to every user in ps" in refused.stderr
    run_install(paths, "--uninstall")
    assert secret.exists()
    done = run_install(paths, "--uninstall", "--purge")
    assert not secret.exists() and not env_file.exists()
    assert TOKEN not in done.stdout + done.stderr
    shutil.rmtree(tmp_path, ignore_errors=True)
