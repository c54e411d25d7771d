"""SHELL: `check-status nagios`, one check as Nagios, Icinga, NRPE or Sensu runs it.

It probes and judges exactly like a cron run, and then stops: the monitoring
system decides whom to notify, so the plugin never texts and never pings the
heartbeat. Cron keeps doing both on the same node, and the two never meet:

- the plugin keeps its memory (the head seen last, for "not advancing") in a
  state file of its own, in the home of the user running it, never in cron's
  STATE_FILE: so it never takes cron's lock, never delays or doubles a text,
  and never counts as a scheduled run (which alone proves cron works);
- it reads the settings, never the Twilio token (TWILIO_AUTH_TOKEN_FILE may be
  a root 0600 file the `nagios` user cannot open).
"""

from __future__ import annotations

import dataclasses
import os
import pwd
from datetime import datetime
from pathlib import Path

from check_status.config import Config
from check_status.model import format_time, worst
from check_status.runner import PROBE_GRACE_SECONDS, RunReport, judge_everything, probe_everything

# check_nrpe's and the monitoring-plugins' default timeout is 10 s: answering
# within it by default means no "CHECK_NRPE: Socket timeout" for a hung nodeos.
DEFAULT_TIMEOUT_SECONDS = 10.0
# Starting Python, reading the settings and the plugin's state, saving it, and
# the margin the hard stop keeps before the monitoring system's own timeout.
PLUGIN_OVERHEAD_SECONDS = 1.5
# The shortest probe timeout worth trying: below it a healthy nodeos may not answer.
MIN_PROBE_TIMEOUT_SECONDS = 0.5

SMS_LINE = "plugin mode: nothing texted, the monitoring system notifies"


def probe_timeout(config: Config, timeout: float) -> float:
    """Each probe's timeout under `-t timeout`: the probe phase, its grace and the
    rest of the run fit in it, so a hung nodeos is judged ("timeout after 5.5s")
    in time instead of the run being killed without a verdict."""
    budget = timeout - PROBE_GRACE_SECONDS - PLUGIN_OVERHEAD_SECONDS
    return max(MIN_PROBE_TIMEOUT_SECONDS, min(float(config.http_timeout_seconds), budget))


def plugin_state_file(config: Config) -> Path:
    """The plugin's own state: `~/.local/state/check-status/plugin.json` of the user
    running it (home from the passwd entry: NRPE and Nagios clear $HOME), or
    the fallback directory when that home cannot be written (`nobody`)."""
    from check_status.state import fallback_dir

    home = Path(pwd.getpwuid(os.geteuid()).pw_dir)
    state_dir = home / ".local" / "state" / "check-status"
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return fallback_dir(config.state_fallback_dir) / "plugin.json"
    if not os.access(state_dir, os.W_OK | os.X_OK):
        return fallback_dir(config.state_fallback_dir) / "plugin.json"
    return state_dir / "plugin.json"


def run_as_plugin(config: Config, now: datetime, timeout: float, state_file: Path) -> RunReport:
    """Probe, judge, remember the stall memory; send nothing. The caller prints."""
    from check_status.state import StateStore

    store = StateStore(str(state_file), config.state_fallback_dir, config.env_file)
    loaded = store.load(now)
    notes = [loaded.warning] if loaded.warning else []
    state = loaded.data
    memory = state.get("memory", {})
    memory = memory if isinstance(memory, dict) else {}

    probing = dataclasses.replace(
        config, http_timeout_seconds=_seconds(probe_timeout(config, timeout))
    )
    facts = probe_everything(probing, memory)
    results, new_memory = judge_everything(config, facts, memory, now)

    state["memory"] = new_memory
    state["last_run"] = {
        "at": format_time(now),
        "status": worst(r.status for r in results).name,
        "by": "plugin",
    }
    store.save(state)
    notes += store.problems
    return RunReport(
        config.node_name,
        now,
        tuple(results),
        str(state_file),
        tuple(notes),
        sms=SMS_LINE,
        state_problem=store.refused,
    )


def _seconds(value: float) -> float | int:
    """A whole number stays one, so the reason reads `timeout after 3s`, not `3.0s`."""
    rounded = round(value, 1)
    return int(rounded) if rounded == int(rounded) else rounded


def settings_lines(config: Config, timeout: float, state_file: Path) -> list[str]:
    """For -vv: what this run read and used, as the plugin guidelines' level 2 asks."""
    from check_status.probes.http import host_label

    lines = [
        f"settings: {config.env_file or 'no env file (defaults and environment)'}",
        f"nodeos: {host_label(config.nodeos_url)}",
        f"timeout: {timeout:g}s for the whole check, {probe_timeout(config, timeout):g}s per probe",
        f"plugin state: {state_file}",
    ]
    if config.endpoints:
        # Host names only: a URL may carry a password or a key.
        lines.append(f"endpoints: {', '.join(host_label(url) for url in config.endpoints)}")
    if config.disk_paths:
        lines.append(f"disks: {', '.join(config.disk_paths)}")
    return lines
