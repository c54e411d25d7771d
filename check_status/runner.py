"""SHELL: one run, start to end: probe -> judge -> remember -> report.

The data flows one way. Probes run concurrently in daemon threads, each with
its own timeout, and the whole probe phase has a hard deadline, so eight hung
endpoints cost one timeout, not eight, and a hung DNS lookup or NFS mount
cannot keep a cron run alive past the next one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from check_status.checks.chain_id import judge_chain_id
from check_status.checks.disk import judge_disk
from check_status.checks.endpoint import judge_endpoint
from check_status.checks.head_block import judge_head_block
from check_status.checks.lib import judge_lib
from check_status.checks.nodeos import judge_nodeos
from check_status.checks.nodeos_log import judge_nodeos_log
from check_status.checks.state_db import judge_state_db
from check_status.config import Config
from check_status.model import CheckResult, ProbeFailure, Status, format_time, worst
from check_status.probes.disk import probe_disk
from check_status.probes.log import LogPosition, read_new_lines
from check_status.probes.nodeos import ChainInfo, fetch_chain_info, fetch_db_size
from check_status.state import StateError, load_state, save_state

# Beyond each probe's own timeout, how long the run waits for a straggler
# (a DNS lookup or a statvfs, which no HTTP timeout covers).
PROBE_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class RunReport:
    node: str
    now: datetime
    results: tuple[CheckResult, ...]
    state_file: str
    notes: tuple[str, ...] = ()  # problems of the checker itself: state moved aside, not saved

    @property
    def status(self) -> Status:
        # A checker that lost or could not save its memory may miss or repeat
        # an alert: never report that as plain OK.
        floor = Status.WARNING if self.notes else Status.OK
        return worst([floor, *(r.status for r in self.results)])


def run_concurrently(
    tasks: dict[str, Callable[[], Any]], deadline_seconds: float
) -> dict[str, Any]:
    """Run every task in its own daemon thread; after the deadline, give up on stragglers.

    Daemon threads, not a ThreadPoolExecutor: an executor joins its threads at
    exit, so one hung getaddrinfo would hold the process past the deadline.
    """
    results: dict[str, Any] = {}
    lock = threading.Lock()

    def work(name: str, task: Callable[[], Any]) -> None:
        try:
            value = task()
        except Exception as error:  # a bug in a probe stays local to its check
            value = ProbeFailure(f"probe failed: {type(error).__name__}: {error}")
        with lock:
            results[name] = value

    threads = [threading.Thread(target=work, args=item, daemon=True) for item in tasks.items()]
    for thread in threads:
        thread.start()
    end = time.monotonic() + deadline_seconds
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    with lock:
        return {
            name: results.get(name, ProbeFailure(f"no answer within {deadline_seconds:g}s"))
            for name in tasks
        }


def probe_everything(config: Config, memory: dict[str, Any]) -> dict[str, Any]:
    timeout = config.http_timeout_seconds
    tasks: dict[str, Callable[[], Any]] = {
        "get_info": lambda: fetch_chain_info(config.nodeos_url, timeout),
        "db_size": lambda: fetch_db_size(config.nodeos_url, timeout),
    }
    for url in config.endpoints:
        tasks[f"endpoint {url}"] = lambda url=url: fetch_chain_info(url, timeout)
    for path in config.disk_paths:
        tasks[f"disk {path}"] = lambda path=path: probe_disk(path)
    if config.nodeos_log:
        log_memory = memory.get("nodeos_log") or {}
        position = LogPosition.from_json(log_memory.get("position"))
        tasks["nodeos_log"] = lambda: read_new_lines(config.nodeos_log, position)
    return run_concurrently(tasks, timeout + PROBE_GRACE_SECONDS)


def judge_everything(
    config: Config, facts: dict[str, Any], memory: dict[str, Any], now: datetime
) -> tuple[list[CheckResult], dict[str, Any]]:
    """CORE: every check, as pure functions of the facts. Returns results and new memory."""
    info: ChainInfo | ProbeFailure = facts["get_info"]
    new_memory: dict[str, Any] = {}
    results = [judge_nodeos(info, config.nodeos_url)]

    head, new_memory["head_block"] = judge_head_block(info, memory.get("head_block"), now, config)
    lib, new_memory["lib"] = judge_lib(info, memory.get("lib"), now, config)
    results += [head, lib]
    if config.expected_chain_id:
        results.append(judge_chain_id(info, config.expected_chain_id))
    results.append(judge_state_db(facts["db_size"], isinstance(info, ChainInfo), config))

    local_chain = config.expected_chain_id or (
        info.chain_id if isinstance(info, ChainInfo) else None
    )
    for url in config.endpoints:
        results.append(judge_endpoint(url, facts[f"endpoint {url}"], local_chain, now, config))
    for path in config.disk_paths:
        results.append(judge_disk(path, facts[f"disk {path}"], config))
    if config.nodeos_log:
        log_result, new_memory["nodeos_log"] = judge_nodeos_log(
            facts["nodeos_log"], memory.get("nodeos_log"), now
        )
        results.append(log_result)
    return _unique_names(results), {k: v for k, v in new_memory.items() if v is not None}


def _unique_names(results: list[CheckResult]) -> list[CheckResult]:
    """Two ENDPOINTS entries with the same host (http and https, say) keep apart."""
    seen: dict[str, int] = {}
    unique = []
    for result in results:
        count = seen.get(result.name, 0)
        seen[result.name] = count + 1
        if count:
            result = CheckResult(
                f"{result.name}#{count + 1}",
                result.status,
                result.summary,
                result.metrics,
                result.caused_by,
            )
        unique.append(result)
    return unique


def track_statuses(
    previous: dict[str, Any], results: list[CheckResult], now: datetime
) -> dict[str, dict[str, Any]]:
    """CORE: per check, its status, since when, and how many runs in a row it failed or passed."""
    tracked: dict[str, dict[str, Any]] = {}
    for result in results:
        before = previous.get(result.name)
        before = before if isinstance(before, dict) else {}
        failing = result.status is not Status.OK
        same = before.get("status") == result.status.name
        tracked[result.name] = {
            "status": result.status.name,
            "since": before.get("since", format_time(now)) if same else format_time(now),
            "failing_runs": (_count(before, "failing_runs") + 1) if failing else 0,
            "ok_runs": 0 if failing else _count(before, "ok_runs") + 1,
            "summary": result.summary,
        }
    return tracked


def _count(record: dict[str, Any], key: str) -> int:
    value = record.get(key)
    return value if isinstance(value, int) and value >= 0 else 0


def run_once(
    config: Config, now: datetime, *, dry_run: bool = False, notes: tuple[str, ...] = ()
) -> RunReport:
    """One whole run. The caller holds the run lock; `notes` are its problems so far."""
    notes = list(notes)
    loaded = load_state(config.state_file, now)
    if loaded.warning:
        notes.append(loaded.warning)
    state = loaded.data
    memory = state.get("memory", {})

    facts = probe_everything(config, memory)
    results, new_memory = judge_everything(config, facts, memory, now)

    state["checks"] = track_statuses(state.get("checks", {}), results, now)
    state["memory"] = new_memory
    state["last_run"] = {"at": format_time(now), "status": worst(r.status for r in results).name}

    if not dry_run:
        try:
            save_state(config.state_file, state)
        except StateError as error:
            notes.append(str(error))
    return RunReport(config.node_name, now, tuple(results), config.state_file, tuple(notes))
