"""Settings: defaults, one clear error per bad value, where the env file comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from check_status import config
from check_status.config import (
    ENV_FILE_VARIABLE,
    KEYS,
    ConfigError,
    choose_env_file,
    load_config,
    read_settings,
    template,
)

CHAIN = "aca376f206b8fc25a6ed44dbdc66547c36c6c33e3a119ffbeaef943642f0e906"


def test_defaults() -> None:
    loaded = load_config({})
    assert loaded.nodeos_url == "http://127.0.0.1:8888"
    assert loaded.expected_chain_id is None
    assert (loaded.head_lag_warn_seconds, loaded.head_lag_crit_seconds) == (15, 60)
    assert loaded.head_stall_seconds == 30
    assert (loaded.lib_lag_warn_blocks, loaded.lib_lag_crit_blocks) == (400, 1200)
    assert loaded.endpoints == ()
    assert loaded.disk_paths == ("/",)
    assert (loaded.disk_warn_percent, loaded.disk_crit_percent) == (80, 88)
    assert (loaded.state_db_warn_percent, loaded.state_db_crit_percent) == (80, 90)
    assert loaded.nodeos_log is None
    assert loaded.http_timeout_seconds == 3
    assert loaded.state_file == "/var/lib/check-status/state.json"
    assert loaded.lock_file == "/var/lib/check-status/state.json.lock"
    assert loaded.env_file is None
    assert loaded.node_name  # the host name


@pytest.mark.parametrize(
    ("settings", "attribute", "expected"),
    [
        ({"NODE_NAME": " eu2 "}, "node_name", "eu2"),
        ({"NODEOS_URL": "https://node.example:8443/"}, "nodeos_url", "https://node.example:8443"),
        ({"EXPECTED_CHAIN_ID": CHAIN.upper()}, "expected_chain_id", CHAIN),
        ({"HEAD_LAG_WARN_SECONDS": " 20 "}, "head_lag_warn_seconds", 20),
        ({"HEAD_LAG_WARN_SECONDS": ""}, "head_lag_warn_seconds", 15),  # empty: the default
        (
            {"ENDPOINTS": "http://a:8888, https://b.example/ ,"},
            "endpoints",
            ("http://a:8888", "https://b.example"),
        ),
        ({"DISK_PATHS": "/,/data"}, "disk_paths", ("/", "/data")),
        ({"NODEOS_LOG": "/var/log/nodeos.log"}, "nodeos_log", "/var/log/nodeos.log"),
        ({"HTTP_TIMEOUT_SECONDS": "20"}, "http_timeout_seconds", 20),
        ({"STATE_FILE": "/tmp/s.json"}, "state_file", "/tmp/s.json"),
    ],
)
def test_good_values(settings: dict[str, str], attribute: str, expected: object) -> None:
    assert getattr(load_config(settings), attribute) == expected


SID = "0123456789abcdef0123456789abcdef"
TOKEN = "0123456789abcdef0123456789abcdef"

# One bad value per key, and the part of it the message must quote (a list names its bad item).
BAD_VALUES: dict[str, tuple[str, str]] = {
    "NODE_NAME": ("eu 2!", "eu 2!"),
    "NODEOS_URL": ("ftp://127.0.0.1:8888", "ftp://127.0.0.1:8888"),
    "EXPECTED_CHAIN_ID": ("not-a-chain-id", "not-a-chain-id"),
    "HEAD_LAG_WARN_SECONDS": ("fifteen", "fifteen"),
    "HEAD_LAG_CRIT_SECONDS": ("0", "'0'"),
    "HEAD_STALL_SECONDS": ("4", "'4'"),
    "LIB_LAG_WARN_BLOCKS": ("-1", "-1"),
    "LIB_LAG_CRIT_BLOCKS": ("1.5", "1.5"),
    "ENDPOINTS": ("http://ok:8888,api.example.com", "api.example.com"),
    "ENDPOINT_REQUESTS": ("0", "'0'"),
    "DISK_PATHS": ("/,data", "/,data"),
    "DISK_WARN_PERCENT": ("101", "101"),
    "DISK_CRIT_PERCENT": ("88%", "88%"),
    "STATE_DB_WARN_PERCENT": ("0", "'0'"),
    "STATE_DB_CRIT_PERCENT": ("ninety", "ninety"),
    "NODEOS_LOG": ("nodeos.log", "nodeos.log"),
    "HTTP_TIMEOUT_SECONDS": ("21", "21"),
    "STATE_FILE": ("state.json", "state.json"),
    "STATE_FALLBACK_DIR": ("fallback", "fallback"),
    "TWILIO_ACCOUNT_SID": ("AC123", "AC123"),
    "TWILIO_AUTH_TOKEN": ("too short", "(hidden)"),  # a secret is never echoed
    "TWILIO_AUTH_TOKEN_FILE": ("twilio-token", "twilio-token"),  # a path, not the secret
    "TWILIO_FROM": ("0123456", "0123456"),
    "TWILIO_MESSAGING_SERVICE_SID": ("AC" + SID, "AC" + SID),
    "ALERT_TO": ("+14155550100,555-1234", "555-1234"),
    "WAKING_HOURS": ("7-23", "7-23"),
    "ESCALATE_AFTER_MINUTES": ("0", "'0'"),
    "CALL_ON": ("always", "always"),
    "TWILIO_WEBHOOK_URL": ("node.example.io/twilio/sms", "node.example.io/twilio/sms"),
    "ALERT_LEVEL": ("info", "info"),
    "ALERT_AFTER": ("0", "'0'"),
    "REMIND_EVERY_MINUTES": ("-5", "-5"),
    "TWILIO_API_BASE_URL": ("api.twilio.com", "api.twilio.com"),
    "HEARTBEAT_URL": ("hc-ping.com/abc", "hc-ping.com/***"),  # the path is its token
    "HEARTBEAT_URL_FILE": ("heartbeat-url", "heartbeat-url"),
    "CRON_FILE": ("etc/cron.d/check-status", "etc/cron.d/check-status"),
    "PEERS": ("eu1 http://10.0.0.1:8899", "eu1 http://10.0.0.1:8899"),
    "HEALTH_CACHE_SECONDS": ("2s", "2s"),
    "PROMETHEUS_TEXTFILE": ("metrics.prom", "metrics.prom"),
}


def test_every_key_has_a_bad_value() -> None:
    assert set(BAD_VALUES) == {key.name for key in KEYS}


@pytest.mark.parametrize(
    ("key", "value", "shown"), [(k, *v) for k, v in sorted(BAD_VALUES.items())]
)
def test_bad_value_names_key_and_value(key: str, value: str, shown: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({key: value})
    message = str(raised.value)
    assert key in message
    assert shown in message
    assert "expected" in message
    assert "\n" not in message
    if config.KEYS_BY_NAME[key].secret:
        assert value not in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("NODEOS_URL", "http://127.0.0.1:99999"),
        ("NODEOS_URL", "http://:8888"),
        ("EXPECTED_CHAIN_ID", CHAIN[:-1]),
        ("HEAD_LAG_CRIT_SECONDS", "86401"),
        ("NODE_NAME", "x" * 33),
    ],
)
def test_more_bad_values(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config({key: value})


@pytest.mark.parametrize("key", ["NODEOS_URL", "ENDPOINTS", "HEARTBEAT_URL"])
def test_port_zero_is_rejected(key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config({key: "http://127.0.0.1:0"})


@pytest.mark.parametrize(
    ("warn_key", "crit_key", "warn", "crit"),
    [
        ("HEAD_LAG_WARN_SECONDS", "HEAD_LAG_CRIT_SECONDS", "60", "60"),
        ("HEAD_LAG_WARN_SECONDS", "HEAD_LAG_CRIT_SECONDS", "61", "60"),
        ("LIB_LAG_WARN_BLOCKS", "LIB_LAG_CRIT_BLOCKS", "1200", "400"),
        ("DISK_WARN_PERCENT", "DISK_CRIT_PERCENT", "90", "90"),
        ("STATE_DB_WARN_PERCENT", "STATE_DB_CRIT_PERCENT", "95", "90"),
    ],
)
def test_warn_must_be_below_crit(warn_key: str, crit_key: str, warn: str, crit: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({warn_key: warn, crit_key: crit})
    message = str(raised.value)
    assert f"{warn_key}={warn}" in message
    assert f"{crit_key}={crit}" in message


def test_warn_below_default_crit_is_fine_but_above_is_not() -> None:
    assert load_config({"DISK_WARN_PERCENT": "87"}).disk_warn_percent == 87
    with pytest.raises(ConfigError, match="DISK_CRIT_PERCENT=88"):
        load_config({"DISK_WARN_PERCENT": "89"})


SMS = {
    "TWILIO_ACCOUNT_SID": "AC" + SID,
    "TWILIO_AUTH_TOKEN": TOKEN,
    "ALERT_TO": "+14155550100, +14155550101, +14155550100",
    "TWILIO_FROM": "+14155550199",
}


@pytest.mark.parametrize(
    ("drop", "add", "error"),
    [
        ((), {}, None),
        (("TWILIO_FROM",), {"TWILIO_MESSAGING_SERVICE_SID": "MG" + SID}, None),
        (("TWILIO_AUTH_TOKEN",), {}, "TWILIO_AUTH_TOKEN is not set"),
        (("ALERT_TO",), {}, "ALERT_TO is not set"),
        (("TWILIO_ACCOUNT_SID",), {}, "TWILIO_ACCOUNT_SID is not set"),
        (("TWILIO_FROM",), {}, "exactly one"),  # no sender
        ((), {"TWILIO_MESSAGING_SERVICE_SID": "MG" + SID}, "exactly one"),  # two senders
    ],
)
def test_sms_settings_are_all_or_nothing(
    drop: tuple[str, ...], add: dict[str, str], error: str | None
) -> None:
    settings = {k: v for k, v in SMS.items() if k not in drop} | add
    if error is None:
        loaded = load_config(settings)
        assert loaded.sms_configured
        assert loaded.alert_to == ("+14155550100", "+14155550101")  # texted once each
    else:
        with pytest.raises(ConfigError, match=error) as raised:
            load_config(settings)
        assert TOKEN not in str(raised.value)


def test_no_sms_settings_is_fine() -> None:
    assert not load_config({}).sms_configured


# --- which env file --------------------------------------------------------


@pytest.fixture
def default_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the default location into tmp_path: the real one is under /etc."""
    path = tmp_path / "etc" / "check-status.env"
    monkeypatch.setattr(config, "DEFAULT_ENV_FILE", path)
    return path


def test_a_user_install_env_file_is_found_after_the_system_one(
    tmp_path: Path, default_env_file: Path
) -> None:
    # install.sh --user writes ~/.config/check-status/check-status.env.
    home = tmp_path / "home"
    user_file = home / ".config" / "check-status" / "check-status.env"
    user_file.parent.mkdir(parents=True)
    user_file.write_text("")
    assert choose_env_file(None, {"HOME": str(home)}) == (user_file, False)
    xdg = tmp_path / "xdg"
    (xdg / "check-status").mkdir(parents=True)
    (xdg / "check-status" / "check-status.env").write_text("")
    assert choose_env_file(None, {"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}) == (
        xdg / "check-status" / "check-status.env",
        False,
    )
    default_env_file.parent.mkdir(parents=True)
    default_env_file.write_text("")  # a system install comes first
    assert choose_env_file(None, {"HOME": str(home)}) == (default_env_file, False)


@pytest.mark.parametrize(
    ("option", "from_environ", "default_exists", "expected"),
    [
        ("option", "environ", True, ("option", True)),
        ("option", None, False, ("option", True)),
        (None, "environ", True, ("environ", True)),
        (None, "environ", False, ("environ", True)),
        (None, None, True, ("default", False)),
        (None, None, False, (None, False)),
    ],
)
def test_choose_env_file_precedence(
    tmp_path: Path,
    default_env_file: Path,
    option: str | None,
    from_environ: str | None,
    default_exists: bool,
    expected: tuple[str | None, bool],
) -> None:
    paths = {
        "option": tmp_path / "option.env",
        "environ": tmp_path / "environ.env",
        "default": default_env_file,
    }
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    paths["option"].write_text("")
    paths["environ"].write_text("")
    if default_exists:
        default_env_file.write_text("")
    environ = {ENV_FILE_VARIABLE: str(paths["environ"])} if from_environ else {}
    chosen = choose_env_file(str(paths["option"]) if option else None, environ)
    want_name, want_explicit = expected
    assert chosen == (paths[want_name] if want_name else None, want_explicit)


def test_empty_environment_variable_is_not_a_choice(default_env_file: Path) -> None:
    assert choose_env_file(None, {ENV_FILE_VARIABLE: ""}) == (None, False)


def test_process_environment_wins_over_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / "check-status.env"
    env_file.write_text("NODE_NAME=from-file\nHEAD_LAG_WARN_SECONDS=20\nDISK_PATHS=/data\n")
    environ = {"NODE_NAME": "from-environ", "PATH": "/usr/bin", "DISK_PATHS": "/"}
    settings = read_settings(env_file, environ)
    assert settings["NODE_NAME"] == "from-environ"
    assert settings["DISK_PATHS"] == "/"
    assert settings["HEAD_LAG_WARN_SECONDS"] == "20"  # only in the file
    assert "PATH" not in settings  # the environment gives only our keys
    loaded = load_config(settings, env_file=str(env_file))
    assert loaded.node_name == "from-environ"
    assert loaded.head_lag_warn_seconds == 20
    assert loaded.env_file == str(env_file)


def test_an_unknown_key_in_the_file_is_an_error_unless_not_strict(tmp_path: Path) -> None:
    env_file = tmp_path / "check-status.env"
    env_file.write_text("NODE_NAME=eu2\nUNRELATED=1\n")
    with pytest.raises(ConfigError, match=r"unknown setting UNRELATED in .* line 2; see "):
        read_settings(env_file, {})
    assert read_settings(env_file, {}, strict=False) == {"NODE_NAME": "eu2"}


def test_dollar_signs_in_the_file_are_not_interpolated(tmp_path: Path) -> None:
    env_file = tmp_path / "check-status.env"
    env_file.write_text("NODE_NAME=a${HOME}b\n")
    assert read_settings(env_file, {})["NODE_NAME"] == "a${HOME}b"


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_explicit_env_file_that_is_not_a_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "nowhere.env"
    if kind == "directory":
        path.mkdir()
    with pytest.raises(ConfigError) as raised:
        read_settings(path, {})
    assert str(path) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_load_with_missing_option_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing.env"
    with pytest.raises(ConfigError, match=str(missing)):
        config.load(str(missing), {})


def test_template_has_every_key() -> None:
    text = template()
    for key in KEYS:
        assert f"#{key.name}={key.default}\n" in text
        assert key.meaning in text


def test_template_values_are_all_commented_out(tmp_path: Path) -> None:
    env_file = tmp_path / "check-status.env"
    env_file.write_text(template())
    assert read_settings(env_file, {}) == {}


@pytest.mark.parametrize(
    ("key", "value", "secret", "shown"),
    [
        # No scheme, or a mistyped one: the likeliest reasons these keys fail at all.
        ("HEARTBEAT_URL", "hc-ping.com/0f8a-5bf6-uuid", "0f8a-5bf6-uuid", "'hc-ping.com/***'"),
        ("HEARTBEAT_URL", "https:/hc-ping.com/0f8a-uuid", "0f8a-uuid", "'https:/hc-ping.com/***'"),
        ("HEARTBEAT_URL", "http://hc-ping.com:0/5bf6-uuid", "5bf6-uuid", "hc-ping.com:0/***"),
        ("HEARTBEAT_URL", "https:///0f8a-5bf6-uuid", "0f8a-5bf6-uuid", "'https:///***'"),
        (
            "HEARTBEAT_URL",
            "https://hc-ping.com:0?token=5bf6",
            "5bf6",
            "'https://hc-ping.com:0/***'",
        ),
        ("NODEOS_URL", "user:s3cr3t@127.0.0.1:8888", "s3cr3t", "***@127.0.0.1:8888"),
        # A password holding '/', ' ' or ',' is still a password.
        ("NODEOS_URL", "http://user:pa/ss@host:0", "pa/ss", "'http://***@host:0'"),
        ("NODEOS_URL", "http://user:pa ss@host:0", "pa ss", "'http://***@host:0'"),
        ("PEERS", "eu1=http://u:p,w0rd@10.0.0.1:0", "p,w0rd", "'eu1=http://***@10.0.0.1:0'"),
        ("ENDPOINTS", "https://api:k3y@eu.example.io:0", "k3y", "***@eu.example.io:0"),
        ("TWILIO_API_BASE_URL", "api:t0k@api.twilio.com", "t0k", "***@api.twilio.com"),
    ],
)
def test_a_bad_url_is_shown_without_its_secret(key: str, value: str, secret: str, shown: str):
    with pytest.raises(ConfigError) as raised:
        load_config({key: value})
    message = str(raised.value)
    assert message.startswith(f"{key}=")
    assert secret not in message
    assert shown in message
