"""Configuration: one env file plus the process environment, validated at start.

`KEYS` is the single list of every setting: its default, its meaning and how it
is parsed. The loader, the error messages and the env-file template the
installer writes are all made from it, so they cannot drift apart.
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from check_status.alerting.oncall import DEFAULT_WAKING_HOURS, Operator

DEFAULT_ENV_FILE = Path("/etc/check-status/check-status.env")
ENV_FILE_VARIABLE = "CHECK_STATUS_ENV_FILE"
# Our variables of the process environment that are not settings: the env file,
# tracebacks on request (cli.py), the test stand-ins' fixtures (tests/standins.py).
OTHER_VARIABLES = frozenset({ENV_FILE_VARIABLE, "CHECK_STATUS_DEBUG", "CHECK_STATUS_FIXTURES"})
_OUR_PREFIX = "CHECK_STATUS_"
_SEE_TEMPLATE = "see check-status config-template for the settings"


class ConfigError(Exception):
    """A setting is wrong. The message is one line: key, value given, what is expected."""


class _InvalidValue(ConfigError):
    """A value that does not parse; `expected` is what it should have been, alone."""

    def __init__(self, message: str, expected: str) -> None:
        super().__init__(message)
        self.expected = expected


@dataclass(frozen=True)
class Key:
    name: str
    default: str
    meaning: str
    parse: Callable[[str, str], Any]
    secret: bool = False


# --- parsers: (key, raw text) -> value, raising ConfigError with one clear line ---


# Keys whose values are URLs, which may carry a password (`user:pw@host`).
_URL_KEYS = frozenset({"NODEOS_URL", "ENDPOINTS", "TWILIO_API_BASE_URL", "HEARTBEAT_URL", "PEERS"})
# A healthchecks.io ping URL's path is its secret token: whoever has it can ping.
_PATH_IS_SECRET = frozenset({"HEARTBEAT_URL"})
# What may stand before the part of a URL worth showing: `name=` (PEERS) and a
# scheme, even a mistyped one (`https:/`), since a bad value is why we are here.
_URL_LEAD = re.compile(r"\s*(?:[A-Za-z0-9._-]+=)?(?:[A-Za-z][A-Za-z0-9+.-]*:/{0,2})?")


def _fail(key: str, raw: str, expected: str, secret: bool = False) -> ConfigError:
    shown = "(hidden)" if secret else repr(_without_secrets(key, raw))
    return _InvalidValue(f"{key}={shown} is not valid: expected {expected}", expected)


def _without_secrets(key: str, raw: str) -> str:
    """The value as the operator typed it, less any password or ping token in a URL.

    A password may hold any character ('/', ',', ' '), and a bad value may have
    no scheme at all, so no URL parsing: everything before the last '@' goes,
    and for a ping URL everything after its host.
    """
    if key not in _URL_KEYS:
        return raw
    lead = _URL_LEAD.match(raw)
    start = lead.end() if lead else 0
    shown = raw
    if "@" in raw:
        shown = raw[:start] + "***" + raw[raw.rindex("@") :]
    if key in _PATH_IS_SECRET:
        # The host is what the operator needs to see; a path, query or fragment
        # may be the token (`https:///uuid`, `?token=...`).
        host = re.match(r"[^/?#\\]*", shown[start:])
        end = start + (host.end() if host else 0)
        if shown[end:].strip("/ "):
            shown = shown[:end] + "/***"
    return shown


def _integer(low: int, high: int) -> Callable[[str, str], int]:
    def parse(key: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise _fail(key, raw, f"a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise _fail(key, raw, f"a whole number from {low} to {high}")
        return value

    return parse


def _text(key: str, raw: str) -> str:
    return raw.strip()


def _node_name(key: str, raw: str) -> str:
    name = raw.strip() or socket.gethostname().split(".")[0]
    # It starts every SMS, so keep it short and in plain GSM-7 characters.
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,32}", name):
        raise _fail(key, raw, "1 to 32 letters, digits, '.', '_' or '-'")
    return name


def _url(key: str, raw: str, whole: str | None = None) -> str:
    """One URL; `whole` is the full setting it came from, shown in the error.

    The full setting, not the item: a password with a ',' in it would otherwise
    be cut in two by the list split, and half of it shown.
    """
    url = raw.strip().rstrip("/")
    shown = raw if whole is None else whole
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(key, shown, "an http:// or https:// URL such as http://127.0.0.1:8888")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or (port is None and ":" in parts.netloc.rsplit("]", 1)[-1]):
        raise _fail(key, shown, "a URL with a port from 1 to 65535")
    return url


def _optional_url(key: str, raw: str) -> str | None:
    return _url(key, raw) if raw.strip() else None


def _url_list(key: str, raw: str) -> tuple[str, ...]:
    return tuple(_url(key, item, raw) for item in _split(raw))


def _path_list(key: str, raw: str) -> tuple[str, ...]:
    paths = _split(raw)
    for path in paths:
        if not path.startswith("/"):
            raise _fail(key, raw, "comma-separated absolute paths such as /,/data")
    return tuple(paths)


def _optional_path(key: str, raw: str) -> str | None:
    path = raw.strip()
    if path and not path.startswith("/"):
        raise _fail(key, raw, "an absolute path")
    return path or None


def _path(key: str, raw: str) -> str:
    path = _optional_path(key, raw)
    if path is None:
        raise _fail(key, raw, "an absolute path")
    return path


def _chain_id(key: str, raw: str) -> str | None:
    value = raw.strip().lower()
    if value and not re.fullmatch(r"[0-9a-f]{64}", value):
        raise _fail(key, raw, "64 hex digits, as get_info reports chain_id")
    return value or None


def _phone(key: str, raw: str) -> str:
    number = raw.strip()
    if not re.fullmatch(r"\+[1-9][0-9]{1,14}", number):
        raise _fail(key, raw, "an E.164 phone number such as +14155550100")
    return number


def _optional_phone(key: str, raw: str) -> str | None:
    return _phone(key, raw) if raw.strip() else None


# name:+E164@Area/City/HH:MM-HH:MM, every part but the number optional.
_OPERATOR = re.compile(
    r"(?:(?P<name>[A-Za-z][A-Za-z0-9_.-]{0,23})\s*:\s*)?(?P<number>\+[0-9]+)"
    r"(?:\s*@\s*(?P<zone>[A-Za-z][A-Za-z0-9_+/-]*?)(?:/(?P<hours>\d{1,2}:\d{2}-\d{1,2}:\d{2}))?)?"
)
_OPERATOR_FORM = (
    "comma-separated operators such as luke:+14155550101@America/New_York"
    " (name, time zone and /HH:MM-HH:MM waking hours are optional; a bare +E164 is valid)"
)


def _operators(key: str, raw: str) -> tuple[Operator, ...]:
    """ALERT_TO: each item a number, optionally named and placed in a time zone."""
    from check_status.alerting.oncall import parse_hours, zone

    operators: dict[str, Operator] = {}
    names: set[str] = set()
    for item in _split(raw):
        found = _OPERATOR.fullmatch(item)
        if not found:
            raise _fail(key, item, _OPERATOR_FORM)
        number = _phone(key, found["number"])
        name = found["name"] or number
        place, hours = found["zone"], found["hours"]
        if place is not None:
            try:
                zone(place)
            except ValueError:
                raise ConfigError(
                    f"ALERT_TO item {item!r}: unknown time zone {place!r}; use an IANA name"
                    " such as Europe/London or Asia/Seoul (see timedatectl list-timezones)"
                ) from None
        waking = None
        if hours is not None:
            try:
                waking = parse_hours(hours)
            except ValueError as error:
                raise ConfigError(f"ALERT_TO item {item!r}: expected {error}") from None
        if number in operators:
            continue  # a number listed twice is texted once
        if name.lower() in names:
            raise ConfigError(
                f"ALERT_TO names {name!r} twice: give each operator their own name,"
                " so an ACK says who is on it"
            )
        names.add(name.lower())
        operators[number] = Operator(number, name, place, waking)
    return tuple(operators.values())


def _waking_hours(key: str, raw: str) -> tuple[int, int]:
    from check_status.alerting.oncall import parse_hours

    try:
        return parse_hours(raw)
    except ValueError as error:
        raise _fail(key, raw, str(error)) from None


def _call_on(key: str, raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("WARNING", "CRITICAL", "NEVER"):
        raise _fail(key, raw, "WARNING, CRITICAL or never")
    return level


def _sid(prefix: str) -> Callable[[str, str], str | None]:
    def parse(key: str, raw: str) -> str | None:
        value = raw.strip()
        if value and not re.fullmatch(prefix + r"[0-9a-fA-F]{32}", value):
            raise _fail(key, raw, f"'{prefix}' followed by 32 hex digits, from the Twilio console")
        return value or None

    return parse


def _auth_token(key: str, raw: str) -> str | None:
    """32 lower-case hex digits, as the Twilio console shows it.

    Checked here, strictly, because a stray paste (a non-Latin-1 character, a
    space) would otherwise fail only later and obscurely, in the HTTP client or
    as Twilio's "not JSON" answer. The message gives the length, never a character.
    """
    value = raw.strip()
    if not value or re.fullmatch(r"[0-9a-f]{32}", value):
        return value or None
    raise _fail(
        key,
        raw,
        "32 hex digits (0-9, a-f) from the Twilio console; " + _describe_token(value),
        secret=True,
    )


def _describe_token(value: str) -> str:
    """What is wrong with a token, by counts only: nothing of the token itself."""
    kinds = {"not ASCII": 0, "spaces": 0, "upper case": 0, "not hex digits": 0}
    for char in value:
        if not char.isascii():
            kinds["not ASCII"] += 1
        elif char.isspace():
            kinds["spaces"] += 1
        elif char in "ABCDEF":
            kinds["upper case"] += 1
        elif char not in "0123456789abcdef":
            kinds["not hex digits"] += 1
    length = f"this one has {len(value)} character{'s' if len(value) != 1 else ''}"
    parts = [
        f"one of them {'a space' if kind == 'spaces' else kind}"
        if count == 1
        else f"{count} of them {kind}"
        for kind, count in kinds.items()
        if count
    ]
    return ", ".join([length, *parts])


def _alert_level(key: str, raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("WARNING", "CRITICAL"):
        raise _fail(key, raw, "WARNING or CRITICAL")
    return level


def _peers(key: str, raw: str) -> tuple[tuple[str, str], ...]:
    peers = []
    for item in _split(raw):
        name, sep, url = item.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z0-9._-]{1,32}", name):
            raise _fail(key, raw, "comma-separated name=url pairs such as eu1=http://10.0.0.1:8899")
        peers.append((name, _url(key, url, raw)))
    return tuple(peers)


def _split(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


KEYS: tuple[Key, ...] = (
    Key("NODE_NAME", "", "label used in output and SMS (default: the host name)", _node_name),
    Key("NODEOS_URL", "http://127.0.0.1:8888", "the local nodeos HTTP API", _url),
    Key("EXPECTED_CHAIN_ID", "", "chain id the node must be on (empty: not checked)", _chain_id),
    Key(
        "HEAD_LAG_WARN_SECONDS",
        "15",
        "head block this far behind now is WARNING",
        _integer(1, 86400),
    ),
    Key(
        "HEAD_LAG_CRIT_SECONDS",
        "60",
        "head block this far behind now is CRITICAL",
        _integer(1, 86400),
    ),
    Key(
        "HEAD_STALL_SECONDS",
        "30",
        "head block number unchanged this long is CRITICAL (stalled)",
        _integer(5, 86400),
    ),
    Key(
        "LIB_LAG_WARN_BLOCKS",
        "400",
        "head minus LIB above this is WARNING (normal: ~330 Leap, ~2 Spring)",
        _integer(1, 10_000_000),
    ),
    Key(
        "LIB_LAG_CRIT_BLOCKS",
        "1200",
        "head minus LIB above this is CRITICAL",
        _integer(1, 10_000_000),
    ),
    Key("ENDPOINTS", "", "comma-separated API base URLs to check (LB URL, backends)", _url_list),
    Key(
        "ENDPOINT_REQUESTS",
        "3",
        "requests per endpoint per run, at once: behind a load balancer they reach "
        "different backends, so a half-broken pool is seen in one run",
        _integer(1, 10),
    ),
    Key("DISK_PATHS", "/", "comma-separated paths whose filesystems are checked", _path_list),
    Key("DISK_WARN_PERCENT", "80", "used space or inodes above this is WARNING", _integer(1, 100)),
    Key(
        "DISK_CRIT_PERCENT",
        "88",
        "used space or inodes above this is CRITICAL (nodeos stops at 90)",
        _integer(1, 100),
    ),
    Key(
        "STATE_DB_WARN_PERCENT", "80", "state database use above this is WARNING", _integer(1, 100)
    ),
    Key(
        "STATE_DB_CRIT_PERCENT", "90", "state database use above this is CRITICAL", _integer(1, 100)
    ),
    Key(
        "NODEOS_LOG",
        "",
        "nodeos log file to scan for fatal lines (empty: not checked)",
        _optional_path,
    ),
    Key("HTTP_TIMEOUT_SECONDS", "3", "timeout of each HTTP request, in seconds", _integer(1, 20)),
    Key("STATE_FILE", "/var/lib/check-status/state.json", "state kept between runs", _path),
    Key(
        "STATE_FALLBACK_DIR",
        "",
        "where a copy of the state goes while STATE_FILE cannot be written"
        " (empty: /run/check-status as root, else $XDG_RUNTIME_DIR or /tmp)",
        _optional_path,
    ),
    Key("TWILIO_ACCOUNT_SID", "", "Twilio account SID (AC...)", _sid("AC")),
    Key(
        "TWILIO_AUTH_TOKEN",
        "",
        "Twilio auth token (secret: keep this file mode 0600)",
        _auth_token,
        secret=True,
    ),
    Key(
        "TWILIO_AUTH_TOKEN_FILE",
        "",
        "a file holding only the Twilio auth token, instead of TWILIO_AUTH_TOKEN: keep that"
        " file mode 0600, and this one may be 0644 for monitoring users to read",
        _optional_path,
    ),
    Key("TWILIO_FROM", "", "sender: an E.164 number you own on Twilio", _optional_phone),
    Key(
        "TWILIO_MESSAGING_SERVICE_SID",
        "",
        "sender: a Twilio messaging service (MG...), instead of TWILIO_FROM",
        _sid("MG"),
    ),
    Key(
        "ALERT_TO",
        "",
        "the on-call operators, comma-separated: name:+E164@Time/Zone, each part but the"
        " number optional (luke:+14155550101@America/New_York); /HH:MM-HH:MM after the"
        " zone sets that operator's own waking hours",
        _operators,
    ),
    Key(
        "WAKING_HOURS",
        "07:00-23:00",
        "local hours in which an operator with a time zone is first in line for a new"
        " problem (an end before the start wraps midnight)",
        _waking_hours,
    ),
    Key(
        "ESCALATE_AFTER_MINUTES",
        "10",
        "minutes without an ACK before the next step: the text to everyone, then a call",
        _integer(1, 1440),
    ),
    Key(
        "CALL_ON",
        "CRITICAL",
        "lowest status whose last step is a voice call to every operator: WARNING,"
        " CRITICAL or never (calls need TWILIO_FROM)",
        _call_on,
    ),
    Key(
        "ALERT_LEVEL", "WARNING", "lowest status that is texted: WARNING or CRITICAL", _alert_level
    ),
    Key(
        "ALERT_AFTER",
        "2",
        "consecutive failing (or passing) runs before a problem (or recovery) is texted",
        _integer(1, 60),
    ),
    Key(
        "REMIND_EVERY_MINUTES",
        "60",
        "reminder interval while a problem lasts; 0 means never",
        _integer(0, 10080),
    ),
    Key(
        "TWILIO_API_BASE_URL",
        "https://api.twilio.com",
        "Twilio API base URL (a proxy or a test stand-in)",
        _url,
    ),
    Key(
        "HEARTBEAT_URL",
        "",
        "dead-man's-switch URL pinged after every run (healthchecks.io style)",
        _optional_url,
    ),
    Key(
        "HEARTBEAT_URL_FILE",
        "",
        "a file holding only HEARTBEAT_URL, instead of it (its path is the check's secret)",
        _optional_path,
    ),
    Key(
        "PEERS",
        "",
        "comma-separated name=url of other nodes' `check-status serve` (their /status is read)",
        _peers,
    ),
    Key(
        "TWILIO_WEBHOOK_URL",
        "",
        "serve: the public URL Twilio posts SMS replies to (https://node.example.io/twilio/sms);"
        " its signature is checked against it (empty: the webhook is off)",
        _optional_url,
    ),
    Key(
        "HEALTH_CACHE_SECONDS",
        "2",
        "serve: how long a /health verdict is reused (0: a probe per request, shared by those waiting)",
        _integer(0, 60),
    ),
    Key(
        "PROMETHEUS_TEXTFILE",
        "",
        "write node_exporter textfile metrics here after every run (a .prom path)",
        _optional_path,
    ),
    Key(
        "CRON_FILE",
        "/etc/cron.d/check-status",
        "the cron entry self-test verifies (install.sh records it)",
        _path,
    ),
)

KEYS_BY_NAME = {key.name: key for key in KEYS}

# The `*_FILE` keys (the convention of systemd credentials and container
# images): a file that holds the secret, so the env file itself can be readable
# by a monitoring user while the secret stays private. file key -> its key.
SECRET_FILE_KEYS = {
    "TWILIO_AUTH_TOKEN_FILE": "TWILIO_AUTH_TOKEN",
    "HEARTBEAT_URL_FILE": "HEARTBEAT_URL",
}
_SECRET_WHAT = {"TWILIO_AUTH_TOKEN": "the Twilio auth token", "HEARTBEAT_URL": "the heartbeat URL"}
# A token is 32 characters and a URL a few hundred: a bigger file is the wrong file.
SECRET_FILE_MAX_BYTES = 4096


@dataclass(frozen=True)
class Config:
    node_name: str
    nodeos_url: str
    expected_chain_id: str | None
    head_lag_warn_seconds: int
    head_lag_crit_seconds: int
    head_stall_seconds: int
    lib_lag_warn_blocks: int
    lib_lag_crit_blocks: int
    endpoints: tuple[str, ...]
    endpoint_requests: int
    disk_paths: tuple[str, ...]
    disk_warn_percent: int
    disk_crit_percent: int
    state_db_warn_percent: int
    state_db_crit_percent: int
    nodeos_log: str | None
    http_timeout_seconds: int
    state_file: str
    state_fallback_dir: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = field(default=None, repr=False)
    twilio_auth_token_file: str | None = None
    twilio_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    alert_to: tuple[str, ...] = ()  # the numbers of `operators`, in ALERT_TO's order
    operators: tuple[Operator, ...] = ()
    waking_hours: tuple[int, int] = DEFAULT_WAKING_HOURS
    escalate_after_minutes: int = 10
    call_on: str = "CRITICAL"  # or "WARNING", or "NEVER"
    twilio_webhook_url: str | None = None
    alert_level: str = "WARNING"
    alert_after: int = 2
    remind_every_minutes: int = 60
    twilio_api_base_url: str = "https://api.twilio.com"
    heartbeat_url: str | None = field(default=None, repr=False)
    heartbeat_url_file: str | None = None
    peers: tuple[tuple[str, str], ...] = ()
    health_cache_seconds: int = 2
    prometheus_textfile: str | None = None
    cron_file: str = "/etc/cron.d/check-status"
    env_file: str | None = None
    # The *_FILE keys whose files were left unread (load(..., read_secrets=False)):
    # their secret is None here although the settings give one.
    secrets_not_read: tuple[str, ...] = ()

    @property
    def sms_configured(self) -> bool:
        """The settings ask for SMS; the token may still be unread (`secrets_not_read`)."""
        return bool(self.twilio_account_sid and self.alert_to)

    @property
    def heartbeat_configured(self) -> bool:
        """The settings ask for a heartbeat; its URL may still be unread (`secrets_not_read`)."""
        return bool(self.heartbeat_url or self.heartbeat_url_file)

    @property
    def secret_files(self) -> dict[str, str]:
        """The *_FILE keys set, and their paths."""
        return {
            name: path
            for name in SECRET_FILE_KEYS
            if (path := getattr(self, name.lower())) is not None
        }

    @property
    def lock_file(self) -> str:
        return self.state_file + ".lock"


# Pairs that must be ordered: (warn key, crit key).
_THRESHOLD_PAIRS = (
    ("HEAD_LAG_WARN_SECONDS", "HEAD_LAG_CRIT_SECONDS"),
    ("LIB_LAG_WARN_BLOCKS", "LIB_LAG_CRIT_BLOCKS"),
    ("DISK_WARN_PERCENT", "DISK_CRIT_PERCENT"),
    ("STATE_DB_WARN_PERCENT", "STATE_DB_CRIT_PERCENT"),
)


def load_config(
    settings: Mapping[str, str], env_file: str | None = None, *, read_secrets: bool = True
) -> Config:
    """Build a Config from raw settings. Raises ConfigError on the first bad key.

    `read_secrets`: with True (the default) a *_FILE key's file is read and its
    content validated as the key it stands for (TWILIO_AUTH_TOKEN_FILE as
    TWILIO_AUTH_TOKEN). With False, for a caller that never texts nor pings (a
    monitoring plugin, run as a user who cannot read a root 0600 token file),
    the file is not opened: its path is validated, every other setting is, the
    secret is left None and the key is named in `Config.secrets_not_read`;
    `sms_configured` and `heartbeat_configured` still say what the settings ask.
    """
    values: dict[str, Any] = {}
    for key in KEYS:
        raw = settings.get(key.name)
        if raw is None or (raw.strip() == "" and key.default):
            raw = key.default
        values[key.name] = key.parse(key.name, raw)
    for warn_key, crit_key in _THRESHOLD_PAIRS:
        if values[warn_key] >= values[crit_key]:
            raise ConfigError(
                f"{warn_key}={values[warn_key]} is not valid: expected a number below "
                f"{crit_key}={values[crit_key]}"
            )
    for file_key, secret_key in SECRET_FILE_KEYS.items():
        if values[file_key] and values[secret_key]:
            raise ConfigError(
                f"{secret_key} and {file_key} are both set: keep one of them"
                f" ({file_key}, to keep {_SECRET_WHAT[secret_key]} out of the env file)"
            )
    _check_sms_settings(values)
    # Last, once every setting is known good: a bad threshold is reported
    # alike whether or not the secret files are read.
    not_read = []
    for file_key, secret_key in SECRET_FILE_KEYS.items():
        if not values[file_key]:
            continue
        if read_secrets:
            values[secret_key] = _secret_from_file(file_key, values[file_key], secret_key)
        else:
            not_read.append(file_key)
    names = {f.name for f in fields(Config)}
    operators = values["ALERT_TO"]
    values["ALERT_TO"] = tuple(o.number for o in operators)
    return Config(
        env_file=env_file,
        secrets_not_read=tuple(not_read),
        operators=operators,
        **{k.lower(): v for k, v in values.items() if k.lower() in names},
    )


def _secret_from_file(file_key: str, path: str, secret_key: str) -> Any:
    """The secret in `path`, validated as `secret_key` is; errors show none of it."""
    what = _SECRET_WHAT[secret_key]
    content = read_secret_file(file_key, path, what)
    if not content:
        raise ConfigError(f"{file_key} file {path} is empty: write {what} into it")
    try:
        return KEYS_BY_NAME[secret_key].parse(secret_key, content)
    except _InvalidValue as error:
        raise ConfigError(
            f"{file_key} file {path} does not hold a valid {secret_key}: expected "
            f"{error.expected}; write only {what} into it"
        ) from None


def read_secret_file(file_key: str, path: str, what: str) -> str:
    """The text of a *_FILE key's file, stripped: a regular file of at most 4 KiB.

    stat() before open(): opening a FIFO blocks until a writer comes, and a
    device may act on being opened. O_NONBLOCK and an fstat() of what was
    opened cover a file swapped in between. Symlinks are followed, as systemd
    credentials and container secret mounts may be links. Raises ConfigError,
    naming the file and the fix, never its content.
    """
    import stat

    def unreadable(error: OSError) -> ConfigError:
        if error.errno in (errno.EACCES, errno.EPERM):
            return ConfigError(
                f"{file_key} file {path} is not readable by this user{_owner_and_mode(path)}: "
                "run check-status as its owner (cron runs it as root), or give this user "
                f"read access (chgrp GROUP {path}; chmod 640 {path})"
            )
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            return ConfigError(
                f"{file_key} file {path} does not exist: write {what} into it "
                f"(umask 077, then chmod 600 {path}), or fix {file_key}"
            )
        return ConfigError(
            f"{file_key} file {path} cannot be read: {error.strerror or error}; fix it or {file_key}"
        )

    def not_a_file(mode: int) -> ConfigError:
        kind = (
            "directory"
            if stat.S_ISDIR(mode)
            else "FIFO"
            if stat.S_ISFIFO(mode)
            else "socket"
            if stat.S_ISSOCK(mode)
            else "device"
        )
        return ConfigError(
            f"{file_key} file {path} is a {kind}, not a regular file: "
            f"point {file_key} at a file holding only {what}"
        )

    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise unreadable(error) from None
    if not stat.S_ISREG(mode):
        raise not_a_file(mode)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise unreadable(error) from None
    try:
        opened = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(opened):
            raise not_a_file(opened)
        data = os.read(descriptor, SECRET_FILE_MAX_BYTES + 1)
    except OSError as error:
        raise unreadable(error) from None
    finally:
        os.close(descriptor)
    if len(data) > SECRET_FILE_MAX_BYTES:
        raise ConfigError(
            f"{file_key} file {path} is larger than {SECRET_FILE_MAX_BYTES // 1024} KiB: "
            f"it must hold only {what}; check {file_key}"
        )
    # Not ASCII is counted, never shown, by the validation that follows.
    return data.decode("utf-8", errors="replace").strip()


def _owner_and_mode(path: str) -> str:
    """` (mode 0600 root:root)`, or nothing when even that cannot be read."""
    try:
        info = os.stat(path)
    except OSError:
        return ""
    return f" (mode {info.st_mode & 0o7777:04o} {owner_names(info.st_uid, info.st_gid)})"


def owner_names(uid: int, gid: int) -> str:
    """`user:group` by name, or by number where the name is unknown."""
    import grp
    import pwd

    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return f"{user}:{group}"


_SMS_KEYS = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "ALERT_TO")


def _check_sms_settings(values: dict[str, Any]) -> None:
    """SMS is all or nothing: half a Twilio setup would silently text nobody."""
    # Not TWILIO_AUTH_TOKEN_FILE: install.sh --token-file lays the token down
    # before the operator fills in the rest; self-test WARNs until they do.
    given = [k for k in (*_SMS_KEYS, "TWILIO_FROM", "TWILIO_MESSAGING_SERVICE_SID") if values[k]]
    if not given:
        return
    needed = "SMS needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, ALERT_TO and a sender"
    for key in _SMS_KEYS:
        if not values[key] and not values.get(f"{key}_FILE"):
            raise ConfigError(f"{key} is not set but {given[0]} is: {needed}")
    if bool(values["TWILIO_FROM"]) == bool(values["TWILIO_MESSAGING_SERVICE_SID"]):
        raise ConfigError(
            "TWILIO_FROM and TWILIO_MESSAGING_SERVICE_SID: set exactly one of them as the sender"
        )


def choose_env_file(option: str | None, environ: Mapping[str, str]) -> tuple[Path | None, bool]:
    """Which env file to read, and whether it was asked for explicitly.

    Never the current directory and never dotenv's own upward search: under
    cron the job runs in $HOME, so only explicit paths are dependable.
    """
    if option:
        return Path(option), True
    if environ.get(ENV_FILE_VARIABLE):
        return Path(environ[ENV_FILE_VARIABLE]), True
    if DEFAULT_ENV_FILE.exists():
        return DEFAULT_ENV_FILE, False
    # Where `install.sh --user` writes it, so an operator without root runs
    # `check-status self-test` as the Deploy steps say, with no --env-file.
    user_file = user_env_file(environ)
    if user_file is not None and user_file.exists():
        return user_file, False
    return None, False


def user_env_file(environ: Mapping[str, str]) -> Path | None:
    config_home = environ.get("XDG_CONFIG_HOME") or (
        f"{environ['HOME']}/.config" if environ.get("HOME") else None
    )
    return Path(config_home) / "check-status" / "check-status.env" if config_home else None


@dataclass(frozen=True)
class EnvLine:
    """One binding of the env file, as python-dotenv's own parser reads it."""

    key: str | None
    value: str | None
    line: int  # where the binding starts, not the blank lines before it
    text: str  # that first line, as written
    error: bool  # the parser could not read it (python-dotenv skips it)


def env_lines(env_file: Path) -> Iterator[EnvLine]:
    """Every binding of the file, read as `dotenv_values` reads it but with the
    line numbers and the lines it cannot read, and no warning on stderr.

    Raises OSError and UnicodeDecodeError.
    """
    from dotenv.parser import parse_stream

    with open(env_file, encoding="utf-8") as stream:
        bindings = list(parse_stream(stream))
    for binding in bindings:
        if binding.key is None and not binding.error:
            continue  # a blank or comment line
        original = binding.original.string
        before = original[: len(original) - len(original.lstrip())]
        yield EnvLine(
            key=binding.key,
            value=binding.value,
            line=binding.original.line + before.count("\n"),
            text=original.lstrip().split("\n", 1)[0].rstrip(),
            error=binding.error,
        )


def read_settings(
    env_file: Path | None, environ: Mapping[str, str], *, strict: bool = True
) -> dict[str, str]:
    """The env file's values overlaid by the process environment (which wins).

    Strict, the default: a line the parser cannot read, a key check-status does
    not know in the file, or a variable of ours it does not know in the
    environment is a ConfigError: a misspelt key silently left its setting at
    the default. Not strict: such lines and variables are skipped, silently.
    """
    settings: dict[str, str] = {}
    if env_file is not None:
        if not env_file.is_file():
            raise ConfigError(
                f"env file {env_file} does not exist or is not a file: "
                "create it (install.sh writes one) or pass --env-file PATH"
            )
        if not os.access(env_file, os.R_OK):
            raise ConfigError(
                f"env file {env_file} is not readable by this user: check its owner and mode"
            )
        try:
            lines = list(env_lines(env_file))
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(
                f"env file {env_file} cannot be read: {error.__class__.__name__}"
            ) from None
        for entry in lines:
            problem = _line_problem(entry, env_file)
            if problem is not None:
                if strict:
                    raise ConfigError(problem)
                continue
            if entry.value is not None:
                settings[entry.key or ""] = entry.value
    if strict:
        for name in sorted(environ):
            problem = _variable_problem(name)
            if problem is not None:
                raise ConfigError(problem)
    settings.update({k: v for k, v in environ.items() if k in KEYS_BY_NAME})
    return settings


def _line_problem(entry: EnvLine, env_file: Path) -> str | None:
    """Why a line of the env file cannot be used, in one line, or None."""
    where = f"line {entry.line} of {env_file}"
    hidden = "not KEY=VALUE (the line is not shown: it may be a secret)"
    if entry.error or entry.key is None:
        shown = _shown_line(entry.text)
        if shown is None:
            return f"cannot read {where}: {hidden}; fix the line"
        return f"cannot read {where}: {shown} {_parse_hint(entry.text)}; fix the line"
    if entry.key not in KEYS_BY_NAME:
        if not _looks_like_a_key(entry.key):
            # A line of one word: perhaps a token pasted on a line of its own.
            return f"cannot read {where}: {hidden}; fix the line"
        return f"unknown setting {entry.key} in {env_file} line {entry.line}; {_suggest(entry.key)}"
    if entry.value is not None and ("\n" in entry.value or "\r" in entry.value):
        # A quote left open that a later line's quote closed: the lines between
        # were swallowed into this value.
        last = entry.line + entry.value.count("\n")
        return (
            f"cannot read {where}: {_shown_line(entry.text) or hidden} (an unclosed quote? the value "
            f"runs on to line {last}); fix the line"
        )
    return None


def _looks_like_a_key(name: str) -> bool:
    # A key is words joined by '_'; a 16-character run without one is a token.
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)) and not re.search(
        r"[A-Za-z0-9]{16}", name
    )


_LEADING_KEY = re.compile(r"\s*(?:export\s+)?'?([A-Za-z_][A-Za-z0-9_]*)'?\s*(=?)(.*)")


def _is_secret_name(name: str) -> bool:
    upper = name.upper()
    nearest = difflib.get_close_matches(upper, KEYS_BY_NAME, n=1, cutoff=0.6)
    return (
        any(word in upper for word in ("TOKEN", "SECRET", "PASS", "AUTH"))
        or (upper in KEYS_BY_NAME and KEYS_BY_NAME[upper].secret)
        or bool(nearest and KEYS_BY_NAME[nearest[0]].secret)
    )


def _shown_line(text: str) -> str | None:
    """The line as written, less any secret: a secret key's value never shows.

    None when the line does not start with a key: it may be a pasted secret.
    """
    match = _LEADING_KEY.fullmatch(text)
    if match is None or not _looks_like_a_key(match.group(1)):
        return None
    key, equal, rest = match.groups()
    if _is_secret_name(key) or key.upper() in _PATH_IS_SECRET:
        return f"{key}=(hidden)" if equal else key
    if key.upper() in _URL_KEYS:
        value = rest.lstrip()
        quote = value[:1] if value[:1] in ("'", '"') else ""
        text = text[: match.start(3)] + quote + _without_secrets(key.upper(), value[len(quote) :])
    return text if len(text) <= 100 else text[:97] + "..."


def _parse_hint(text: str) -> str:
    match = _LEADING_KEY.fullmatch(text)
    if match is None:
        return "(not KEY=VALUE)"
    _key, equal, rest = match.groups()
    rest = rest.strip()
    if not equal:
        return "(no '=' after the key?)"
    if rest[:1] in ("'", '"'):
        quote = rest[0]
        closing = re.match(rf"{quote}(?:\\.|[^{quote}\\])*{quote}", rest)
        if closing is None:
            return "(an unclosed quote?)"
        return "(text after the closing quote? put a # before a comment)"
    return "(not KEY=VALUE)"


def _suggest(name: str) -> str:
    nearest = difflib.get_close_matches(name.upper(), [k.name for k in KEYS], n=1, cutoff=0.6)
    return f"did you mean {nearest[0]}?" if nearest else _SEE_TEMPLATE


def _variable_problem(name: str) -> str | None:
    """A variable of the process environment that looks like ours and is not known.

    The environment holds every other program's variables too, so only names
    starting CHECK_STATUS_ and near misses of a key (same first word) count.
    """
    if name in KEYS_BY_NAME or name in OTHER_VARIABLES:
        return None
    known = [k.name for k in KEYS] + sorted(OTHER_VARIABLES)
    if name.startswith(_OUR_PREFIX):
        # CHECK_STATUS_ENV_FIL, or a key given the prefix (CHECK_STATUS_NODEOS_URL).
        by_rest = {v[len(_OUR_PREFIX) :]: v for v in OTHER_VARIABLES} | {k: k for k in known}
        nearest = difflib.get_close_matches(name[len(_OUR_PREFIX) :], by_rest, n=1, cutoff=0.6)
        hint = f"did you mean {by_rest[nearest[0]]}?" if nearest else _SEE_TEMPLATE
        return f"unknown setting {name} in the environment; {hint}"
    first = name.split("_", 1)[0]
    for key in known:
        if (
            key.split("_", 1)[0] == first
            and difflib.SequenceMatcher(None, name, key).ratio() >= 0.85
        ):
            return f"unknown setting {name} in the environment; did you mean {key}?"
    return None


def secret_keys_in(path: Path) -> list[str]:
    """The keys of this env file that hold a secret, in file order.

    For the mode check: a file others can read is a leak only if it holds one.
    Secrets: TWILIO_AUTH_TOKEN (any key marked secret), a URL with a password
    (`user:pw@host`), HEARTBEAT_URL with a ping token in its path; and, to be
    safe, a line the parser cannot read or an unknown key whose name is a
    secret's. Raises OSError when the file cannot be read.
    """
    from dotenv.parser import parse_stream

    with open(path, encoding="utf-8", errors="replace") as stream:
        bindings = list(parse_stream(stream))
    found: list[str] = []
    for binding in bindings:
        key, value = binding.key, binding.value or ""
        if binding.error:
            match = _LEADING_KEY.fullmatch(binding.original.string.strip().split("\n", 1)[0])
            key = match.group(1) if match else None
            value = match.group(3) if match else ""
        if not key or not value.strip():
            continue
        name = key.upper()
        if name in KEYS_BY_NAME and not binding.error:
            holds = KEYS_BY_NAME[name].secret or _without_secrets(name, value) != value
        else:
            holds = _is_secret_name(name) or (
                name in _URL_KEYS and _without_secrets(name, value) != value
            )
        if holds and key not in found:
            found.append(key)
    return found


def load(
    option: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    read_secrets: bool = True,
) -> Config:
    """The shell's entry point: find the env file, read it, validate everything.

    `read_secrets=False` leaves the *_FILE keys' files unopened: for a caller
    that never texts nor pings, such as a monitoring plugin run as a user who
    cannot read them (see `load_config`).
    """
    environ = os.environ if environ is None else environ
    env_file, _explicit = choose_env_file(option, environ)
    settings = read_settings(env_file, environ)
    return load_config(
        settings, env_file=str(env_file) if env_file else None, read_secrets=read_secrets
    )


def template(settings: Mapping[str, str] | None = None) -> str:
    """The commented env file the installer writes: every key, its meaning, its default.

    Keys in `settings` are written set (STATE_FILE and CRON_FILE, by install.sh);
    every other key is commented out, showing its default.
    """
    settings = settings or {}
    lines = [
        "# check-status configuration. Values in the process environment win over this file.",
        "# Keep this file mode 0600 while it holds the Twilio auth token; with the token in",
        "# TWILIO_AUTH_TOKEN_FILE (a file of mode 0600), this file may be 0644.",
        "# A commented key shows its default.",
        "",
    ]
    for key in KEYS:
        lines.append(f"# {key.meaning}")
        if key.name in settings:
            lines.append(f"{key.name}={settings[key.name]}")
        else:
            lines.append(f"#{key.name}={key.default}")
        lines.append("")
    return "\n".join(lines)
