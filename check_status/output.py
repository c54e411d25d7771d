"""Presentation: the Nagios line, the verbose table and the JSON document.

The one-line form follows the Nagios plugin guidelines, so check-status also
works unchanged as a Nagios, Icinga or NRPE check:
    CHECK-STATUS CRITICAL - nodeos: connection refused (127.0.0.1:8888) | 'head_lag'=U ...

`check-status nagios` adds the long output: one line per check, each with its
own status, under line one.
"""

from __future__ import annotations

import json
from typing import Any

from check_status.model import CheckResult, Metric, Status
from check_status.remote_text import printable
from check_status.runner import RunReport

# What separates problems on the line. Not `; `: Nagios core rewrites every `;`
# of a plugin's output to `:`, which made "nodeos: refused; disk:/: 91% used"
# read as one garbled problem in its web pages and notifications.
SEPARATOR = " / "

# NRPE v2 carries at most 1,023 bytes of output: check_nrpe -2 cut longer lines
# mid-word, and every perfdata item after the cut was lost. Line one keeps its
# perfdata and shortens its text to fit.
MAX_FIRST_LINE_BYTES = 1023
# The least text line one keeps before perfdata items give way: the status and
# the first problem must still be readable on a phone.
MIN_TEXT_BYTES = 120


def problems_in_words(results: tuple[CheckResult, ...], limit: int = 4) -> str:
    """The worst problems first; consequences of another failure are left out."""
    problems = [r for r in results if r.status is not Status.OK and r.caused_by is None]
    problems.sort(key=lambda r: r.status.severity, reverse=True)
    words = [f"{r.name}: {r.summary}" for r in problems[:limit]]
    if len(problems) > limit:
        words.append(f"+{len(problems) - limit} more")
    return SEPARATOR.join(words)


def healthy_in_words(results: tuple[CheckResult, ...]) -> str:
    by_name = {r.name: r for r in results}
    head = by_name.get("head_block")
    text = f"{len(results)} checks OK"
    return f"{text}{SEPARATOR}{head.summary}" if head else text


def _for_nagios(text: str) -> str:
    """Text Nagios shows as written: no `|` (it starts perfdata), no `;` (rewritten)."""
    # A proxy's page title ("api.example.io | 502: Bad gateway") must not end the text early.
    return printable(text.replace("|", "/").replace(";", ","))


def _number(value: float | None) -> str:
    """A plain decimal, as the plugin guidelines ask: never an exponent
    (`{:g}` wrote 1234567.8 as 1.23457e+06, which graphers misread)."""
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.6f}".rstrip("0").rstrip(".")
        return "0" if text in ("", "-0") else text
    return str(value)


def _threshold(value: float | None, metric: Metric) -> str:
    """A threshold as a range: `15` means "outside 0..15", which a value that may
    go below 0 (a head slightly ahead of the clock) would break; `~:15` is
    "above 15" only. Metrics with a minimum of 0 keep the short form."""
    if value is None:
        return ""
    return _number(value) if metric.minimum == 0 else f"~:{_number(value)}"


def _label(text: str) -> str:
    """The guidelines' label: no `=`, and a `'` written twice."""
    return text.replace("=", "_").replace("'", "''")


def _perf_slots(result: CheckResult) -> tuple[tuple[str, str, str], ...]:
    """The perfdata items a check always has: (label, metric name, unit).

    Fixed by the check's name, not by what this run measured: a grapher
    (PNP4Nagios, Grafana over Icinga) makes one series per label, and items
    that came and went with nodeos left gaps it drew as lines to nowhere. A
    value this run could not measure is written `U`, as the guidelines allow.
    """
    name = result.name.partition("#")[0]  # a second endpoint of one host: endpoint:h#2
    if name == "nodeos":
        return (("nodeos_response", "response_ms", "ms"),)
    if name == "head_block":
        return (("head_lag", "head_lag_seconds", "s"),)
    if name == "lib":
        return (("lib_lag", "lib_lag_blocks", ""),)
    if name == "state_db":
        return (("state_db", "used_percent", "%"),)
    if name.startswith("disk:"):
        return ((result.name, "used_percent", "%"),)
    if name.startswith("endpoint:"):
        return (
            (f"{result.name}:response", "response_ms", "ms"),
            (f"{result.name}:head_lag", "head_lag_seconds", "s"),
        )
    return ()


def perfdata_items(results: tuple[CheckResult, ...]) -> list[str]:
    """`'label'=value[UOM];warn;crit;min;max`, every item on every run, in check order."""
    items = []
    for result in results:
        by_name = {m.name: m for m in result.metrics}
        for label, metric_name, _unit in _perf_slots(result):
            metric = by_name.get(metric_name)
            items.append(f"'{_label(label)}'=U" if metric is None else _perf_item(label, metric))
    return items


def perfdata(results: tuple[CheckResult, ...]) -> str:
    return " ".join(perfdata_items(results))


def _perf_item(label: str, metric: Metric) -> str:
    fields = [
        _threshold(metric.warn, metric),
        _threshold(metric.crit, metric),
        _number(metric.minimum),
        _number(metric.maximum),
    ]
    tail = ";".join(fields).rstrip(";")
    value = f"'{_label(label)}'={_number(metric.value)}{metric.uom}"
    return f"{value};{tail}" if tail else value


def line_text(report: RunReport) -> str:
    """What line one says: the problems, or that all is well, and the checker's own notes."""
    words = problems_in_words(report.results) or healthy_in_words(report.results)
    if report.notes:
        words += SEPARATOR + SEPARATOR.join(report.notes)
    return words


def nagios_line(report: RunReport, limit: int = MAX_FIRST_LINE_BYTES) -> str:
    """`CHECK-STATUS STATE - text | perfdata`, within `limit` bytes, perfdata kept first."""
    head = f"CHECK-STATUS {report.status.name} - "
    text = _for_nagios(line_text(report))
    items = perfdata_items(report.results)
    room = limit - len(head.encode())

    def perf_part() -> str:
        return f" | {' '.join(items)}" if items else ""

    # Perfdata gives way only when the text would keep less than MIN_TEXT_BYTES;
    # then the last items go first (disks and endpoints come after the node's own).
    while items and room - len(perf_part().encode()) < MIN_TEXT_BYTES:
        items.pop()
    return head + _cut_to_bytes(text, room - len(perf_part().encode())) + perf_part()


def _cut_to_bytes(text: str, limit: int) -> str:
    """`text` within `limit` UTF-8 bytes, ending in `...` when cut (never mid-character)."""
    if len(text.encode()) <= limit:
        return text
    kept = text.encode()[: max(limit - 3, 0)].decode(errors="ignore")
    return kept.rstrip() + "..."


def long_output(report: RunReport, verbosity: int = 0) -> list[str]:
    """Nagios long output, after line one: each check on its own line, with its status.

    `verbosity` is the plugin guidelines' -v count: 1 adds what remote sides
    said in their own words, 3 adds every measured value. (2, the settings
    used, is the caller's: this module does not know them.)
    """
    lines = []
    for result in report.results:
        text = _with_detail(result) if verbosity >= 1 else result.summary
        lines.append(f"[{result.status.name}] {result.name}: {text}")
        if verbosity >= 3:
            lines += [f"    {m.name} = {_number(m.value)}{m.uom}" for m in result.metrics]
    lines += [f"note: {note}" for note in report.notes]
    if verbosity >= 1:
        lines += [f"remark: {remark}" for remark in report.remarks]
    return [_for_nagios(line) for line in lines]


def verbose_table(report: RunReport) -> str:
    rows = [(r.name, r.status.name, _with_detail(r)) for r in report.results]
    name_width = max([len("CHECK")] + [len(r[0]) for r in rows])
    lines = [f"check-status on {report.node} at {report.now.strftime('%Y-%m-%d %H:%M:%S')} UTC", ""]
    lines.append(f"{'CHECK':<{name_width}}  {'STATUS':<8}  SUMMARY")
    for name, status, summary in rows:
        lines.append(f"{name:<{name_width}}  {status:<8}  {summary}")
    lines.append("")
    if report.decisions:
        lines.append("alerts:")
        for check, decision in report.decisions:
            lines.append(f"  {check}: {decision}")
    for outcome in report.deliveries:
        lines.append(
            f"  SMS {outcome.result} to {outcome.recipient}: {outcome.body!r} ({outcome.detail})"
        )
    for outcome in report.calls:
        lines.append(
            f"  call {outcome.result} to {outcome.recipient}: {outcome.body} ({outcome.detail})"
        )
    if report.oncall:
        from check_status.status_view import oncall_line

        lines.append("on call:")
        for step in report.oncall:
            lines.append(f"  {step['check']}: {oncall_line(step)}")
    lines.append(report.sms)
    for note in (*report.notes, *report.remarks):
        lines.append(f"note: {note}")
    lines.append(f"state file: {report.state_file}")
    return "\n".join(printable(line) for line in lines)


def _with_detail(result: CheckResult) -> str:
    """The summary, and what the remote side said in its own words (never texted)."""
    return f"{result.summary} [remote said: {result.detail}]" if result.detail else result.summary


def result_json(result: CheckResult) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": result.name,
        "status": result.status.name,
        "summary": result.summary,
        "metrics": {m.name: m.value for m in result.metrics},
    }
    if result.caused_by:
        item["caused_by"] = result.caused_by
    if result.detail:
        item["detail"] = result.detail
    return item


def report_json(report: RunReport) -> dict[str, Any]:
    return {
        "node": report.node,
        "status": report.status.name,
        "time": report.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "checks": [result_json(r) for r in report.results],
        "open_incidents": report.open_incidents,
        "notes": list(report.notes),
        "remarks": list(report.remarks),
        "alerts": {
            "sms": report.sms,
            "decisions": [{"check": check, "decision": text} for check, text in report.decisions],
            "deliveries": [
                {"to": o.recipient, "result": o.result, "body": o.body, "detail": o.detail}
                for o in report.deliveries
            ],
            "calls": [
                {"to": o.recipient, "result": o.result, "about": o.body, "detail": o.detail}
                for o in report.calls
            ],
            "oncall": list(report.oncall),
        },
        "state_file": report.state_file,
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2)
