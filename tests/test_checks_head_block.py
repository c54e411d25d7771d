"""Table tests for the pure `head_block` check: lag, clocks, stalls and a head that went back."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from check_status.checks.head_block import (
    FUTURE_TOLERANCE_SECONDS,
    RESYNC_BLOCKS,
    judge_head_block,
)
from check_status.config import load_config
from check_status.model import ProbeFailure, Status
from check_status.probes.nodeos import ChainInfo

CONFIG = load_config({})  # HEAD_LAG_WARN 15 s, HEAD_LAG_CRIT 60 s, HEAD_STALL 30 s
NOW = datetime(2024, 10, 14, 2, 30, 34, tzinfo=UTC)
CHAIN = "aca376f206b8fc25a6ed44dbdc66547c36c6c33e3a119ffbeaef943642f0e906"


def info(num: int = 399_277_762, lag: float = 0.5, now: datetime = NOW) -> ChainInfo:
    """get_info as the probe would return it, with the head `lag` seconds before `now`."""
    return ChainInfo(
        chain_id=CHAIN,
        head_block_num=num,
        head_block_time=now - timedelta(seconds=lag),
        last_irreversible_block_num=num - 2,
        head_block_producer="big.one",
        server_version="v1.0.1",
        response_ms=4.2,
    )


def test_defaults_are_the_ones_these_tables_assume() -> None:
    assert (CONFIG.head_lag_warn_seconds, CONFIG.head_lag_crit_seconds) == (15, 60)
    assert CONFIG.head_stall_seconds == 30


def test_fresh_head_is_ok_and_names_the_head() -> None:
    result, memory = judge_head_block(info(num=1000, lag=0.5), None, NOW, CONFIG)
    assert result.name == "head_block"
    assert result.status is Status.OK
    assert "#1000" in result.summary
    assert "big.one" in result.summary
    assert result.metric("head_lag_seconds") == pytest.approx(0.5)
    assert result.metric("head_block_num") == 1000
    assert memory == {"num": 1000, "seen_at": "2024-10-14T02:30:34Z"}


@pytest.mark.parametrize(
    ("lag", "expected", "fragment"),
    [
        (0.0, Status.OK, "0.0s behind"),
        (14.9, Status.OK, "14.9s behind"),
        (15.0, Status.OK, "15.0s behind"),  # "past" the threshold, not at it
        (15.1, Status.WARNING, "15s behind"),
        (45, Status.WARNING, "45s behind"),
        (60.0, Status.WARNING, "1m behind"),
        (60.5, Status.CRITICAL, "1m behind"),
        (3 * 3600 + 5 * 60, Status.CRITICAL, "3h05m behind"),
        # A head in the future within the tolerance is clock jitter, shown as 0 s behind.
        (-FUTURE_TOLERANCE_SECONDS, Status.OK, "0.0s behind"),
    ],
)
def test_lag_thresholds(lag: float, expected: Status, fragment: str) -> None:
    result, _ = judge_head_block(info(num=77, lag=lag), None, NOW, CONFIG)
    assert result.status is expected
    assert fragment in result.summary
    if expected is not Status.OK:
        assert "head #77" in result.summary


@pytest.mark.parametrize(
    ("warn", "crit", "lag", "expected"),
    [
        (5, 10, 6, Status.WARNING),
        (5, 10, 11, Status.CRITICAL),
        (100, 200, 150, Status.WARNING),
        (100, 200, 99, Status.OK),
    ],
)
def test_lag_thresholds_come_from_config(
    warn: int, crit: int, lag: float, expected: Status
) -> None:
    config = dataclasses.replace(CONFIG, head_lag_warn_seconds=warn, head_lag_crit_seconds=crit)
    result, _ = judge_head_block(info(lag=lag), None, NOW, config)
    assert result.status is expected


@pytest.mark.parametrize("ahead", [FUTURE_TOLERANCE_SECONDS + 1, 120, 3600])
def test_head_far_in_the_future_warns_about_clocks(ahead: float) -> None:
    result, _ = judge_head_block(info(lag=-ahead), None, NOW, CONFIG)
    assert result.status is Status.WARNING
    assert "future" in result.summary
    assert "clock" in result.summary


def test_head_stalled_across_two_runs_is_critical() -> None:
    first, memory = judge_head_block(info(num=500, lag=1), None, NOW, CONFIG)
    assert first.status is Status.OK

    later = NOW + timedelta(seconds=CONFIG.head_stall_seconds)
    # The head time is fresh (Spring's cached get_info), only the number gives the stall away.
    second, memory2 = judge_head_block(info(num=500, lag=1, now=later), memory, later, CONFIG)
    assert second.status is Status.CRITICAL
    assert "stalled" in second.summary
    assert "#500" in second.summary
    assert "30s" in second.summary
    # The stall timer keeps counting from when the number was first seen.
    assert memory2 == {"num": 500, "seen_at": "2024-10-14T02:30:34Z"}

    third_at = later + timedelta(minutes=5)
    third, _ = judge_head_block(info(num=500, lag=1, now=third_at), memory2, third_at, CONFIG)
    assert third.status is Status.CRITICAL
    assert "5m" in third.summary


@pytest.mark.parametrize(
    ("seconds_later", "stalled"),
    [
        (0.3, False),  # two runs close together: not a stall
        (29, False),
        (30, True),
        (31, True),
    ],
)
def test_stall_threshold(seconds_later: float, stalled: bool) -> None:
    _, memory = judge_head_block(info(num=500), None, NOW, CONFIG)
    later = NOW + timedelta(seconds=seconds_later)
    result, _ = judge_head_block(info(num=500, now=later), memory, later, CONFIG)
    assert ("stalled" in result.summary) is stalled
    assert result.status is (Status.CRITICAL if stalled else Status.OK)


def test_advancing_head_is_not_stalled() -> None:
    _, memory = judge_head_block(info(num=500), None, NOW, CONFIG)
    later = NOW + timedelta(minutes=10)
    result, memory2 = judge_head_block(info(num=501, now=later), memory, later, CONFIG)
    assert result.status is Status.OK
    assert "stalled" not in result.summary
    assert memory2 == {"num": 501, "seen_at": "2024-10-14T02:40:34Z"}


@pytest.mark.parametrize(
    ("back_by", "expected"),
    [
        (1, Status.OK),  # micro-fork
        (2, Status.OK),
        (RESYNC_BLOCKS, Status.OK),  # within one producer round
        (RESYNC_BLOCKS + 1, Status.WARNING),
        (1_000_000, Status.WARNING),
    ],
)
def test_head_going_back(back_by: int, expected: Status) -> None:
    _, memory = judge_head_block(info(num=2_000_000), None, NOW, CONFIG)
    later = NOW + timedelta(seconds=60)
    now_num = 2_000_000 - back_by
    result, memory2 = judge_head_block(info(num=now_num, now=later), memory, later, CONFIG)
    assert result.status is expected
    assert ("went back" in result.summary) is (expected is Status.WARNING)
    if expected is Status.WARNING:
        assert "#2000000" in result.summary
        assert f"#{now_num}" in result.summary
    assert memory2["num"] == now_num


def test_clock_jumping_back_between_runs_is_not_a_stall() -> None:
    _, memory = judge_head_block(info(num=500), None, NOW, CONFIG)
    earlier = NOW - timedelta(hours=1)
    result, memory2 = judge_head_block(info(num=500, now=earlier), memory, earlier, CONFIG)
    assert result.status is Status.OK
    assert "stalled" not in result.summary
    # The stall timer restarts at the new clock instead of keeping a time in the future.
    assert memory2 == {"num": 500, "seen_at": "2024-10-14T01:30:34Z"}
    # ... and still catches a stall measured on the new clock.
    later = earlier + timedelta(seconds=30)
    result3, _ = judge_head_block(info(num=500, now=later), memory2, later, CONFIG)
    assert result3.status is Status.CRITICAL
    assert "stalled" in result3.summary


def test_stall_and_lag_report_the_worst_first() -> None:
    _, memory = judge_head_block(info(num=500, lag=20), None, NOW, CONFIG)
    later = NOW + timedelta(seconds=40)
    result, _ = judge_head_block(info(num=500, lag=20, now=later), memory, later, CONFIG)
    assert result.status is Status.CRITICAL
    assert result.summary.index("stalled") < result.summary.index("behind")


@pytest.mark.parametrize(
    "memory",
    [
        None,
        {},
        {"num": "not a number", "seen_at": "2024-10-14T02:30:00Z"},
        {"num": 500, "seen_at": "yesterday"},
        {"num": 500},
        "a string",
    ],
)
def test_unusable_memory_is_a_first_run(memory: object) -> None:
    later = NOW + timedelta(hours=1)
    result, memory2 = judge_head_block(info(num=500, now=later), memory, later, CONFIG)  # type: ignore[arg-type]
    assert result.status is Status.OK
    assert memory2 == {"num": 500, "seen_at": "2024-10-14T03:30:34Z"}


def test_probe_failure_is_unknown_caused_by_nodeos_and_keeps_memory() -> None:
    memory = {"num": 500, "seen_at": "2024-10-14T02:30:00Z"}
    result, memory2 = judge_head_block(ProbeFailure("connection refused"), memory, NOW, CONFIG)
    assert result.status is Status.UNKNOWN
    assert result.caused_by == "nodeos"
    assert memory2 == {"num": 500, "seen_at": "2024-10-14T02:30:00Z"}
