"""Perfdata by the Nagios plugin guidelines: plain decimals, ranges that fit
values below 0, labels that cannot end themselves early."""

from __future__ import annotations

import re

from check_status.model import CheckResult, Metric, Status
from check_status.output import perfdata


def perf_of(*metrics: Metric) -> str:
    return perfdata((CheckResult("x", Status.OK, "fine", metrics),))


def test_a_large_lag_is_a_plain_decimal_never_an_exponent():
    # About 14 days behind: `{:g}` wrote 1.23457e+06, losing digits and confusing graphers.
    item = perf_of(Metric("head_lag_seconds", 1234567.8, "s", 15, 60, perf_label="head_lag"))
    assert item == "'head_lag'=1234567.8s;~:15;~:60"
    assert not re.search(r"\de[+-]?\d", item)


def test_a_head_slightly_ahead_is_inside_the_range_not_outside_it():
    """`15;60` means outside 0..15, so every healthy run (a lag of -0.2 s) was out of
    range; `~:15` means above 15 only."""
    item = perf_of(Metric("head_lag_seconds", -0.204, "s", 15, 60, perf_label="head_lag"))
    assert item == "'head_lag'=-0.204s;~:15;~:60"


def test_metrics_with_a_floor_of_zero_keep_the_short_form():
    item = perf_of(Metric("lib_lag_blocks", 332, "", 400, 1200, minimum=0, perf_label="lib_lag"))
    assert item == "'lib_lag'=332;400;1200;0"


def test_tiny_values_and_zero_read_as_numbers():
    assert perf_of(Metric("r", 0.0, "ms", minimum=0, perf_label="r")) == "'r'=0ms;;;0"
    assert perf_of(Metric("r", 1e-9, "ms", minimum=0, perf_label="r")) == "'r'=0ms;;;0"


def test_a_quote_or_an_equals_sign_in_a_label_cannot_end_it():
    item = perf_of(Metric("used", 21.5, "%", 80, 88, 0, 100, perf_label="disk:/mnt/o'b=c"))
    assert item == "'disk:/mnt/o''b_c'=21.5%;80;88;0;100"
