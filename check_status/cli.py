"""The command line: thin. It parses options, calls the library, and is the one
place where exceptions become messages and Nagios exit codes.

    check-status [run] [-v|--json]   one run, as cron does it
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from check_status import __version__
from check_status.config import Config, ConfigError, load
from check_status.model import Status, utc_now

# cron starts a run every minute: a run must never outlive its slot.
RUN_DEADLINE_SECONDS = 50


def fail(message: str, status: Status = Status.UNKNOWN) -> NoReturn:
    """One line, the Nagios way, and the exit code. Never a traceback."""
    click.echo(f"CHECK-STATUS {status.name} - {message}")
    sys.exit(int(status))


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
        help="env file (default: $CHECK_STATUS_ENV_FILE, then /etc/check-status/check-status.env)",
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


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
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
    sys.stdout.write(f"CHECK-STATUS UNKNOWN - run exceeded its {RUN_DEADLINE_SECONDS}s deadline\n")
    sys.stdout.flush()
    os._exit(int(Status.UNKNOWN))


@main.command("run")
@common_options
@click.pass_context
def run_command(
    ctx: click.Context, env_file: str | None = None, verbose: bool = False, as_json: bool = False
) -> None:
    """One run: check, remember, report (what cron calls every minute)."""
    from check_status import output
    from check_status.runner import run_once
    from check_status.state import LockBusy, run_lock

    env_file, verbose, as_json = _merge(ctx, env_file, verbose, as_json)
    config = load_config(env_file)
    signal.signal(signal.SIGALRM, _deadline_reached)
    signal.alarm(RUN_DEADLINE_SECONDS)
    now = utc_now()
    try:
        with run_lock(config.lock_file, now) as lock_note:
            report = run_once(config, now, notes=(lock_note,) if lock_note else ())
    except LockBusy as busy:
        fail(f"{busy}; this run did nothing")
    finally:
        signal.alarm(0)
    if as_json:
        click.echo(output.dumps(output.report_json(report)))
    elif verbose:
        click.echo(output.verbose_table(report))
        click.echo(output.nagios_line(report).split(" | ")[0])
    else:
        click.echo(output.nagios_line(report))
    sys.exit(int(report.status))


def entry() -> None:
    """Console entry point with a last-resort guard against tracebacks."""
    try:
        main()
    except SystemExit:
        raise
    except Exception as error:  # a bug: say so in one line, show the trace only on request
        if os.environ.get("CHECK_STATUS_DEBUG"):
            raise
        click.echo(
            f"CHECK-STATUS UNKNOWN - internal error: {type(error).__name__}: {error} "
            "(set CHECK_STATUS_DEBUG=1 for details)"
        )
        sys.exit(int(Status.UNKNOWN))
