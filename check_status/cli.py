"""The command line: thin. It parses options, calls the library, and is the one
place where exceptions become messages and Nagios exit codes.

    check-status [run] [-v|--json] [--dry-run]   one run, as cron does it
    check-status nagios [-t 10] [-v]             one check, as Nagios, Icinga or NRPE runs it
    check-status status                          incidents, queued SMS, silences
    check-status silence [CHECK...] --for 2h --reason "upgrade"
    check-status unsilence [CHECK...]
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from check_status import __version__
from check_status.config import Config, ConfigError, load
from check_status.model import Status, utc_now

if TYPE_CHECKING:
    from check_status.alerting.rules import AlertState

# cron starts a run every minute: a run must never outlive its slot. A run is
# killed once it outlasts runner.worst_case_seconds (40 s at most, never more
# than this); a silence edit waits for the lock this long and 5 s more.
RUN_DEADLINE_SECONDS = 50
_run_bound_seconds = RUN_DEADLINE_SECONDS
_deadline_words: str | None = None  # what the plugin mode's hard stop says instead


def fail(message: str, status: Status = Status.UNKNOWN) -> NoReturn:
    """One line, the Nagios way (or one JSON document under --json), and the exit code.

    Never a traceback.
    """
    click.echo(_failure_line(message, status))
    sys.exit(int(status))


def _failure_line(message: str, status: Status) -> str:
    if _wants_json():
        return json.dumps({"node": None, "status": status.name, "error": message, "checks": []})
    return f"CHECK-STATUS {status.name} - {message}"


def _wants_json() -> bool:
    """Whether --json was given, to the group or to the command, however far we got.

    A usage error ends click's parsing before any context holds the flag: then
    the command line itself says.
    """
    context = click.get_current_context(silent=True)
    if context is None:
        return "--json" in sys.argv[1:]
    while context is not None:
        if context.params.get("as_json"):
            return True
        context = context.parent
    return False


def load_config(env_file: str | None) -> Config:
    try:
        return load(env_file)
    except ConfigError as error:
        fail(f"config: {error}")


def common_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--env-file, --verbose and --json, accepted before or after the command name."""
    command = click.option(
        "--env-file",
        type=click.Path(dir_okay=False),
        default=None,
        help="env file (default: $CHECK_STATUS_ENV_FILE, then /etc/check-status/check-status.env,"
        " then ~/.config/check-status/check-status.env)",
    )(command)
    command = click.option(
        "-v", "--verbose", is_flag=True, default=False, help="a table of every check"
    )(command)
    command = click.option(
        "--json", "as_json", is_flag=True, default=False, help="one JSON document"
    )(command)
    return command


def _merge(
    ctx: click.Context, env_file: str | None, verbose: bool, as_json: bool
) -> tuple[str | None, bool, bool]:
    """Options given to the group (`check-status -v run`) count for the command too."""
    parent = ctx.find_root().params
    return (
        env_file or parent.get("env_file"),
        verbose or bool(parent.get("verbose")),
        as_json or bool(parent.get("as_json")),
    )


class NagiosGroup(click.Group):
    """Usage errors exit 3 (UNKNOWN) with one line, not click's exit 2, which
    a Nagios server would read as CRITICAL."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.ClickException as error:
            fail(f"usage: {error.format_message()} (see check-status --help)")
        except click.Abort:
            fail("aborted")
        sys.exit(code if isinstance(code, int) else 0)


@click.group(
    cls=NagiosGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@common_options
@click.version_option(__version__, prog_name="check-status")
@click.pass_context
def main(ctx: click.Context, env_file: str | None, verbose: bool, as_json: bool) -> None:
    """Check this nodeos server, remember what was seen, text the on-call operators.

    With no command, does `run`. Exit codes follow Nagios: 0 OK, 1 WARNING,
    2 CRITICAL, 3 UNKNOWN.
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(run_command)


def _deadline_reached(signum: int, frame: Any) -> None:
    # os._exit: a hung thread must not be able to keep the process alive.
    line = _failure_line(
        _deadline_words or f"run exceeded its {_run_bound_seconds}s bound (see docs/alerting.md)",
        Status.UNKNOWN,
    )
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    os._exit(int(Status.UNKNOWN))


def _at_a_terminal() -> bool:
    """True when a person typed this run. cron, a systemd timer or NRPE give no terminal.

    Only scheduled runs prove that the schedule works: an operator's
    `check-status -v` must not make self-test's freshness item pass.
    """
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        try:
            # None when cron's line closed it (`<&-`); a closed file raises ValueError.
            if stream is not None and stream.isatty():
                return True
        except ValueError:
            continue
    return False


@main.command("run")
@common_options
@click.option(
    "--dry-run",
    is_flag=True,
    help="decide and show what would be texted; send nothing, save nothing",
)
@click.option(
    "--prometheus-textfile",
    type=click.Path(dir_okay=False),
    default=None,
    help="also write node_exporter textfile metrics here (overrides PROMETHEUS_TEXTFILE)",
)
@click.pass_context
def run_command(
    ctx: click.Context,
    env_file: str | None = None,
    verbose: bool = False,
    as_json: bool = False,
    dry_run: bool = False,
    prometheus_textfile: str | None = None,
) -> None:
    """One run: check, remember, text, report (what cron calls every minute)."""
    from check_status import output
    from check_status.runner import run_once, worst_case_seconds
    from check_status.state import LockBusy, LockUnavailable, fallback_dir, run_lock

    env_file, verbose, as_json = _merge(ctx, env_file, verbose, as_json)
    config = load_config(env_file)
    if prometheus_textfile:
        config = dataclasses.replace(
            config, prometheus_textfile=os.path.abspath(prometheus_textfile)
        )
    global _run_bound_seconds
    _run_bound_seconds = min(RUN_DEADLINE_SECONDS, math.ceil(worst_case_seconds(config)))
    signal.signal(signal.SIGALRM, _deadline_reached)
    signal.alarm(_run_bound_seconds)
    now = utc_now()
    try:
        with run_lock(
            config.lock_file,
            now,
            # The same directory StateStore falls back to, by default too.
            fallback=str(fallback_dir(config.state_fallback_dir)),
            state_file=config.state_file,
            env_file=config.env_file,
        ) as lock_note:
            report = run_once(
                config,
                now,
                dry_run=dry_run,
                notes=(lock_note,) if lock_note else (),
                scheduled=not _at_a_terminal(),
            )
    except LockBusy as busy:
        fail(f"{busy}; this run did nothing")
    except LockUnavailable as problem:
        # Judge and print all the same: the operator at the terminal still
        # learns what is wrong with the node, and the line says why no SMS went.
        report = run_once(config, now, lock_problem=str(problem), scheduled=False)
    finally:
        signal.alarm(0)
    if as_json:
        click.echo(output.dumps(output.report_json(report)))
    elif verbose or dry_run:
        click.echo(output.verbose_table(report))
        click.echo(output.nagios_line(report).split(" | ")[0])
    else:
        click.echo(output.nagios_line(report))
    sys.exit(int(report.status))


def _exit_unknown_after(show: Callable[[click.Context], str]) -> Callable[..., None]:
    """-h and -V exit 3, as the monitoring-plugins do: a check command mistyped as
    `check-status nagios --help` must never read as OK in Nagios."""

    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value and not ctx.resilient_parsing:
            click.echo(show(ctx))
            ctx.exit(int(Status.UNKNOWN))

    return callback


@main.command("nagios", add_help_option=False)
@click.option(
    "-t",
    "--timeout",
    type=click.FloatRange(min=1, max=300),
    default=None,
    help="seconds the whole check may take; it answers within them (default 10,"
    " check_nrpe's default)",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="-v: what remote sides said; -vv: the settings used; -vvv: every measured value."
    " Line one never changes",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="env file (it must be readable by the user the monitoring system runs this as)",
)
@click.option(
    "-V",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_exit_unknown_after(lambda _ctx: f"check-status {__version__}"),
    help="print the version and exit 3",
)
@click.option(
    "-h",
    "--help",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_exit_unknown_after(lambda ctx: ctx.get_help()),
    help="show this message and exit 3",
)
@click.pass_context
def nagios_command(
    ctx: click.Context, timeout: float | None, verbose: int, env_file: str | None
) -> None:
    """One check as a Nagios, Icinga, NRPE or Sensu plugin: probe, judge, print.

    Never texts and never pings the heartbeat: the monitoring system notifies.
    Keeps its own state (~/.local/state/check-status/plugin.json), so cron's
    runs on the same node are never held up, doubled or mistaken for it.
    Line one is `CHECK-STATUS STATE - text | perfdata`, within 1,023 bytes;
    then one line per check.
    """
    from check_status import output
    from check_status.plugin import (
        DEFAULT_TIMEOUT_SECONDS,
        plugin_state_file,
        run_as_plugin,
        settings_lines,
    )

    global _deadline_words
    seconds = timeout if timeout is not None else DEFAULT_TIMEOUT_SECONDS
    # The hard stop: whatever hangs, an answer leaves before the monitoring
    # system's own timeout, which it would report as a bare "Socket timeout".
    _deadline_words = f"no verdict within the {seconds:g}s timeout (-t); nodeos or a disk hangs"
    signal.signal(signal.SIGALRM, _deadline_reached)
    signal.setitimer(signal.ITIMER_REAL, max(seconds - 0.3, 0.5))
    try:
        env_file = env_file or ctx.find_root().params.get("env_file")
        # Never the token: it may sit in a root 0600 file the `nagios` user cannot open.
        try:
            config = load(env_file, read_secrets=False)
        except ConfigError as error:
            fail(f"config: {error}")
        state_file = plugin_state_file(config)
        report = run_as_plugin(config, utc_now(), seconds, state_file)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    lines = [output.nagios_line(report), *output.long_output(report, verbose)]
    if verbose >= 2:
        lines += settings_lines(config, seconds, state_file)
    click.echo("\n".join(lines))
    sys.exit(int(report.status))


@main.command("status")
@common_options
@click.pass_context
def status_command(
    ctx: click.Context, env_file: str | None = None, verbose: bool = False, as_json: bool = False
) -> None:
    """Open incidents, queued and failed SMS, silences and the last run, from the state file."""
    from check_status import status_view
    from check_status.state import StateStore

    env_file, _verbose, as_json = _merge(ctx, env_file, verbose, as_json)
    config = load_config(env_file)
    now = utc_now()
    state, problem = StateStore(
        config.state_file, config.state_fallback_dir, config.env_file
    ).read_only()
    view = status_view.build(state, config, now)
    if problem:
        view["problem"] = problem
    if as_json:
        click.echo(json.dumps(view, indent=2))
    else:
        click.echo(status_view.render(view))
    sys.exit(int(Status.UNKNOWN) if problem else 0)


def _edit_silences(
    config: Config, change: Callable[[AlertState, datetime], AlertState]
) -> AlertState:
    """Change the silences in the state file under the run lock, waiting out a running run."""
    from check_status.alerting.rules import alert_state_from_json, alert_state_to_json
    from check_status.state import LockBusy, LockUnavailable, StateStore, fallback_dir, run_lock

    now = utc_now()
    try:
        with run_lock(
            config.lock_file,
            now,
            wait_seconds=RUN_DEADLINE_SECONDS + 5,
            # The same directory StateStore falls back to, by default too.
            fallback=str(fallback_dir(config.state_fallback_dir)),
            state_file=config.state_file,
            env_file=config.env_file,
        ):
            # The same store as the runs: a silence set while the state file is
            # read-only goes into the copy they read.
            store = StateStore(config.state_file, config.state_fallback_dir, config.env_file)
            loaded = store.load(now)
            alerts = change(alert_state_from_json(loaded.data.get("alerts")), now)
            loaded.data["alerts"] = alert_state_to_json(alerts)
            store.save(loaded.data)
            if store.where is None:
                fail(f"{'; '.join(store.problems)}; silences not changed")
            for problem in store.problems:
                click.echo(f"note: {problem}", err=True)
            return alerts
    except (LockBusy, LockUnavailable) as error:
        fail(f"{error}; silences not changed")


@main.command("silence")
@click.argument("checks", nargs=-1)
@click.option("--for", "duration", required=True, help="how long: 45s, 30m, 2h, 1d (at most 30d)")
@click.option("--reason", required=True, help="why, for the other operators (shown in status)")
@common_options
@click.pass_context
def silence_command(
    ctx: click.Context,
    checks: tuple[str, ...],
    duration: str,
    reason: str,
    env_file: str | None = None,
    verbose: bool = False,
    as_json: bool = False,
) -> None:
    """Stop texting about CHECKs (default: the whole node) during planned maintenance.

    When the silence ends and a problem is still there, one SMS says so.
    Check names are as in `check-status -v`; shell patterns work: 'endpoint:*'.
    """
    from check_status.alerting.rules import Silence, parse_duration

    env_file, _verbose, _as_json = _merge(ctx, env_file, verbose, as_json)
    config = load_config(env_file)
    try:
        seconds = parse_duration(duration)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--for") from None
    text = reason.strip()
    if not text:
        raise click.BadParameter("say why, for the other operators", param_hint="--reason")
    unknown = _unknown_check_patterns(config, checks)
    if unknown:
        fail(unknown)

    def add(alerts: AlertState, now: datetime) -> AlertState:
        silence = Silence(tuple(checks), now + timedelta(seconds=seconds), text, now)
        return dataclasses.replace(alerts, silences=(*alerts.silences, silence))

    alerts = _edit_silences(config, add)
    until = alerts.silences[-1].until.strftime("%Y-%m-%d %H:%M:%S")
    what = ", ".join(checks) if checks else f"all checks on {config.node_name}"
    click.echo(f"silenced {what} until {until} UTC: {text}")


def _unknown_check_patterns(config: Config, patterns: tuple[str, ...]) -> str | None:
    """Why a silence would silence nothing: a name or pattern that matches no check.

    `silence head-block --for 2h` once said "silenced head-block" and silenced
    nothing, while head_block went on texting through the maintenance.
    """
    import difflib
    import fnmatch

    from check_status.state import StateStore

    known = set(_check_names_of(config))
    state, _problem = StateStore(
        config.state_file, config.state_fallback_dir, config.env_file
    ).read_only()
    checks = state.get("checks")
    known |= set(checks) if isinstance(checks, dict) else set()
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in known):
            close = difflib.get_close_matches(pattern, sorted(known), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}? " if close else ""
            return (
                f"no check is named {pattern!r}: {hint}the checks here are"
                f" {', '.join(sorted(known))}; nothing was silenced"
            )
    return None


def _check_names_of(config: Config) -> list[str]:
    """The names of the checks these settings make, as `check-status -v` shows them."""
    from check_status.checks.endpoint import endpoint_check_name

    names = ["nodeos", "head_block", "lib", "state_db"]
    names += ["chain_id"] if config.expected_chain_id else []
    names += ["nodeos_log"] if config.nodeos_log else []
    names += [endpoint_check_name(url) for url in config.endpoints]
    names += [f"disk:{path}" for path in config.disk_paths]
    names += [f"peer:{name}" for name, _url in config.peers]
    return names


@main.command("unsilence")
@click.argument("checks", nargs=-1)
@common_options
@click.pass_context
def unsilence_command(
    ctx: click.Context,
    checks: tuple[str, ...],
    env_file: str | None = None,
    verbose: bool = False,
    as_json: bool = False,
) -> None:
    """End silences early: the named CHECKs' part of them, or every silence when none is named.

    `unsilence head_block` after `silence nodeos head_block` ends the silence of
    head_block only: nodeos stays silenced until its maintenance is over.
    """
    env_file, _verbose, _as_json = _merge(ctx, env_file, verbose, as_json)
    config = load_config(env_file)
    changed: list[int] = []

    def remove(alerts: AlertState, now: datetime) -> AlertState:
        # Only silences still in force count; an expired one is dropped here too.
        active = [s for s in alerts.silences if now < s.until]
        remaining = [] if not checks else [s.without(checks) for s in active]
        keep = tuple(s for s in remaining if s is not None)
        changed.append(sum(1 for s in active if s not in keep))
        return dataclasses.replace(alerts, silences=keep)

    alerts = _edit_silences(config, remove)
    left = len(alerts.silences)
    if not checks:
        click.echo(f"ended {changed[0]} silence(s); {left} left")
        return
    click.echo(f"{', '.join(checks)}: {changed[0]} silence(s) ended or narrowed; {left} left")
    # What still covers a named check: the whole node, or a pattern such as 'disk:*'
    # that cannot lose one of the checks it matches.
    now = utc_now()
    for check in checks:
        for silence in alerts.silences:
            if silence.covers(check, now):
                what = ", ".join(silence.checks) or "the whole node"
                until = silence.until.strftime("%Y-%m-%d %H:%M:%S")
                command = " ".join(["check-status unsilence", *silence.checks])
                click.echo(
                    f"{check} is still silenced by '{what}' until {until} UTC; `{command}` ends it"
                )


@main.command("ack")
@click.argument("check", required=False)
@click.option("--by", "who", required=True, help="your name (or number) as in ALERT_TO")
@common_options
@click.pass_context
def ack_command(
    ctx: click.Context,
    check: str | None,
    who: str,
    env_file: str | None = None,
    verbose: bool = False,
    as_json: bool = False,
) -> None:
    """Acknowledge CHECK's open incident (default: every open one), as a reply ACK does.

    No escalation and no call follows; reminders go to you only; the others
    who were told get one text from the next run: `[eu2] ACK nodeos by luke`.
    """
    from check_status.acks import AckNotRecorded, record_acks
    from check_status.alerting.oncall import Ack, operator_named

    env_file, _verbose, as_json = _merge(ctx, env_file, verbose, as_json)
    config = load_config(env_file)
    operator = operator_named(config.operators, who)
    if operator is None:
        names = ", ".join(o.name for o in config.operators) or "nobody: ALERT_TO is empty"
        fail(f"no operator {who!r} in ALERT_TO (the operators: {names}); nothing acknowledged")
    now = utc_now()
    try:
        lines = record_acks(
            config, [Ack(operator.number, check, now, "terminal")], now, RUN_DEADLINE_SECONDS + 5
        )
    except AckNotRecorded as error:
        fail(f"{error}; nothing acknowledged")
    done = not any(line.endswith("no open incident to acknowledge") for line in lines)
    if as_json:
        click.echo(json.dumps({"acknowledged": done, "lines": lines}, indent=2))
    else:
        for line in lines:
            click.echo(line)
    # Nothing to acknowledge is no error of the system: a WARNING, so a script sees it.
    sys.exit(0 if done else int(Status.WARNING))


@main.command("self-test")
@click.option(
    "--send-test-sms", is_flag=True, help="also text a clearly labelled test SMS to every ALERT_TO"
)
@click.option(
    "--install-only",
    is_flag=True,
    help="only the installation items (what install.sh --check runs)",
)
@click.option(
    "--expect-executable",
    type=click.Path(dir_okay=False),
    default=None,
    help="the executable the cron entry must run (default: this installation's)",
)
@click.option(
    "--cron-dir",
    type=click.Path(file_okay=False),
    default="/etc/cron.d",  # installation.CRON_DIR, without importing it on every run
    hidden=True,  # for the tests' stand-in cron directory: cron itself reads only this one
)
@common_options
@click.pass_context
def self_test_command(
    ctx: click.Context,
    send_test_sms: bool,
    install_only: bool,
    expect_executable: str | None,
    cron_dir: str,
    env_file: str | None = None,
    verbose: bool = False,
    as_json: bool = False,
) -> None:
    """Prove the alerting path works: config, nodeos, Twilio, cron entry, freshness.

    Run it after every deploy. Exits 0 only if nothing FAILs.
    """
    from check_status import config as config_module
    from check_status.installation import failed, worst_result
    from check_status.selftest import (
        freshness_item,
        installation_items,
        self_test,
        this_installation_executable,
    )

    env_file, _verbose, as_json = _merge(ctx, env_file, verbose, as_json)
    expected = Path(expect_executable) if expect_executable else this_installation_executable()
    now = utc_now()
    try:
        config = load(env_file)
    except ConfigError as error:
        # Still verify the installation: a broken config and a broken cron
        # entry are worth knowing about in one go. The paths the env file
        # names (install.sh records CRON_FILE) still count.
        chosen, _explicit = config_module.choose_env_file(env_file, os.environ)
        config = _paths_only_config(chosen)
        items = [
            failed(
                "config",
                str(error),
                "fix the line or the variable it names (env file or environment)",
            )
        ]
        items += installation_items(config, expected, now, Path(cron_dir))
    else:
        if install_only:
            items = list(installation_items(config, expected, now, Path(cron_dir)))
        else:
            items = self_test(
                config,
                now,
                send_test_sms=send_test_sms,
                expected_executable=expected,
                cron_dir=Path(cron_dir),
            )
            if not any(i.name == "freshness" for i in items):
                items.append(freshness_item(config, expected, now))
    verdict = worst_result(items)
    if as_json:
        document = {
            "result": {Status.CRITICAL: "FAIL", Status.WARNING: "WARN"}.get(verdict, "PASS"),
            "items": [dataclasses.asdict(item) for item in items],
        }
        click.echo(json.dumps(document, indent=2))
    else:
        for item in items:
            click.echo(item.line())
        failures = sum(1 for item in items if item.result == "FAIL")
        warnings = sum(1 for item in items if item.result == "WARN")
        click.echo(
            f"self-test: {failures} FAIL, {warnings} WARN, {len(items) - failures - warnings} PASS"
        )
    sys.exit(int(Status.CRITICAL) if verdict is Status.CRITICAL else 0)


@main.command("serve")
@click.option(
    "--listen", default="127.0.0.1:8899", show_default=True, help="HOST:PORT; loopback unless asked"
)
@common_options
@click.pass_context
def serve_command(
    ctx: click.Context,
    listen: str,
    env_file: str | None = None,
    verbose: bool = False,
    as_json: bool = False,
) -> None:
    """Serve /health for load balancers and /status for peers (run it under systemd)."""
    from check_status.serve import HealthServer, parse_listen

    env_file, verbose, _as_json = _merge(ctx, env_file, verbose, as_json)
    config = load_config(env_file)
    try:
        address = parse_listen(listen)
    except ValueError as error:
        fail(str(error))
    try:
        server = HealthServer(config, address)
    except OSError as error:
        fail(f"cannot listen on {listen}: {error.strerror or error}")
    webhook = config.twilio_webhook_url and config.twilio_auth_token
    routes = "/health, /status" + (", POST /twilio/sms" if webhook else "")
    click.echo(f"check-status serve: listening on http://{listen} ({routes})", err=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _paths_only_config(env_file: Path | None) -> Config:
    """Defaults, plus CRON_FILE and STATE_FILE from the settings when they are valid."""
    from check_status import config as config_module

    try:
        raw = config_module.read_settings(env_file, os.environ, strict=False)
    except ConfigError:
        raw = {}
    kept = {}
    for key in ("CRON_FILE", "STATE_FILE"):
        try:
            config_module.load_config({key: raw.get(key, "")})
            kept[key] = raw.get(key, "")
        except ConfigError:
            continue
    return dataclasses.replace(
        config_module.load_config(kept), env_file=str(env_file) if env_file else None
    )


@main.command("config-template")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="write this key set, not commented",
)
def config_template_command(assignments: tuple[str, ...]) -> None:
    """Print a commented env file with every key, its meaning and its default (install.sh uses it)."""
    from check_status.config import KEYS_BY_NAME, template

    settings = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or key not in KEYS_BY_NAME:
            raise click.BadParameter(
                f"{assignment!r}: expected KEY=VALUE with a known key", param_hint="--set"
            )
        settings[key] = value
    click.echo(template(settings))


def entry() -> None:
    """Console entry point with a last-resort guard against tracebacks."""
    try:
        main()
    except SystemExit:
        raise
    except Exception as error:  # a bug: say so in one line, show the trace only on request
        if os.environ.get("CHECK_STATUS_DEBUG"):
            raise
        message = f"internal error: {type(error).__name__}: {error} (set CHECK_STATUS_DEBUG=1 for details)"
        click.echo(_failure_line(message, Status.UNKNOWN))
        sys.exit(int(Status.UNKNOWN))
