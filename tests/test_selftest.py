"""`check-status self-test` and the installation checks it shares with `install.sh --check`.

The pure checks run on line lists and on real files in tmp_path; the command runs
through the CLI against a real nodeos stand-in and a real Twilio stand-in on
loopback, with a cron file written in tmp_path (the running cron daemon never reads
it: it is not in /etc/cron.d).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result

from check_status import installation
from check_status.installation import (
    Item,
    check_cron_file,
    check_entries,
    check_env_file,
    freshness,
    misnamed_siblings,
)
from tests.standins import HeartbeatStandIn, NodeosStandIn, TwilioStandIn, free_port

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
WRONG_TOKEN = "badc0ffeebadc0ffeebadc0ffeebadc0"
GOOD = "+14155550101"
OTHER = "+14155550102"
BAD = "+15005550001"
SENDER = "+15005550006"

# The console script of the environment the tests run in: the executable a
# healthy cron entry must name.
EXE = Path(sys.executable).with_name("check-status")

ITEM_LINE = re.compile(r"^(PASS|WARN|FAIL) (?P<name>[^:]+): (?P<detail>.*)$")
INSTALLATION_ITEMS = {
    "cron file",
    "cron entry",
    "cron command",
    "cron daemon",
    "env file",
    "misnamed cron file",
    "token file",
    "heartbeat URL file",
    "readers",
}


# --- helpers ----------------------------------------------------------------


def by_result(items: list[Item], result: str) -> list[Item]:
    return [item for item in items if item.result == result]


def only(items: list[Item], name: str) -> Item:
    found = [item for item in items if item.name == name]
    assert len(found) == 1, items
    return found[0]


def make_executable(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


def system_entry(command: str, schedule: str = "* * * * *") -> str:
    return (
        f"{schedule} root {command} run --env-file /etc/check-status/check-status.env "
        ">> /var/log/check-status.log 2>&1"
    )


def parse_items(output: str) -> list[tuple[str, str, str]]:
    """(result, name, detail) of every item line; every line must be an item line,
    a fix line under one, or the closing summary."""
    lines = output.splitlines()
    assert lines, output
    assert re.fullmatch(r"self-test: \d+ FAIL, \d+ WARN, \d+ PASS", lines[-1]), output
    items = []
    for line in lines[:-1]:
        if line.startswith("     fix: "):
            assert items and items[-1][0] != "PASS", output
            continue
        match = ITEM_LINE.match(line)
        assert match, f"not a PASS/WARN/FAIL line: {line!r}\n{output}"
        items.append((match.group(1), match.group("name"), match.group("detail")))
    return items


def item_lines(output: str, name: str) -> list[str]:
    return [line for line in output.splitlines() if ITEM_LINE.match(line) and f" {name}: " in line]


# --- 1. pure tables: the schedule --------------------------------------------


@pytest.mark.parametrize("schedule", ["* * * * *", "*/1 * * * *"])
def test_every_minute_schedules_are_accepted(schedule):
    assert installation._schedule_problem(schedule.split()) is None


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        ("*/5 * * * *", "less often"),
        ("0 * * * *", "less often"),
        ("@hourly", "less often"),
        ("@reboot", "only at boot"),
    ],
)
def test_schedules_running_less_often_than_every_minute_are_flagged(schedule, words):
    problem = installation._schedule_problem(schedule.split())
    assert problem is not None and words in problem


@pytest.mark.parametrize("schedule", ["*/10 * * * *", "*/15 * * * *"])
def test_steps_starting_with_1_are_not_every_minute(schedule):
    problem = installation._schedule_problem(schedule.split())
    assert problem is not None and "less often" in problem


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        ("* * *", "five fields"),
        ("61 * * * *", "out of range 0-59"),
        ("* 25 * * *", "out of range 0-23"),
        ("@sometimes", "not a schedule cron knows"),
    ],
)
def test_invalid_schedules_are_named(schedule, words):
    problem = installation._schedule_problem(schedule.split())
    assert problem is not None and words in problem


# --- 1. pure tables: the entry -----------------------------------------------


@pytest.fixture
def exe(tmp_path: Path) -> Path:
    return make_executable(tmp_path / "venv" / "bin" / "check-status")


def test_comments_blanks_and_variable_lines_are_not_entries(exe):
    lines = [
        installation.USER_CRONTAB_MARK,
        "# check-status: every minute, see crontab.example",
        "",
        "   ",
        "SHELL=/bin/sh",
        "PATH=/opt/check-status/bin:/usr/bin:/bin",
        "MAILTO=check-status@example.com",
        "CHECK_STATUS_ENV_FILE=/etc/check-status/check-status.env",
        system_entry(str(exe)),
    ]
    items = check_entries(lines, exe, system=True, where="/etc/cron.d/check-status")
    assert [(i.name, i.result) for i in items] == [("cron entry", "PASS"), ("cron command", "PASS")]
    assert "* * * * *" in items[0].detail


def test_no_entry_fails(exe):
    lines = ["SHELL=/bin/sh", 'MAILTO=""', "# check-status", "0 3 * * * root /usr/bin/backup"]
    items = check_entries(lines, exe, system=True, where="/etc/cron.d/check-status")
    assert len(items) == 1 and items[0].result == "FAIL"
    assert "no check-status entry" in items[0].detail and items[0].fix


def test_two_entries_fail(exe):
    lines = [system_entry(str(exe)), system_entry(str(exe))]
    items = check_entries(lines, exe, system=True, where="/etc/cron.d/check-status")
    assert len(items) == 1 and items[0].result == "FAIL"
    assert "2 check-status entries" in items[0].detail and items[0].fix


def test_a_relative_command_fails_naming_crons_path(exe):
    items = check_entries(
        [system_entry("check-status")], exe, system=True, where="/etc/cron.d/check-status"
    )
    command = only(items, "cron command")
    assert command.result == "FAIL"
    assert "not an absolute path" in command.detail and "cron's PATH" in command.detail
    assert str(exe) in command.fix


def test_a_command_that_does_not_exist_fails(exe, tmp_path):
    missing = tmp_path / "venv" / "bin" / "checkstatus"
    items = check_entries(
        [system_entry(str(missing))], exe, system=True, where="/etc/cron.d/check-status"
    )
    command = only(items, "cron command")
    assert command.result == "FAIL" and "does not exist" in command.detail
    assert str(exe) in command.fix


def test_another_executable_fails(exe, tmp_path):
    other = make_executable(tmp_path / "old-venv" / "bin" / "check-status")
    items = check_entries(
        [system_entry(str(other))], exe, system=True, where="/etc/cron.d/check-status"
    )
    command = only(items, "cron command")
    assert command.result == "FAIL"
    assert "is not this installation's executable" in command.detail


def test_a_link_to_this_executable_passes(exe, tmp_path):
    link = tmp_path / "usr" / "local" / "bin" / "check-status"
    link.parent.mkdir(parents=True)
    link.symlink_to(exe)
    items = check_entries(
        [system_entry(str(link))], exe, system=True, where="/etc/cron.d/check-status"
    )
    assert only(items, "cron command").result == "PASS"


def test_a_non_executable_command_fails(tmp_path):
    script = make_executable(tmp_path / "venv" / "bin" / "check-status", mode=0o644)
    items = check_entries(
        [system_entry(str(script))], script, system=True, where="/etc/cron.d/check-status"
    )
    command = only(items, "cron command")
    assert command.result == "FAIL" and "not executable" in command.detail
    assert "chmod" in command.fix


def test_a_user_crontab_line_has_no_user_field(exe):
    line = f"* * * * * {exe} run --env-file /root/.config/check-status/check-status.env"
    user = check_entries([line], exe, system=False, where="your crontab")
    assert [i.result for i in user] == ["PASS", "PASS"]
    # The same line read as a /etc/cron.d line: its first word would be the user.
    system = check_entries([line], exe, system=True, where="/etc/cron.d/check-status")
    assert only(system, "cron command").result == "FAIL"


def test_a_bad_schedule_in_the_entry_fails(exe):
    items = check_entries(
        [system_entry(str(exe), schedule="*/5 * * * *")],
        exe,
        system=True,
        where="/etc/cron.d/check-status",
    )
    entry = only(items, "cron entry")
    assert entry.result == "FAIL" and "*/5 * * * *" in entry.detail
    assert entry.fix == "use '* * * * *'"


# --- 1. pure tables: the cron file --------------------------------------------


def write_cron_file(path: Path, text: str | None = None, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        text if text is not None else system_entry("/usr/local/bin/check-status") + "\n"
    )
    path.chmod(mode)
    return path


def test_a_good_cron_file_passes(tmp_path):
    items = check_cron_file(write_cron_file(tmp_path / "cron.d" / "check-status"))
    assert [(i.name, i.result) for i in items] == [("cron file", "PASS")]


def test_a_dotted_cron_file_name_fails_and_says_why(tmp_path):
    path = write_cron_file(tmp_path / "cron.d" / "check_status.sh")
    items = check_cron_file(path)
    [failure] = by_result(items, "FAIL")
    assert "cron ignores the file without a word" in failure.detail
    target = Path(failure.fix.split()[-1])
    assert failure.fix.startswith(f"mv {path} ")
    assert target.parent == path.parent and "." not in target.name
    assert installation.CRON_NAME.fullmatch(target.name)


def test_a_group_writable_cron_file_fails(tmp_path):
    path = write_cron_file(tmp_path / "cron.d" / "check-status", mode=0o664)
    [failure] = by_result(check_cron_file(path), "FAIL")
    assert "group- or other-writable" in failure.detail and "0664" in failure.detail
    assert failure.fix == f"chmod 0644 {path}"


def test_a_cron_file_without_a_final_newline_fails(tmp_path):
    path = write_cron_file(
        tmp_path / "cron.d" / "check-status", text=system_entry("/usr/local/bin/check-status")
    )
    [failure] = by_result(check_cron_file(path), "FAIL")
    assert "no final newline" in failure.detail and failure.fix


def test_a_missing_cron_file_fails(tmp_path):
    path = tmp_path / "cron.d" / "check-status"
    items = check_cron_file(path)
    assert len(items) == 1 and items[0].result == "FAIL"
    assert "does not exist" in items[0].detail and items[0].fix


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_cron_file_not_owned_by_root_fails(tmp_path):
    path = write_cron_file(tmp_path / "cron.d" / "check-status")
    assert [i.result for i in check_cron_file(path)] == ["PASS"]  # owned by root: fine
    os.chown(path, 1000, -1)
    [failure] = by_result(check_cron_file(path), "FAIL")
    assert "not root" in failure.detail and failure.fix == f"chown root {path}"


# --- 1. pure tables: misnamed siblings ----------------------------------------


def test_misnamed_siblings_are_reported(tmp_path):
    cron_dir = tmp_path / "cron.d"
    own = write_cron_file(cron_dir / "check-status")
    dotted = write_cron_file(cron_dir / "check_status.sh")
    write_cron_file(cron_dir / "backup", text="0 3 * * * root /usr/local/bin/backup\n")
    writable = write_cron_file(cron_dir / "check-status-old", mode=0o666)
    (cron_dir / "check-status.d").mkdir()  # a directory: not a cron file

    items = misnamed_siblings(cron_dir, own)
    assert {i.name for i in items} == {"misnamed cron file"}
    assert {i.result for i in items} == {"FAIL"}
    by_path = {next(p for p in (dotted, writable) if str(p) in i.detail): i for i in items}
    assert set(by_path) == {dotted, writable}
    assert "name has a character cron ignores" in by_path[dotted].detail
    assert "owner or mode" in by_path[writable].detail
    assert all(f"rm {p}" in by_path[p].fix for p in by_path)


def test_a_sibling_is_found_by_its_name_or_its_content(tmp_path):
    cron_dir = tmp_path / "cron.d"
    write_cron_file(cron_dir / "checkstatus.sh", text="* * * * * root /usr/bin/true\n")
    write_cron_file(cron_dir / "node.sh", text=system_entry("/opt/check-status/bin/check-status"))
    write_cron_file(cron_dir / "other.sh", text="* * * * * root /usr/bin/true\n")
    details = " ".join(i.detail for i in misnamed_siblings(cron_dir, None))
    assert "checkstatus.sh" in details and "node.sh" in details
    assert "other.sh" not in details


def test_the_own_cron_file_is_not_reported_as_a_sibling(tmp_path):
    cron_dir = tmp_path / "cron.d"
    own = write_cron_file(cron_dir / "check_status.sh")  # check_cron_file reports it
    assert misnamed_siblings(cron_dir, own) == []
    assert len(misnamed_siblings(cron_dir, None)) == 1


# --- 1. pure tables: freshness --------------------------------------------------

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_a_fresh_run_passes():
    item = freshness(ago(30), ago(3600), NOW, True)
    assert item.result == "PASS" and item.detail == "last scheduled run 30s ago"


def test_a_last_run_five_minutes_ago_fails():
    item = freshness(ago(300), ago(3600), NOW, True)
    assert item.result == "FAIL"
    assert "installed but not running" in item.detail and "5m" in item.detail
    assert item.fix


def test_straight_after_install_it_says_how_long_to_wait():
    item = freshness(None, ago(40), NOW, True)
    assert item.result == "WARN"
    assert "installed 40s ago" in item.detail
    assert item.fix.startswith("wait 1m20s")


def test_a_run_from_before_a_reinstall_counts_as_no_run_yet():
    item = freshness(ago(600), ago(40), NOW, True)
    assert item.result == "WARN" and "installed 40s ago" in item.detail


def test_installed_ten_minutes_ago_and_never_run_fails():
    item = freshness(None, ago(600), NOW, True)
    assert item.result == "FAIL" and "installed but not running" in item.detail
    assert item.fix


def test_no_install_time_and_no_run_fails():
    assert freshness(None, None, NOW, True).result == "FAIL"


def test_a_run_by_hand_does_not_prove_that_cron_runs_it():
    item = freshness(ago(600), ago(3600), NOW, True, last_hand_run=ago(20))
    assert item.result == "FAIL"
    assert item.detail == (
        "installed but not running: the last scheduled run was 10m ago;"
        " the run by hand 20s ago does not count"
    )


def test_only_runs_by_hand_since_install_fail():
    item = freshness(None, ago(600), NOW, True, last_hand_run=ago(5))
    assert item.result == "FAIL"
    assert "no scheduled run recorded" in item.detail and "by hand 5s ago" in item.detail


def test_without_a_cron_entry_there_is_nothing_to_prove():
    item = freshness(None, ago(600), NOW, entry_exists=False)
    assert item.result == "WARN" and item.fix


# --- 1. pure tables: the env file --------------------------------------------------


def test_a_private_env_file_passes(tmp_path):
    path = tmp_path / "check-status.env"
    path.write_text("TWILIO_AUTH_TOKEN=x\n")
    path.chmod(0o600)
    item = check_env_file(path)
    assert item.result == "PASS" and "0600" in item.detail


@pytest.mark.parametrize("mode", [0o640, 0o644])
def test_an_env_file_others_can_read_fails(tmp_path, mode):
    path = tmp_path / "check-status.env"
    path.write_text("TWILIO_AUTH_TOKEN=x\n")
    path.chmod(mode)
    item = check_env_file(path)
    assert item.result == "FAIL"
    assert "other users can read the Twilio token" in item.detail
    assert item.fix == f"chmod 0600 {path}"


def test_no_env_file_warns():
    item = check_env_file(None)
    assert item.result == "WARN" and item.fix


# --- 2. the command --------------------------------------------------------------


@pytest.fixture
def twilio() -> Iterator[TwilioStandIn]:
    with TwilioStandIn(auth_token=TOKEN) as standin:
        yield standin


@pytest.fixture
def cron_daemon() -> Iterator[bool]:
    """Whether a cron daemon runs (started here, and stopped again, when it did not)."""
    if subprocess.run(["pgrep", "-x", "cron"], capture_output=True).returncode == 0:
        yield True
        return
    try:
        subprocess.run(["cron"], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        yield False
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-x", "cron"], capture_output=True, text=True)
        if found.returncode == 0:
            break
        time.sleep(0.05)
    pids = [int(p) for p in found.stdout.split()]
    yield bool(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


@dataclass
class Install:
    cron_file: Path
    env_file: Path
    write: Callable[..., Path]


@pytest.fixture
def installed(tmp_path: Path, write_env, nodeos: NodeosStandIn) -> Install:
    """A good cron file (its own directory, so nothing else there is a sibling) naming
    this environment's console script, installed an hour ago; and an env writer."""
    assert EXE.exists(), f"{EXE} is not installed: pip install -e ."
    env_file = tmp_path / "check-status.env"
    cron_file = tmp_path / "cron.d" / "check-status"
    write_cron_file(
        cron_file,
        text='SHELL=/bin/sh\nPATH=/usr/local/bin:/usr/bin:/bin\nMAILTO=""\n'
        + f"* * * * * root {EXE} run --env-file {env_file} >> {tmp_path / 'log'} 2>&1\n",
    )
    hour_ago = time.time() - 3600
    os.utime(cron_file, (hour_ago, hour_ago))

    def write(**settings) -> Path:
        values = {"NODEOS_URL": nodeos.url, "CRON_FILE": str(cron_file)}
        values.update(settings)
        written = write_env(**values)
        assert written == env_file
        return written

    return Install(cron_file, env_file, write)


def sms_settings(twilio: TwilioStandIn, **extra: str) -> dict[str, str]:
    settings = {
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM": SENDER,
        "ALERT_TO": f"{GOOD},{OTHER}",
        "TWILIO_API_BASE_URL": twilio.url,
    }
    settings.update(extra)
    return settings


def self_test(cli, env_file: Path, *args: str) -> Result:
    return cli(
        "self-test",
        "--env-file",
        str(env_file),
        "--expect-executable",
        str(EXE),
        "--cron-dir",
        str(env_file.parent / "cron.d"),  # where `installed` writes the cron file
        *args,
    )


def one_run(cli, env_file: Path, state_file: Path) -> None:
    """What cron would have done a moment ago: one run, recorded in the state file."""
    cli("run", "--env-file", str(env_file))
    assert json.loads(state_file.read_text())["last_run"]["at"]


def assert_nothing_else_fails(items: list[tuple[str, str, str]], cron_running: bool) -> None:
    failures = [i for i in items if i[0] == "FAIL"]
    if cron_running:
        assert failures == []
    else:
        assert [name for _r, name, _d in failures] == ["cron daemon"]


def test_a_healthy_installation_passes_without_sending_an_sms(
    cli, installed, nodeos, twilio, state_file, cron_daemon
):
    env_file = installed.write(**sms_settings(twilio))
    one_run(cli, env_file, state_file)
    result = self_test(cli, env_file)
    items = parse_items(result.output)
    assert_nothing_else_fails(items, cron_daemon)
    if cron_daemon:
        assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(
        line.startswith(
            f"PASS nodeos: 127.0.0.1:{nodeos.port} reachable: chain aca376f206b8..., v4.0.4"
        )
        for line in lines
    ), result.output
    assert any(line.startswith("PASS twilio: credentials valid") for line in lines), result.output
    names = {name for result_, name, _ in items if result_ == "PASS"}
    assert {"config", "state directory", "phone numbers", "cron file", "cron entry"} <= names
    assert {"cron command", "env file", "freshness"} <= names
    # Credentials are checked by reading the account; nothing is sent.
    assert ("GET", f"/2010-04-01/Accounts/{SID}.json") in twilio.requests
    assert twilio.messages == [] and twilio.attempts == []
    assert TOKEN not in result.output


def test_send_test_sms_texts_every_operator(cli, installed, twilio):
    env_file = installed.write(**sms_settings(twilio))
    result = self_test(cli, env_file, "--send-test-sms")
    messages = twilio.wait_for_messages(2)
    assert sorted(m["to"] for m in messages) == [GOOD, OTHER]
    for message in messages:
        assert "TEST from check-status self-test" in message["body"]
        assert message["body"].startswith("[eu2] ")
        assert message["from"] == SENDER and message["auth_ok"]
    assert len(item_lines(result.output, f"test SMS to {GOOD}")) == 1
    assert item_lines(result.output, f"test SMS to {OTHER}")[0].startswith("PASS")


def test_a_test_sms_to_an_invalid_number_fails_that_item_only(cli, installed, twilio):
    twilio.invalid_numbers = {BAD}
    env_file = installed.write(**sms_settings(twilio, ALERT_TO=f"{BAD},{GOOD}"))
    result = self_test(cli, env_file, "--send-test-sms")
    assert result.exit_code == 2, result.output
    [bad_line] = item_lines(result.output, f"test SMS to {BAD}")
    assert bad_line.startswith("FAIL") and "21211" in bad_line
    [good_line] = item_lines(result.output, f"test SMS to {GOOD}")
    assert good_line.startswith("PASS")
    messages = twilio.wait_for_messages(1)
    assert [m["to"] for m in messages] == [GOOD]
    assert "TEST from check-status self-test" in messages[0]["body"]


def test_a_wrong_auth_token_fails_without_showing_it(cli, installed, twilio):
    env_file = installed.write(**sms_settings(twilio, TWILIO_AUTH_TOKEN=WRONG_TOKEN))
    result = self_test(cli, env_file, "--send-test-sms")
    assert result.exit_code == 2, result.output
    [line] = item_lines(result.output, "twilio")
    assert line.startswith("FAIL twilio: ") and "20003" in line
    assert WRONG_TOKEN not in result.output and TOKEN not in result.output
    assert twilio.attempts == []  # no test SMS on bad credentials


def test_an_unreachable_nodeos_fails(cli, installed):
    port = free_port()
    env_file = installed.write(NODEOS_URL=f"http://127.0.0.1:{port}")
    result = self_test(cli, env_file)
    assert result.exit_code == 2, result.output
    [line] = item_lines(result.output, "nodeos")
    assert line == f"FAIL nodeos: 127.0.0.1:{port}: connection refused"


def test_json_output(cli, installed):
    env_file = installed.write(NODEOS_URL=f"http://127.0.0.1:{free_port()}")
    result = self_test(cli, env_file, "--json")
    assert result.exit_code == 2
    document = json.loads(result.output)
    assert document["result"] == "FAIL"
    assert document["items"]
    for item in document["items"]:
        assert set(item) == {"name", "result", "detail", "fix"}
        assert item["result"] in ("PASS", "WARN", "FAIL")
    [node] = [i for i in document["items"] if i["name"] == "nodeos"]
    assert node["result"] == "FAIL" and "connection refused" in node["detail"] and node["fix"]


def test_json_output_of_a_passing_self_test(cli, installed, state_file, cron_daemon):
    env_file = installed.write()
    one_run(cli, env_file, state_file)
    result = self_test(cli, env_file, "--json")
    document = json.loads(result.output)
    if cron_daemon:
        # Exit 0; WARN rather than PASS when an item only warns (this setup has no SMS).
        warns = [i for i in document["items"] if i["result"] == "WARN"]
        assert result.exit_code == 0, result.output
        assert document["result"] == ("WARN" if warns else "PASS"), result.output
    assert {i["name"] for i in document["items"]} >= {"config", "nodeos", "freshness"}


def test_a_bad_config_value_fails_and_still_lists_the_installation(cli, installed):
    env_file = installed.write(HEAD_LAG_WARN_SECONDS="abc")
    result = self_test(cli, env_file)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    items = parse_items(result.output)
    [config] = [i for i in items if i[1] == "config"]
    assert config[0] == "FAIL" and "HEAD_LAG_WARN_SECONDS" in config[2]
    names = {name for _r, name, _d in items}
    assert {"cron file", "cron daemon", "env file"} <= names
    assert "nodeos" not in names and "twilio" not in names


def test_a_bad_config_value_still_checks_the_cron_file_the_env_file_names(cli, installed):
    env_file = installed.write(HEAD_LAG_WARN_SECONDS="abc")
    result = self_test(cli, env_file)
    [line] = item_lines(result.output, "cron file")
    assert str(installed.cron_file) in line


def test_a_missing_env_file_fails_the_config_item(cli, tmp_path):
    missing = tmp_path / "nowhere" / "check-status.env"
    result = self_test(cli, missing)
    assert result.exit_code == 2
    [line] = item_lines(result.output, "config")
    assert line.startswith("FAIL config: ") and str(missing) in line


def test_install_only_lists_only_installation_items(cli, installed, nodeos, twilio):
    env_file = installed.write(**sms_settings(twilio))
    result = self_test(cli, env_file, "--install-only")
    names = {name for _r, name, _d in parse_items(result.output)}
    assert names and names <= INSTALLATION_ITEMS, result.output
    assert {"cron file", "cron entry", "cron command", "cron daemon", "env file"} <= names
    assert nodeos.requests == [] and twilio.requests == []


def test_install_only_fails_on_a_broken_cron_file(cli, installed):
    env_file = installed.write()
    installed.cron_file.chmod(0o664)
    result = self_test(cli, env_file, "--install-only")
    assert result.exit_code == 2
    [line] = [ln for ln in item_lines(result.output, "cron file") if ln.startswith("FAIL")]
    assert "group- or other-writable" in line


def test_an_unreachable_heartbeat_names_only_the_host(cli, installed):
    port = free_port()
    secret = "5f1e0c3a-1b2c-4d5e-8f90-abcdefabcdef"
    env_file = installed.write(HEARTBEAT_URL=f"http://127.0.0.1:{port}/ping/{secret}")
    result = self_test(cli, env_file)
    assert result.exit_code == 2
    [line] = item_lines(result.output, "heartbeat")
    assert line == f"FAIL heartbeat: 127.0.0.1:{port}: connection refused"
    assert secret not in result.output and "/ping" not in result.output


def test_an_existing_heartbeat_check_passes_without_being_pinged(cli, installed):
    # A self-test must not reset the dead-man's timer of a checker that may be dead:
    # healthchecks.io's /log records an event and leaves the check's state alone.
    secret = "5f1e0c3a-1b2c-4d5e-8f90-abcdefabcdef"
    with HeartbeatStandIn(checks={secret}) as service:
        env_file = installed.write(HEARTBEAT_URL=f"{service.url}/ping/{secret}")
        result = self_test(cli, env_file)
        [line] = item_lines(result.output, "heartbeat")
        assert line == f"PASS heartbeat: check exists (127.0.0.1:{service.port})"
        assert service.requests == [("POST", f"/ping/{secret}/log")]
        assert service.log_events == [(secret, b"check-status self-test")]
        assert service.pings == []
        assert secret not in result.output


def test_sms_not_configured_only_warns(cli, installed, state_file, cron_daemon):
    env_file = installed.write()
    one_run(cli, env_file, state_file)
    result = self_test(cli, env_file)
    items = parse_items(result.output)
    [twilio_item] = [i for i in items if i[1] == "twilio"]
    assert twilio_item[0] == "WARN" and "SMS not configured" in twilio_item[2]
    assert_nothing_else_fails(items, cron_daemon)
    if cron_daemon:
        assert result.exit_code == 0, result.output


def run_at_a_terminal(env_file: Path) -> str:
    """`check-status -v` as an operator types it: the real console script on a real pty."""
    import pty

    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [str(EXE), "--env-file", str(env_file), "-v"],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            close_fds=True,
        )
        os.close(terminal)
        terminal = -1
        output = bytearray()
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:  # EIO: the child closed its side
                break
            if not data:
                break
            output.extend(data)
        assert process.wait(timeout=30) == 0, output.decode(errors="replace")
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    return output.decode(errors="replace")


def test_a_run_typed_at_a_terminal_does_not_pass_freshness(cli, installed, state_file):
    env_file = installed.write()
    cli("run", "--env-file", str(env_file))  # cron's run, without a terminal
    scheduled = json.loads(state_file.read_text())["last_scheduled_run"]["at"]
    ten_minutes_ago = time.time() - 600
    # Pretend cron's run was ten minutes ago: then cron stopped.
    state = json.loads(state_file.read_text())
    old = datetime.fromtimestamp(ten_minutes_ago, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    state["last_scheduled_run"]["at"] = state["last_run"]["at"] = old
    state_file.write_text(json.dumps(state))

    shown = run_at_a_terminal(env_file)
    assert "CHECK-STATUS OK" in shown, shown
    state = json.loads(state_file.read_text())
    assert state["last_run"]["by"] == "hand" and state["last_run"]["at"] >= scheduled
    assert state["last_scheduled_run"]["at"] == old  # the hand run did not touch it

    result = self_test(cli, env_file)
    [line] = item_lines(result.output, "freshness")
    assert line.startswith(
        "FAIL freshness: installed but not running: the last scheduled run was 10m"
    )
    assert "does not count" in line
    assert result.exit_code == 2
    status = cli("status", "--env-file", str(env_file))
    assert (
        "last run by hand" in status.output and f"last scheduled (cron) run: {old}" in status.output
    )


def test_a_cron_entry_that_never_ran_fails_freshness(cli, installed, state_file):
    env_file = installed.write()
    assert not state_file.exists()
    result = self_test(cli, env_file)
    assert result.exit_code == 2
    [line] = item_lines(result.output, "freshness")
    assert line.startswith("FAIL freshness: installed but not running")


def test_straight_after_install_freshness_says_how_long_to_wait(cli, installed):
    env_file = installed.write()
    os.utime(installed.cron_file)  # installed just now
    result = self_test(cli, env_file)
    [line] = item_lines(result.output, "freshness")
    assert line.startswith("WARN freshness: installed ")
    assert "wait " in result.output.split(line, 1)[1].splitlines()[1]


def test_a_cron_file_outside_the_cron_directory_fails_plain_self_test(cli, installed):
    """It once said `PASS cron file: ... has a name cron reads` for a file cron never reads."""
    env_file = installed.write()
    result = cli("self-test", "--env-file", str(env_file), "--expect-executable", str(EXE))
    assert result.exit_code == 2, result.output
    assert (
        f"FAIL cron file: {installed.cron_file} is not in /etc/cron.d, which is the only"
        " directory cron reads" in result.output
    )


def test_a_readable_env_file_fails_only_when_it_holds_a_secret(tmp_path):
    from check_status.installation import check_env_file

    plain = tmp_path / "plain.env"
    plain.write_text("NODEOS_URL=http://127.0.0.1:8888\nHEAD_LAG_WARN_SECONDS=20\n")
    plain.chmod(0o644)
    secret = tmp_path / "secret.env"
    secret.write_text("NODEOS_URL=http://127.0.0.1:8888\nTWILIO_AUTH_TOKEN=" + "ab" * 16 + "\n")
    secret.chmod(0o644)
    assert (
        check_env_file(plain).line() == f"PASS env file: {plain} is mode 0644; it holds no secret"
    )
    item = check_env_file(secret)
    assert item.result == "FAIL"
    assert "other users can read the Twilio token in it (TWILIO_AUTH_TOKEN)" in item.line()
    assert "ab" * 16 not in item.line()
