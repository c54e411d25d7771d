"""Table tests for the pure checks besides head_block, and the small helpers in model."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from check_status.checks.chain_id import judge_chain_id
from check_status.checks.disk import judge_disk
from check_status.checks.endpoint import judge_endpoint
from check_status.checks.lib import judge_lib
from check_status.checks.nodeos_log import (
    FATAL_HOLD_SECONDS,
    FATAL_SIGNS,
    SPARE_RUNS,
    fatal_hold_seconds,
    judge_nodeos_log,
)
from check_status.checks.state_db import judge_state_db
from check_status.config import load_config
from check_status.model import ProbeFailure, Status, human_bytes, human_duration, worst
from check_status.probes.disk import DiskUsage
from check_status.probes.log import LogChunk, LogPosition, fatal_in
from check_status.probes.nodeos import ChainInfo, DbSize, DbSizeNotEnabled

CONFIG = load_config({})
NOW = datetime(2023, 9, 27, 12, 51, 58, tzinfo=UTC)
EOS = "aca376f206b8fc25a6ed44dbdc66547c36c6c33e3a119ffbeaef943642f0e906"
JUNGLE = "73e4385a2708e6d7048834fbc1079f2fabb17b3c125b146af438971e90716c4d"
GIB = 1024**3


def info(
    head: int = 333_261_268,
    lib: int | None = None,
    lag: float = 0.5,
    now: datetime = NOW,
    chain: str = EOS,
) -> ChainInfo:
    return ChainInfo(
        chain_id=chain,
        head_block_num=head,
        head_block_time=now - timedelta(seconds=lag),
        last_irreversible_block_num=head - 2 if lib is None else lib,
        head_block_producer="eoseouldotio",
        server_version="v4.0.4",
        response_ms=12.3,
    )


# --- lib ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lib_lag", "expected"),
    [
        (0, Status.OK),
        (2, Status.OK),  # Spring / Savanna
        (330, Status.OK),  # Leap / DPoS
        (332, Status.OK),  # the Leap 4 mainnet fixture
        (400, Status.OK),
        (401, Status.WARNING),
        (1200, Status.WARNING),
        (1201, Status.CRITICAL),
        (5_000_000, Status.CRITICAL),
    ],
)
def test_lib_lag_thresholds(lib_lag: int, expected: Status) -> None:
    head = 10_000_000
    result, memory = judge_lib(info(head=head, lib=head - lib_lag), None, NOW, CONFIG)
    assert result.name == "lib"
    assert result.status is expected
    assert result.metric("lib_lag_blocks") == lib_lag
    assert f"{lib_lag} blocks behind head" in result.summary
    assert memory == {"num": head - lib_lag, "seen_at": "2023-09-27T12:51:58Z", "head": head}


def test_lib_thresholds_come_from_config() -> None:
    config = dataclasses.replace(CONFIG, lib_lag_warn_blocks=10, lib_lag_crit_blocks=20)
    statuses = [
        judge_lib(info(head=1000, lib=1000 - lag), None, NOW, config)[0].status
        for lag in (10, 11, 20, 21)
    ]
    assert statuses == [Status.OK, Status.WARNING, Status.WARNING, Status.CRITICAL]


def test_lib_stuck_while_head_moves_warns() -> None:
    lib = 1000
    _, memory = judge_lib(info(head=1002, lib=lib), None, NOW, CONFIG)
    # Runs in between, each short of the stall time: the timer keeps its start.
    mid = NOW + timedelta(seconds=15)
    result, memory = judge_lib(info(head=1032, lib=lib, now=mid), memory, mid, CONFIG)
    assert result.status is Status.OK
    assert memory["seen_at"] == "2023-09-27T12:51:58Z"
    later = NOW + timedelta(seconds=CONFIG.head_stall_seconds)
    result, memory = judge_lib(info(head=1062, lib=lib, now=later), memory, later, CONFIG)
    assert result.status is Status.WARNING
    assert "LIB stuck at #1000" in result.summary
    assert "30s" in result.summary
    assert "#1062" in result.summary


@pytest.mark.parametrize(
    ("lib2", "head2", "stuck"),
    [
        (1000, 1062, True),  # LIB still, head moved
        (1001, 1062, False),  # LIB moved
        (1000, 1002, False),  # both still: a head stall, head_block's business
        (1000, 1001, False),  # head went back: not a finality problem
    ],
)
def test_lib_stuck_needs_the_head_to_move(lib2: int, head2: int, stuck: bool) -> None:
    _, memory = judge_lib(info(head=1002, lib=1000), None, NOW, CONFIG)
    later = NOW + timedelta(minutes=2)
    result, _ = judge_lib(info(head=head2, lib=lib2, now=later), memory, later, CONFIG)
    assert ("stuck" in result.summary) is stuck
    assert result.status is (Status.WARNING if stuck else Status.OK)


def test_lib_stuck_with_the_clock_gone_back_is_not_stuck() -> None:
    _, memory = judge_lib(info(head=1002, lib=1000), None, NOW, CONFIG)
    earlier = NOW - timedelta(hours=1)
    result, _ = judge_lib(info(head=1100, lib=1000, now=earlier), memory, earlier, CONFIG)
    assert result.status is Status.OK


def test_lib_ahead_of_head_warns() -> None:
    result, _ = judge_lib(info(head=1000, lib=1005), None, NOW, CONFIG)
    assert result.status is Status.WARNING
    assert "ahead of head" in result.summary
    assert result.metric("lib_lag_blocks") == -5


def test_lib_probe_failure_is_a_consequence_and_keeps_memory() -> None:
    memory = {"num": 1, "seen_at": "2023-09-27T12:00:00Z", "head": 3}
    result, memory2 = judge_lib(ProbeFailure("timeout after 3s"), memory, NOW, CONFIG)
    assert result.status is Status.UNKNOWN
    assert result.caused_by == "nodeos"
    assert memory2 == memory


# --- chain_id ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("actual", "expected_status", "fragment"),
    [
        (EOS, Status.OK, "on chain aca376f206b8"),
        (JUNGLE, Status.CRITICAL, "wrong chain 73e4385a2708"),
    ],
)
def test_chain_id(actual: str, expected_status: Status, fragment: str) -> None:
    result = judge_chain_id(info(chain=actual), EOS)
    assert result.name == "chain_id"
    assert result.status is expected_status
    assert fragment in result.summary
    if expected_status is Status.CRITICAL:
        assert "expected aca376f206b8" in result.summary


def test_chain_id_probe_failure_is_a_consequence() -> None:
    result = judge_chain_id(ProbeFailure("connection refused"), EOS)
    assert result.status is Status.UNKNOWN
    assert result.caused_by == "nodeos"


# --- endpoint ----------------------------------------------------------------

URL = "https://api.example.net:8443"


@pytest.mark.parametrize(
    "reason",
    [
        "HTTP 503 NODEOS_UNREACHABLE",
        "connection refused",
        "timeout after 3s",
        "HTTP 502 not JSON (HTML page)",
    ],
)
def test_endpoint_failure_reason_passes_through(reason: str) -> None:
    result = judge_endpoint(URL, [ProbeFailure(reason, 503)], EOS, NOW, CONFIG)
    assert result.name == "endpoint:api.example.net:8443"
    assert result.status is Status.CRITICAL
    assert result.summary == reason
    assert result.caused_by is None  # an endpoint failure pages on its own


@pytest.mark.parametrize(
    ("reference", "chain", "lag", "expected", "fragment"),
    [
        (EOS, EOS, 0.5, Status.OK, "0.5s behind"),
        (None, JUNGLE, 0.5, Status.OK, "head #"),  # nothing to compare with
        (EOS, JUNGLE, 0.5, Status.CRITICAL, "on another chain (73e4385a2708"),
        (EOS, JUNGLE, 3600, Status.CRITICAL, "on another chain"),  # chain reported first
        (EOS, EOS, 15, Status.OK, "15.0s behind"),
        (EOS, EOS, 16, Status.WARNING, "16s behind"),
        (EOS, EOS, 60, Status.WARNING, "1m behind"),
        (EOS, EOS, 61, Status.CRITICAL, "1m01s behind"),
        (EOS, EOS, -30, Status.OK, "0.0s behind"),
    ],
)
def test_endpoint(
    reference: str | None, chain: str, lag: float, expected: Status, fragment: str
) -> None:
    result = judge_endpoint(URL, [info(chain=chain, lag=lag)], reference, NOW, CONFIG)
    assert result.status is expected
    assert fragment in result.summary
    assert result.metric("head_lag_seconds") == pytest.approx(lag)
    assert result.metric("response_ms") == pytest.approx(12.3)


# --- disk --------------------------------------------------------------------


def usage(space: float, inodes: float | None = 10.0) -> DiskUsage:
    return DiskUsage(
        path="/data",
        total_bytes=100 * GIB,
        available_bytes=int((100 - space) * GIB),
        used_percent=space,
        inodes_total=1_000_000,
        inodes_available=int(1_000_000 * (100 - (inodes or 0)) / 100),
        inodes_used_percent=inodes,
    )


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        (0.0, Status.OK),
        (79.9, Status.OK),
        (80.1, Status.WARNING),
        (87.9, Status.WARNING),
        (88.1, Status.CRITICAL),
        (100.0, Status.CRITICAL),
    ],
)
def test_disk_space(space: float, expected: Status) -> None:
    result = judge_disk("/data", usage(space), CONFIG)
    assert result.name == "disk:/data"
    assert result.status is expected
    assert f"{space:.0f}% used" in result.summary
    assert " left" in result.summary
    assert "inodes" not in result.summary
    assert result.metric("used_percent") == pytest.approx(space)


@pytest.mark.parametrize(
    ("inodes", "expected"),
    [(50.0, Status.OK), (85.0, Status.WARNING), (95.0, Status.CRITICAL)],
)
def test_disk_inodes_with_space_ok(inodes: float, expected: Status) -> None:
    result = judge_disk("/data", usage(40.0, inodes), CONFIG)
    assert result.status is expected
    assert result.metric("inodes_used_percent") == pytest.approx(inodes)
    if expected is Status.OK:
        assert result.summary.startswith("40% used")
    else:
        assert f"inodes {inodes:.0f}% used" in result.summary
        assert f"{int(1_000_000 * (100 - inodes) / 100)} left" in result.summary


def test_disk_space_and_inodes_both_bad_names_both() -> None:
    result = judge_disk("/data", usage(85.0, 95.0), CONFIG)
    assert result.status is Status.CRITICAL
    assert "85% used" in result.summary
    assert "inodes 95% used" in result.summary


def test_disk_without_inode_limit() -> None:
    result = judge_disk("/data", usage(50.0, None), CONFIG)
    assert result.status is Status.OK
    assert "inodes" not in result.summary
    assert result.metric("inodes_used_percent") is None


def test_disk_thresholds_come_from_config() -> None:
    config = dataclasses.replace(CONFIG, disk_warn_percent=50, disk_crit_percent=60)
    assert judge_disk("/", usage(55.0), config).status is Status.WARNING
    assert judge_disk("/", usage(65.0), config).status is Status.CRITICAL


def test_disk_probe_failure_is_unknown_with_reason() -> None:
    result = judge_disk("/data", ProbeFailure("/data does not exist"), CONFIG)
    assert result.status is Status.UNKNOWN
    assert result.summary == "/data does not exist"


# --- state_db ----------------------------------------------------------------


def test_state_db_not_enabled_is_ok() -> None:
    result = judge_state_db(DbSizeNotEnabled(), True, CONFIG)
    assert result.name == "state_db"
    assert result.status is Status.OK
    assert "not enabled" in result.summary


@pytest.mark.parametrize(
    ("used_mib", "expected", "fragment"),
    [
        (0, Status.OK, "0% used"),
        (512, Status.OK, "50% used (512.0 MiB of 1.0 GiB)"),
        (818, Status.OK, "80% used"),  # 79.9 %
        (820, Status.WARNING, "80% used"),  # 80.1 %
        (921, Status.WARNING, "90% used"),  # 89.9 %
        (922, Status.CRITICAL, "90% used"),  # 90.0 %
        (1024, Status.CRITICAL, "100% used"),
    ],
)
def test_state_db_percent(used_mib: int, expected: Status, fragment: str) -> None:
    db = DbSize(used_bytes=used_mib * 1024 * 1024, size=1024 * 1024 * 1024)
    result = judge_state_db(db, True, CONFIG)
    assert result.status is expected
    assert fragment in result.summary
    assert ("chain-state-db-size-mb" in result.summary) is (expected is not Status.OK)
    assert result.metric("used_percent") == pytest.approx(100 * used_mib / 1024, abs=0.05)


def test_state_db_probe_failure_is_unknown() -> None:
    result = judge_state_db(ProbeFailure("HTTP 500 timeout_exception"), True, CONFIG)
    assert result.status is Status.UNKNOWN
    assert "timeout_exception" in result.summary
    assert result.caused_by is None


@pytest.mark.parametrize(
    "db",
    [DbSize(1, 2), DbSizeNotEnabled(), ProbeFailure("connection refused")],
)
def test_state_db_with_nodeos_unreachable_is_a_consequence(db: object) -> None:
    result = judge_state_db(db, False, CONFIG)  # type: ignore[arg-type]
    assert result.status is Status.UNKNOWN
    assert result.caused_by == "nodeos"


# --- nodeos_log --------------------------------------------------------------

POSITION = LogPosition(inode=42, offset=1000, fingerprint="abc")

FATAL_LINES = [
    "error 2024-05-01T12:00:00.000 nodeos main.cpp:170 main ] std::bad_alloc",
    "error 2024-05-01T12:00:00.000 nodeos controller.cpp:2 startup ] "
    "database dirty flag set (likely due to unclean shutdown): replay required",
    "warn 2024-05-01T12:00:00.000 nodeos resource_monit:1 ] "
    "Database has reached an unsafe level of usage, shutting down",
    "error 2024-05-01T12:00:00.000 nodeos chain_plugin.cpp:1 ] replay required",
]


def test_every_fatal_sign_has_a_line_here() -> None:
    for sign in FATAL_SIGNS:
        assert any(sign in line for line in FATAL_LINES), sign


@pytest.mark.parametrize("fatal", FATAL_LINES)
def test_find_fatal_line_finds_each_sign(fatal: str) -> None:
    lines = ("info  2024-05-01T11:59:59.500 nodeos producer_plugin ] Received block", fatal)
    assert last_fatal_line(lines) == fatal


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ((), None),
        (("info  all fine", "warn  slow peer"), None),
        (("Bad_Alloc in upper case",), None),  # signs are matched as nodeos writes them
        (("x bad_alloc first", "y replay required last"), "y replay required last"),
        (("a   bad_alloc\twith   gaps  ",), "a bad_alloc with gaps"),
    ],
)
def test_find_fatal_line(lines: tuple[str, ...], expected: str | None) -> None:
    assert last_fatal_line(lines) == expected


def last_fatal_line(lines: tuple[str, ...]) -> str | None:
    """What the probe keeps of these lines: the last one showing a fatal sign, cleaned."""
    found = [f for f in map(fatal_in, lines) if f is not None]
    return found[-1].text if found else None


def chunk(*lines: str, notes: tuple[str, ...] = ()) -> LogChunk:
    """The chunk the probe gives for a log that gained these lines."""
    found = [f for f in map(fatal_in, lines) if f is not None]
    return LogChunk(POSITION, notes, len(lines), found[-1] if found else None)


@pytest.mark.parametrize("fatal", FATAL_LINES)
def test_nodeos_log_fatal_line_is_critical(fatal: str) -> None:
    result, memory = judge_nodeos_log(chunk("info fine", fatal, "info after"), None, NOW)
    assert result.name == "nodeos_log"
    assert result.status is Status.CRITICAL
    assert "just now" in result.summary
    sign = next(s for s in FATAL_SIGNS if s in fatal)
    assert sign in result.summary
    assert memory["fatal_at"] == "2023-09-27T12:51:58Z"
    assert memory["position"] == POSITION.to_json()


@pytest.mark.parametrize(
    ("seconds_later", "held"),
    [
        (60, True),
        (FATAL_HOLD_SECONDS - 1, True),
        (FATAL_HOLD_SECONDS, False),
        (FATAL_HOLD_SECONDS + 3600, False),
    ],
)
def test_nodeos_log_holds_the_fatal_line(seconds_later: int, held: bool) -> None:
    _, memory = judge_nodeos_log(chunk(FATAL_LINES[0]), None, NOW)
    later = NOW + timedelta(seconds=seconds_later)
    result, memory2 = judge_nodeos_log(chunk(), memory, later)
    assert result.status is (Status.CRITICAL if held else Status.OK)
    assert ("bad_alloc" in result.summary) is held
    assert ("fatal_line" in memory2) is held
    if held:
        assert "ago" in result.summary


@pytest.mark.parametrize(
    ("alert_after", "hold_minutes"), [(1, 15), (2, 15), (10, 15), (16, 21), (60, 65)]
)
def test_a_fatal_line_is_held_long_enough_to_be_texted(alert_after: int, hold_minutes: int) -> None:
    hold = fatal_hold_seconds(alert_after)
    assert hold == hold_minutes * 60
    # Every run a minute apart is CRITICAL for ALERT_AFTER runs at least.
    _, memory = judge_nodeos_log(chunk(FATAL_LINES[0]), None, NOW, hold)
    for minute in range(1, alert_after + SPARE_RUNS):
        result, memory = judge_nodeos_log(chunk(), memory, NOW + timedelta(minutes=minute), hold)
        assert result.status is Status.CRITICAL, minute
    result, _ = judge_nodeos_log(chunk(), memory, NOW + timedelta(seconds=hold), hold)
    assert result.status is Status.OK


def test_nodeos_log_clean_lines_are_ok_and_count() -> None:
    result, memory = judge_nodeos_log(
        chunk("info a", "info b", "info c", notes=("log rotated",)), {}, NOW
    )
    assert result.status is Status.OK
    assert "3 new lines" in result.summary
    assert "log rotated" in result.summary
    assert memory == {"position": POSITION.to_json()}


def test_nodeos_log_probe_failure_is_unknown_and_keeps_memory() -> None:
    memory = {"position": POSITION.to_json(), "fatal_line": "x", "fatal_at": "2023-09-27T12:50:00Z"}
    result, memory2 = judge_nodeos_log(ProbeFailure("log file /x not found"), memory, NOW)
    assert result.status is Status.UNKNOWN
    assert "not found" in result.summary
    assert memory2 == memory


# --- model -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], Status.OK),
        ([Status.OK], Status.OK),
        ([Status.OK, Status.WARNING], Status.WARNING),
        ([Status.WARNING, Status.UNKNOWN], Status.UNKNOWN),
        ([Status.UNKNOWN, Status.WARNING, Status.OK], Status.UNKNOWN),
        ([Status.UNKNOWN, Status.CRITICAL], Status.CRITICAL),
        ([Status.CRITICAL, Status.UNKNOWN, Status.WARNING, Status.OK], Status.CRITICAL),
    ],
)
def test_worst(statuses: list[Status], expected: Status) -> None:
    assert worst(statuses) is expected
    assert worst(reversed(statuses)) is expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "0s"),
        (0, "0s"),
        (59.9, "59s"),
        (60, "1m"),
        (61, "1m01s"),  # seconds still shown near the thresholds
        (599, "9m59s"),
        (600, "10m"),
        (659, "10m"),
        (3599, "59m"),
        (3600, "1h"),
        (3660, "1h01m"),
        (3 * 3600 + 5 * 60, "3h05m"),
        (86400, "1d"),
        (2 * 86400 + 4 * 3600 + 59 * 60, "2d4h"),
    ],
)
def test_human_duration(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (int(3.4 * GIB), "3.4 GiB"),
        (1024**4, "1.0 TiB"),
        (2048 * 1024**4, "2048.0 TiB"),
    ],
)
def test_human_bytes(count: int, expected: str) -> None:
    assert human_bytes(count) == expected


@pytest.mark.parametrize(
    ("answers", "expected", "summary"),
    [
        (["ok", "ok", "ok"], Status.OK, "head #"),
        (
            ["ok", "503", "ok"],
            Status.CRITICAL,
            "1 of 3 requests failed: HTTP 503 NODEOS_UNREACHABLE",
        ),
        (
            ["503", "ok", "503"],
            Status.CRITICAL,
            "2 of 3 requests failed: HTTP 503 NODEOS_UNREACHABLE",
        ),
        (["503", "503", "503"], Status.CRITICAL, "HTTP 503 NODEOS_UNREACHABLE"),
        (["ok", "stale", "ok"], Status.CRITICAL, "head 1h behind"),  # the stalest backend decides
    ],
)
def test_endpoint_behind_a_load_balancer(
    answers: list[str], expected: Status, summary: str
) -> None:
    made = {
        "ok": lambda: info(lag=0.5),
        "stale": lambda: info(lag=3600),
        "503": lambda: ProbeFailure("HTTP 503 NODEOS_UNREACHABLE", 503),
    }
    result = judge_endpoint(URL, [made[a]() for a in answers], EOS, NOW, CONFIG)
    assert result.status is expected
    assert result.summary.startswith(summary), result.summary
