"""Perfdata by the Nagios plugin guidelines: plain decimals, ranges that fit
values below 0, labels that cannot end themselves early, every item on every
run, and a first line that fits NRPE v2's 1,023 bytes."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from check_status.checks import consequence
from check_status.model import CheckResult, Metric, Status
from check_status.output import MAX_FIRST_LINE_BYTES, long_output, nagios_line, perfdata
from check_status.runner import RunReport


def perf_of(name: str, *metrics: Metric) -> str:
    return perfdata((CheckResult(name, Status.OK, "fine", metrics),))


def test_a_large_lag_is_a_plain_decimal_never_an_exponent():
    # About 14 days behind: `{:g}` wrote 1.23457e+06, losing digits and confusing graphers.
    item = perf_of("head_block", Metric("head_lag_seconds", 1234567.8, "s", 15, 60))
    assert item == "'head_lag'=1234567.8s;~:15;~:60"
    assert not re.search(r"\de[+-]?\d", item)


def test_a_head_slightly_ahead_is_inside_the_range_not_outside_it():
    """`15;60` means outside 0..15, so every healthy run (a lag of -0.2 s) was out of
    range; `~:15` means above 15 only."""
    item = perf_of("head_block", Metric("head_lag_seconds", -0.204, "s", 15, 60))
    assert item == "'head_lag'=-0.204s;~:15;~:60"


def test_metrics_with_a_floor_of_zero_keep_the_short_form():
    item = perf_of("lib", Metric("lib_lag_blocks", 332, "", 400, 1200, minimum=0))
    assert item == "'lib_lag'=332;400;1200;0"


def test_tiny_values_and_zero_read_as_numbers():
    assert perf_of("nodeos", Metric("response_ms", 0.0, "ms", minimum=0)) == (
        "'nodeos_response'=0ms;;;0"
    )
    assert perf_of("nodeos", Metric("response_ms", 1e-9, "ms", minimum=0)) == (
        "'nodeos_response'=0ms;;;0"
    )


def test_a_quote_or_an_equals_sign_in_a_label_cannot_end_it():
    item = perf_of("disk:/mnt/o'b=c", Metric("used_percent", 21.5, "%", 80, 88, 0, 100))
    assert item == "'disk:/mnt/o''b_c'=21.5%;80;88;0;100"


def test_every_item_is_there_when_nodeos_is_down_as_u():
    """Items came and went with the state: only disk:* remained when nodeos was down."""
    results = (
        CheckResult("nodeos", Status.CRITICAL, "connection refused"),
        consequence("head_block", "nodeos"),
        consequence("lib", "nodeos"),
        consequence("state_db", "nodeos"),
        CheckResult("endpoint:api.example.io", Status.CRITICAL, "HTTP 503"),
    )
    assert perfdata(results) == (
        "'nodeos_response'=U 'head_lag'=U 'lib_lag'=U 'state_db'=U"
        " 'endpoint:api.example.io:response'=U 'endpoint:api.example.io:head_lag'=U"
    )


def report_of(results: tuple[CheckResult, ...], notes: tuple[str, ...] = ()) -> RunReport:
    return RunReport("eu2", datetime(2026, 12, 2, tzinfo=UTC), results, "/tmp/s.json", notes)


def test_line_one_fits_nrpe_v2_and_keeps_its_perfdata():
    """1,065 to 1,385 bytes were seen with many problems; check_nrpe -2 cut them at
    1,023 mid-word and lost every perfdata item."""
    failing = [
        CheckResult(f"endpoint:api{n}.example.io", Status.CRITICAL, "HTTP 503 " + "x" * 80)
        for n in range(6)
    ]
    node = CheckResult("nodeos", Status.OK, "fine", (Metric("response_ms", 3.0, "ms", minimum=0),))
    results = (*failing, node)
    line = nagios_line(report_of(results, ("a note " * 40,)))
    assert len(line.encode()) <= MAX_FIRST_LINE_BYTES
    assert line.startswith("CHECK-STATUS CRITICAL - endpoint:api0.example.io: HTTP 503")
    text, _, perf = line.partition(" | ")
    assert text.endswith("...")
    assert "'nodeos_response'=3ms;;;0" in perf
    assert "'endpoint:api5.example.io:head_lag'=U" in perf


def test_perfdata_gives_way_whole_items_only_when_it_alone_would_not_fit():
    results = tuple(CheckResult(f"disk:/srv/volume-{n:03d}", Status.OK, "fine") for n in range(200))
    line = nagios_line(report_of(results))
    assert len(line.encode()) <= MAX_FIRST_LINE_BYTES
    text, _, perf = line.partition(" | ")
    assert text == "CHECK-STATUS OK - 200 checks OK"
    items = perf.split(" ")
    assert 10 < len(items) < 200
    assert all(re.fullmatch(r"'disk:/srv/volume-\d{3}'=U", item) for item in items)


def test_no_semicolon_in_the_text_nagios_would_rewrite_it():
    results = (
        CheckResult("disk:/", Status.WARNING, "91% used; inodes 95% used"),
        CheckResult("nodeos", Status.CRITICAL, "refused | proxy"),
    )
    report = report_of(results)
    text = nagios_line(report).partition(" | ")[0]
    assert ";" not in text and "|" not in text
    assert text == (
        "CHECK-STATUS CRITICAL - nodeos: refused / proxy / disk:/: 91% used, inodes 95% used"
    )
    assert long_output(report) == [
        "[WARNING] disk:/: 91% used, inodes 95% used",
        "[CRITICAL] nodeos: refused / proxy",
    ]
