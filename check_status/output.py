"""Presentation: the Nagios line, the verbose table and the JSON document.

The one-line form follows the Nagios plugin guidelines, so check-status also
works unchanged as a Nagios, Icinga or NRPE check:
    CHECK-STATUS CRITICAL - nodeos: connection refused (127.0.0.1:8888) | 'head_lag'=...
"""

from __future__ import annotations

import json
from typing import Any

from check_status.model import CheckResult, Metric, Status
from check_status.remote_text import printable
from check_status.runner import RunReport


def problems_in_words(results: tuple[CheckResult, ...], limit: int = 4) -> str:
    """The worst problems first; consequences of another failure are left out."""
    problems = [r for r in results if r.status is not Status.OK and r.caused_by is None]
    problems.sort(key=lambda r: r.status.severity, reverse=True)
    words = [f"{r.name}: {r.summary}" for r in problems[:limit]]
    if len(problems) > limit:
        words.append(f"+{len(problems) - limit} more")
    return "; ".join(words)


def healthy_in_words(results: tuple[CheckResult, ...]) -> str:
    by_name = {r.name: r for r in results}
    head = by_name.get("head_block")
    text = f"{len(results)} checks OK"
    return f"{text}; {head.summary}" if head else text


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


def perfdata(results: tuple[CheckResult, ...]) -> str:
    """`'label'=value[UOM];warn;crit;min;max` for the metrics meant for graphs."""
    items = []
    for result in results:
        for metric in result.metrics:
            if metric.perf_label:
                items.append(_perf_item(metric))
    return " ".join(items)


def _perf_item(metric: Metric) -> str:
    fields = [
        _threshold(metric.warn, metric),
        _threshold(metric.crit, metric),
        _number(metric.minimum),
        _number(metric.maximum),
    ]
    tail = ";".join(fields).rstrip(";")
    value = f"'{_label(metric.perf_label or '')}'={_number(metric.value)}{metric.uom}"
    return f"{value};{tail}" if tail else value


def nagios_line(report: RunReport) -> str:
    words = problems_in_words(report.results) or healthy_in_words(report.results)
    if report.notes:
        words += "; " + "; ".join(report.notes)
    # Nagios reads everything after the first '|' as perfdata; a proxy's page
    # title ("api.example.io | 502: Bad gateway") must not end the text early.
    line = f"CHECK-STATUS {report.status.name} - {words.replace('|', '/')}"
    perf = perfdata(report.results)
    # One line, always: nothing in it may start a second one or reach a terminal raw.
    return printable(f"{line} | {perf}" if perf else line)


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
        },
        "state_file": report.state_file,
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2)
