"""SHELL: run blocking calls side by side, and stop waiting at a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from check_status.model import ProbeFailure


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
