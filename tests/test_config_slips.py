"""Slips from the field: each one exits 3 with one line naming the line and the fix.

Monitoring must never look installed while it cannot page: a misspelt key left
its setting at the default, in silence. Every case writes a real env file, runs
the real console script and `self-test`, and reads what the operator would read.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from check_status.config import ConfigError, read_settings, secret_keys_in

EXECUTABLE = str(Path(sys.prefix) / "bin" / "check-status")
TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
SID = "AC" + "0123456789abcdef" * 2
PREFIX = "CHECK-STATUS UNKNOWN - config: "

# A realistic login environment: none of it is ours, none of it may be reported.
COMMON_ENVIRONMENT = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/home/ops",
    "USER": "ops",
    "LOGNAME": "ops",
    "SHELL": "/bin/bash",
    "PWD": "/home/ops",
    "OLDPWD": "/home/ops/src",
    "LANG": "en_US.UTF-8",
    "LANGUAGE": "en_US:en",
    "LC_ALL": "en_US.UTF-8",
    "LC_CTYPE": "C.UTF-8",
    "TERM": "xterm-256color",
    "COLORTERM": "truecolor",
    "SHLVL": "1",
    "MAIL": "/var/mail/ops",
    "EDITOR": "vim",
    "VISUAL": "vim",
    "PAGER": "less",
    "LESS": "-R",
    "TZ": "UTC",
    "HOSTNAME": "eu2",
    "SSH_CONNECTION": "10.0.0.5 52144 10.0.0.2 22",
    "SSH_CLIENT": "10.0.0.5 52144 22",
    "SSH_TTY": "/dev/pts/0",
    "SSH_AUTH_SOCK": "/tmp/ssh-XXXX/agent.1234",
    "XDG_SESSION_ID": "42",
    "XDG_RUNTIME_DIR": "/run/user/1000",
    "XDG_SESSION_TYPE": "tty",
    "XDG_DATA_DIRS": "/usr/local/share:/usr/share",
    "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus",
    "HISTSIZE": "10000",
    "HISTCONTROL": "ignoreboth",
    "LS_COLORS": "rs=0:di=01;34:ln=01;36",
    "http_proxy": "http://proxy.internal:3128",
    "HTTPS_PROXY": "http://proxy.internal:3128",
    "NO_PROXY": "localhost,127.0.0.1",
    "NODE_ENV": "production",
    "NODE_OPTIONS": "--max-old-space-size=4096",
    "PYTHONDONTWRITEBYTECODE": "1",
    "VIRTUAL_ENV": "/opt/check-status",
    "CHECK_STATUS_DEBUG": "",
    "_": "/usr/bin/env",
}


def test_the_common_environment_has_forty_variables() -> None:
    assert len(COMMON_ENVIRONMENT) >= 40


@pytest.fixture
def base(tmp_path: Path) -> dict[str, str]:
    """Settings that make a run fast and harmless: a port nothing listens on."""
    return {
        "STATE_FILE": str(tmp_path / "state.json"),
        "DISK_PATHS": str(tmp_path),
        "NODEOS_URL": "http://127.0.0.1:9",
        "HTTP_TIMEOUT_SECONDS": "1",
        "CRON_FILE": str(tmp_path / "cron.d" / "check-status"),
    }


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "no-user-config"),
    }
    return env | extra


def write(tmp_path: Path, base: dict[str, str], *lines: str) -> Path:
    path = tmp_path / "check-status.env"
    text = "".join(f"{k}={v}\n" for k, v in base.items()) + "".join(f"{ln}\n" for ln in lines)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXECUTABLE, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def assert_slip(env_file: Path, env: dict[str, str], message: str, *hidden: str) -> None:
    """The run exits 3 with exactly this one line; self-test shows it as a FAIL item."""
    done = run("--env-file", str(env_file), env=env)
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr == ""  # no python-dotenv warning either
    assert done.returncode == 3, done.stdout
    assert done.stdout.splitlines() == [PREFIX + message]
    tested = run("self-test", "--env-file", str(env_file), env=env)
    assert "Traceback" not in tested.stdout + tested.stderr
    assert tested.stderr == ""
    assert f"FAIL config: {message}" in tested.stdout.splitlines()
    for secret in hidden:
        assert secret not in done.stdout + tested.stdout


# --- 1. unknown keys in the env file ------------------------------------------------


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ("EXPECTED_CHAINID=" + "ab" * 32, "did you mean EXPECTED_CHAIN_ID?"),
        ("NODEOS_LOG_FILE=/var/log/nodeos.log", "did you mean NODEOS_LOG?"),
        ("ENDPOINT=http://10.0.0.1:8888", "did you mean ENDPOINTS?"),
        ("HEAD_LAG_WARN_SECOND=20", "did you mean HEAD_LAG_WARN_SECONDS?"),
        # Empty: before, NODEOS_URL silently stayed at its default.
        ("NODEOS_ULR=", "did you mean NODEOS_URL?"),
        ("expected_chain_id=" + "ab" * 32, "did you mean EXPECTED_CHAIN_ID?"),
        ("PAGER_DUTY_KEY=abc", "see check-status config-template for the settings"),
    ],
)
def test_an_unknown_key_in_the_file_names_its_line_and_the_nearest_key(
    tmp_path: Path, base: dict[str, str], line: str, hint: str
) -> None:
    env_file = write(tmp_path, base, "# comment", "", line)
    number = len(base) + 3
    key = line.split("=", 1)[0]
    message = f"unknown setting {key} in {env_file} line {number}; {hint}"
    assert_slip(env_file, environment(tmp_path), message)


def test_a_token_alone_on_a_line_is_not_echoed_as_a_key(
    tmp_path: Path, base: dict[str, str]
) -> None:
    env_file = write(tmp_path, base, TOKEN)
    message = (
        f"cannot read line {len(base) + 1} of {env_file}: not KEY=VALUE (the line is not "
        "shown: it may be a secret); fix the line"
    )
    assert_slip(env_file, environment(tmp_path), message, TOKEN)


# --- 2. the process environment -----------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "hint"),
    [
        ("TWILIO_AUTH_TOKN", "did you mean TWILIO_AUTH_TOKEN?"),
        ("ALERT_T0", "did you mean ALERT_TO?"),
        ("CHECK_STATUS_ENV_FIL", "did you mean CHECK_STATUS_ENV_FILE?"),
        ("CHECK_STATUS_NODEOS_URL", "did you mean NODEOS_URL?"),
        ("CHECK_STATUS_VERBOSE", "see check-status config-template for the settings"),
    ],
)
def test_a_variable_of_ours_that_is_unknown_is_reported(
    tmp_path: Path, base: dict[str, str], variable: str, hint: str
) -> None:
    env_file = write(tmp_path, base)
    env = environment(tmp_path, **{variable: TOKEN})
    assert_slip(env_file, env, f"unknown setting {variable} in the environment; {hint}", TOKEN)


def test_a_common_environment_loads_cleanly(tmp_path: Path, base: dict[str, str]) -> None:
    env_file = write(tmp_path, base)
    env = COMMON_ENVIRONMENT | {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "no-user-config"),
        "CHECK_STATUS_ENV_FILE": str(env_file),
    }
    done = run(env=env)
    assert done.returncode == 2, done.stdout  # nodeos is down: a real verdict, not config
    assert "config:" not in done.stdout
    assert done.stderr == ""
    assert read_settings(env_file, env)["NODEOS_URL"] == "http://127.0.0.1:9"


def test_variables_of_other_programs_are_never_reported() -> None:
    others = {name: "x" for name in ("NODE_PATH", "STATE_DIR", "HTTP_PROXY", "DISK", "CRONTAB")}
    read_settings(None, COMMON_ENVIRONMENT | others)  # raises nothing


# --- 3. a line the parser cannot read -----------------------------------------------


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ('STATE_FILE="/x.json', 'STATE_FILE="/x.json (an unclosed quote?)'),
        ("STATE_FILE /x.json", "STATE_FILE /x.json (no '=' after the key?)"),
        (
            'NODE_NAME="eu2" primary',
            'NODE_NAME="eu2" primary (text after the closing quote? put a # before a comment)',
        ),
        (f'TWILIO_AUTH_TOKEN="{TOKEN}', "TWILIO_AUTH_TOKEN=(hidden) (an unclosed quote?)"),
        (f"TWILIO_AUTH_TOKEN {TOKEN}", "TWILIO_AUTH_TOKEN (no '=' after the key?)"),
        (
            '"NODEOS_URL=http://ops:pw@h:1',
            "not KEY=VALUE (the line is not shown: it may be a secret)",
        ),
        (
            'NODEOS_URL="http://ops:n0d3pass@10.0.0.1:8888',
            'NODEOS_URL="http://***@10.0.0.1:8888 (an unclosed quote?)',
        ),
        (
            "HEARTBEAT_URL='https://hc-ping.com/5bf66975-d4c7",
            "HEARTBEAT_URL=(hidden) (an unclosed quote?)",
        ),
    ],
)
def test_a_line_the_parser_cannot_read_names_its_number(
    tmp_path: Path, base: dict[str, str], line: str, shown: str
) -> None:
    env_file = write(tmp_path, base, "", "# state", line, "ALERT_LEVEL=CRITICAL")
    number = len(base) + 3
    message = f"cannot read line {number} of {env_file}: {shown}; fix the line"
    assert_slip(env_file, environment(tmp_path), message, TOKEN, "n0d3pass", "5bf66975")


def test_an_unclosed_quote_closed_lines_later_is_caught(
    tmp_path: Path, base: dict[str, str]
) -> None:
    # The parser reads on to the next quote: NODE_NAME would vanish into STATE_FILE.
    env_file = write(tmp_path, {}, f'STATE_FILE="{tmp_path}/x.json', 'NODE_NAME=eu2"')
    message = (
        f'cannot read line 1 of {env_file}: STATE_FILE="{tmp_path}/x.json (an unclosed quote? '
        "the value runs on to line 2); fix the line"
    )
    assert_slip(env_file, environment(tmp_path), message)


def test_valid_quoting_reads_as_before(tmp_path: Path) -> None:
    from dotenv import dotenv_values

    env_file = tmp_path / "check-status.env"
    env_file.write_text(
        "\ufeff# header\n\n"
        "export NODE_NAME=eu2\n"
        "STATE_FILE='/var/lib/x/state.json'\n"
        'DISK_PATHS="/,/data"   # two\n'
        "HEAD_LAG_WARN_SECONDS= 20 # comment\n"
        "ALERT_LEVEL=CRITICAL#not-a-comment\n"
        "NODEOS_LOG=\n"
        "'PEERS'=eu1=http://10.0.0.1:8899\r\n"
        "TWILIO_FROM\n"
    )
    expected = {
        k: v for k, v in dotenv_values(env_file, interpolate=False).items() if v is not None
    }
    assert read_settings(env_file, {}) == expected


# --- 4. token and SID formats --------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "detail"),
    [
        (
            "TWILIO_AUTH_TOKEN",
            TOKEN + "\u00e9",
            "32 hex digits (0-9, a-f) from the Twilio console; this one has 33 characters,"
            " one of them not ASCII",
        ),
        (
            "TWILIO_AUTH_TOKEN",
            TOKEN[:16] + "\u201c" + TOKEN[17:],  # a curly quote: not even Latin-1
            "32 hex digits (0-9, a-f) from the Twilio console; this one has 32 characters,"
            " one of them not ASCII",
        ),
        (
            "TWILIO_AUTH_TOKEN",
            TOKEN[:31],
            "32 hex digits (0-9, a-f) from the Twilio console; this one has 31 characters",
        ),
        (
            "TWILIO_AUTH_TOKEN",
            TOKEN.upper(),
            "32 hex digits (0-9, a-f) from the Twilio console; this one has 32 characters,"
            " 24 of them upper case",
        ),
        (
            "TWILIO_AUTH_TOKEN",
            '"' + TOKEN[:16] + " " + TOKEN[16:] + '"',
            "32 hex digits (0-9, a-f) from the Twilio console; this one has 33 characters,"
            " one of them a space",
        ),
    ],
)
def test_a_malformed_token_names_the_rule_and_never_shows_itself(
    tmp_path: Path, base: dict[str, str], key: str, value: str, detail: str
) -> None:
    sms = {"TWILIO_ACCOUNT_SID": SID, "ALERT_TO": "+14155550101", "TWILIO_FROM": "+15005550006"}
    env_file = write(tmp_path, base | sms, f"{key}={value}")
    message = f"{key}=(hidden) is not valid: expected {detail}"
    assert_slip(env_file, environment(tmp_path), message, value.strip('"'), TOKEN[:8])


@pytest.mark.parametrize(
    ("key", "value", "prefix"),
    [
        ("TWILIO_ACCOUNT_SID", "AC" + "0123456789abcdef" * 2 + "0", "AC"),
        ("TWILIO_ACCOUNT_SID", "AC" + "0123456789abcdeg" * 2, "AC"),
        ("TWILIO_ACCOUNT_SID", "AC" + "0123456789abcde\u00e9" * 2, "AC"),
        ("TWILIO_ACCOUNT_SID", "MG" + "0123456789abcdef" * 2, "AC"),
        ("TWILIO_MESSAGING_SERVICE_SID", "MG" + "0123456789abcdef", "MG"),
    ],
)
def test_a_malformed_sid_is_refused(key: str, value: str, prefix: str, tmp_path: Path) -> None:
    env_file = write(tmp_path, {}, f"{key}={value}")
    with pytest.raises(ConfigError) as raised:
        from check_status.config import load

        load(str(env_file), {})
    assert str(raised.value) == (
        f"{key}={value!r} is not valid: expected '{prefix}' followed by 32 hex digits,"
        " from the Twilio console"
    )


def test_a_good_token_and_sids_load(tmp_path: Path, base: dict[str, str]) -> None:
    from check_status.config import load

    sms = {
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "ALERT_TO": "+14155550101",
        "TWILIO_MESSAGING_SERVICE_SID": "MG" + "0123456789abcdef" * 2,
    }
    loaded = load(str(write(tmp_path, base | sms)), {})
    assert loaded.twilio_auth_token == TOKEN and loaded.sms_configured


# --- 5. which keys of a file are secrets (for the mode check) ------------------------


@pytest.mark.parametrize(
    ("lines", "secrets"),
    [
        ((), []),
        (("NODE_NAME=eu2", "TWILIO_AUTH_TOKEN=", "HEARTBEAT_URL=https://hc-ping.com/"), []),
        ((f"TWILIO_AUTH_TOKEN={TOKEN}",), ["TWILIO_AUTH_TOKEN"]),
        (("HEARTBEAT_URL=https://hc-ping.com/5bf66975",), ["HEARTBEAT_URL"]),
        (("NODEOS_URL=http://ops:pw@127.0.0.1:8888",), ["NODEOS_URL"]),
        (("PEERS=eu1=http://10.0.0.1:8899,us1=http://w:p@10.0.0.2:8899",), ["PEERS"]),
        (("NODEOS_URL=http://127.0.0.1:8888", "TWILIO_ACCOUNT_SID=" + SID), []),
        ((f'TWILIO_AUTH_TOKEN="{TOKEN}',), ["TWILIO_AUTH_TOKEN"]),  # unreadable, still secret
        ((f"TWILIO_AUTH_TOKN={TOKEN}",), ["TWILIO_AUTH_TOKN"]),  # misspelt, still secret
        (
            (f"TWILIO_AUTH_TOKEN={TOKEN}", "HEARTBEAT_URL=https://hc-ping.com/u"),
            ["TWILIO_AUTH_TOKEN", "HEARTBEAT_URL"],
        ),
    ],
)
def test_secret_keys_in_a_file(tmp_path: Path, lines: tuple[str, ...], secrets: list[str]) -> None:
    env_file = write(tmp_path, {}, *lines)
    assert secret_keys_in(env_file) == secrets


def test_secret_keys_in_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        secret_keys_in(tmp_path / "missing.env")


def test_not_strict_skips_what_strict_refuses(tmp_path: Path, base: dict[str, str]) -> None:
    # What self-test uses to keep CRON_FILE and STATE_FILE from a file with a slip in it.
    env_file = write(tmp_path, base, "NODEOS_ULR=x", 'NODE_NAME="eu2')
    settings = read_settings(env_file, {"ALERT_T0": "x"}, strict=False)
    assert settings == base
