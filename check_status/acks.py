"""SHELL: record an ACK in the state file, under the run lock.

Used by `check-status ack` at a terminal and by serve's Twilio webhook. The
ACK itself is the pure `rules.acknowledge`; here it is applied to the state
the runs read, and its texts to the others (`[eu2] ACK nodeos by luke`) are
queued in the outbox, which the next run sends.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from check_status.alerting.oncall import Ack
from check_status.config import Config


class AckNotRecorded(Exception):
    """The state could not be read or written: the ACK did nothing."""


def record_acks(
    config: Config, acks: Sequence[Ack], now: datetime, wait_seconds: float
) -> list[str]:
    """Apply `acks` to the state file; return one line per ACK saying what it did.

    Raises AckNotRecorded, with the reason, when the lock or the state is unavailable.
    """
    from check_status.alerting.rules import (
        acknowledge,
        alert_state_from_json,
        alert_state_to_json,
    )
    from check_status.delivery import enqueue, load_outbox, outbox_to_json
    from check_status.runner import oncall_policy
    from check_status.state import LockBusy, LockUnavailable, StateStore, fallback_dir, run_lock

    policy = oncall_policy(config)
    try:
        with run_lock(
            config.lock_file,
            now,
            wait_seconds=wait_seconds,
            fallback=str(fallback_dir(config.state_fallback_dir)),
            state_file=config.state_file,
            env_file=config.env_file,
        ):
            store = StateStore(config.state_file, config.state_fallback_dir, config.env_file)
            loaded = store.load(now)
            state = loaded.data
            alerts, texts, lines = acknowledge(
                alert_state_from_json(state.get("alerts")), acks, now, policy
            )
            state["alerts"] = alert_state_to_json(alerts)
            if texts and config.sms_configured:
                outbox = enqueue(load_outbox(state.get("outbox"), config.alert_to), texts)
                state["outbox"] = outbox_to_json(outbox)
            store.save(state)
            if store.where is None:
                raise AckNotRecorded("; ".join(store.problems) or "the state could not be saved")
            return lines
    except (LockBusy, LockUnavailable) as error:
        raise AckNotRecorded(str(error)) from None
