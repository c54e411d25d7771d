"""SHELL: run blocking calls side by side, and stop waiting at a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from check_status.model import ProbeFailure
from check_status.remote_text import clean


def run_concurrently(
    tasks: dict[str, Callable[[], Any]],
    deadline_seconds: float,
    on_answer: Callable[[str, Any], None] | None = None,
) -> dict[str, Any]:
    """Run every task in its own daemon thread; after the deadline, give up on stragglers.

    Daemon threads, not a ThreadPoolExecutor: an executor joins its threads at
    exit, so one hung getaddrinfo would hold the process past the deadline.
    `on_answer(name, value)` is called as each task ends, one at a time: an SMS
    outcome is recorded the moment Twilio answers, not after the slowest one.
    """
    results: dict[str, Any] = {}
    lock = threading.Lock()

    def work(name: str, task: Callable[[], Any]) -> None:
        try:
            value = task()
        except Exception as error:  # a bug in a probe stays local to its check
            # The error's words may quote what a server sent: cleaned like any remote text.
            value = ProbeFailure(f"probe failed: {type(error).__name__}: {clean(error, 120)}")
        with lock:
            if name in gave_up:
                return  # too late: the caller has moved on
            results[name] = value
            if on_answer is not None:
                on_answer(name, value)

    gave_up: set[str] = set()
    threads = [threading.Thread(target=work, args=item, daemon=True) for item in tasks.items()]
    for thread in threads:
        thread.start()
    end = time.monotonic() + deadline_seconds
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    with lock:
        gave_up.update(name for name in tasks if name not in results)
        return {
            name: results.get(name, ProbeFailure(f"no answer within {deadline_seconds:g}s"))
            for name in tasks
        }
