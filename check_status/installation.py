"""Is the alerting path really installed? The checks behind `install.sh --check`
and `check-status self-test`, in one place.

This project exists because a monitoring script saved as `checkstatus.sh` was
called by cron as `check_status.sh`: cron ran nothing for weeks and nobody was
texted. On Debian, cron also ignores without a word any /etc/cron.d file whose
name has a dot, that is group- or other-writable, or that lacks a final
newline. Every such way to be silently disabled is an item here, and each
failure says how to fix it.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from check_status.model import Status, human_duration

if TYPE_CHECKING:
    from check_status.config import Config

# The one directory Debian's cron reads files from. install.sh --check takes
# another one only from its own command line (CRON_D=DIR), for the tests'
# temporary roots, and then says so in a WARN line.
CRON_DIR = Path("/etc/cron.d")

# The mark install.sh --user puts on the line it owns in a user's crontab.
USER_CRONTAB_MARK = "# check-status (managed by install.sh; other lines are left alone)"
CRON_NAME = re.compile(r"[A-Za-z0-9_-]+")
MENTIONS = re.compile(r"check[-_]?status", re.IGNORECASE)


@dataclass(frozen=True)
class Item:
    """One line of self-test: PASS, WARN or FAIL, what was found, how to fix it."""

    name: str
    result: str  # "PASS", "WARN" or "FAIL"
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.result:<4} {self.name}: {self.detail}"
        return f"{text}\n     fix: {self.fix}" if self.fix and self.result != "PASS" else text


def passed(name: str, detail: str) -> Item:
    return Item(name, "PASS", detail)


def warned(name: str, detail: str, fix: str = "") -> Item:
    return Item(name, "WARN", detail, fix)


def failed(name: str, detail: str, fix: str) -> Item:
    return Item(name, "FAIL", detail, fix)


# --- the cron file ----------------------------------------------------------


def check_cron_file(path: Path) -> list[Item]:
    """Everything that makes Debian's cron skip a /etc/cron.d file in silence."""
    name = "cron file"
    if not path.exists():
        return [
            failed(
                name,
                f"{path} does not exist",
                "run install.sh (or set CRON_FILE to where the entry is)",
            )
        ]
    items = []
    if CRON_NAME.fullmatch(path.name):
        items.append(passed(name, f"{path} has a name cron reads"))
    else:
        items.append(
            failed(
                name,
                f"{path.name!r} has a character cron does not accept in /etc/cron.d names "
                "(only letters, digits, '_' and '-'): cron ignores the file without a word",
                f"mv {path} {path.parent / re.sub(r'[^A-Za-z0-9_-]', '-', path.name)}",
            )
        )
    info = path.stat()
    if info.st_uid != 0:
        items.append(
            failed(
                name,
                f"{path} is owned by uid {info.st_uid}, not root: cron skips it",
                f"chown root {path}",
            )
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(info.st_mode)
        items.append(
            failed(
                name,
                f"{path} is mode {mode:04o}, group- or other-writable: cron skips it (INSECURE MODE)",
                f"chmod 0644 {path}",
            )
        )
    content = path.read_bytes()
    if content and not content.endswith(b"\n"):
        items.append(
            failed(
                name, f"{path} has no final newline: cron ignores its last line", f"echo >> {path}"
            )
        )
    return items


def check_cron_location(path: Path, cron_dir: Path) -> Item | None:
    """A FAIL for a cron file outside the one directory cron reads; None when it is there."""
    if path.parent.resolve() == cron_dir.resolve():
        return None
    target = cron_dir / "check-status"
    return failed(
        "cron file",
        f"{path} is not in {cron_dir}, which is the only directory cron reads; move it to {target}",
        f"mv {path} {target}, and set CRON_FILE={target} in the env file",
    )


def check_entries(
    lines: list[str], expected_executable: Path, *, system: bool, where: str
) -> list[Item]:
    """Exactly one check-status entry, with a valid schedule and our executable."""
    name = "cron entry"
    entries = [line for line in lines if _is_job(line) and MENTIONS.search(line)]
    if not entries:
        return [failed(name, f"no check-status entry in {where}", "run install.sh")]
    if len(entries) > 1:
        return [
            failed(
                name,
                f"{len(entries)} check-status entries in {where}: it would run {len(entries)} times a minute",
                f"keep one line in {where} (install.sh rewrites it)",
            )
        ]
    fields = entries[0].split()
    schedule, rest = fields[:5], fields[5:]
    if fields[0].startswith("@"):
        schedule, rest = fields[:1], fields[1:]
    items = []
    problem = _schedule_problem(schedule)
    if problem:
        items.append(failed(name, f"schedule {' '.join(schedule)!r}: {problem}", "use '* * * * *'"))
    else:
        items.append(passed(name, f"schedule {' '.join(schedule)} in {where}"))
    if system:
        rest = rest[1:]  # the user field of /etc/cron.d lines
    command = rest[0] if rest else ""
    items.append(_check_command(command, expected_executable))
    return items


def _is_job(line: str) -> bool:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return False
    return not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", stripped)  # SHELL=, PATH=, MAILTO=


_FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
_NAMES |= {"sun", "mon", "tue", "wed", "thu", "fri", "sat"}
_SPECIAL = {
    "@reboot",
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
}


def _schedule_problem(schedule: list[str]) -> str | None:
    if len(schedule) == 1 and schedule[0].startswith("@"):
        if schedule[0] not in _SPECIAL:
            return "not a schedule cron knows"
        return (
            "runs far less often than every minute"
            if schedule[0] != "@reboot"
            else "runs only at boot"
        )
    if len(schedule) != 5:
        return "a schedule has five fields"
    for field, (low, high) in zip(schedule, _FIELD_RANGES, strict=True):
        for part in field.split(","):
            base, _, step = part.partition("/")
            if step and not step.isdigit():
                return f"bad step in {field!r}"
            if base == "*" or base.lower() in _NAMES:
                continue
            bounds = base.split("-")
            if not all(b.isdigit() and low <= int(b) <= high for b in bounds) or len(bounds) > 2:
                return f"{field!r} is out of range {low}-{high}"
    if schedule[0] not in ("*", "*/1"):
        return "runs less often than every minute: incidents would be seen late"
    if any(field not in ("*", "*/1") for field in schedule[1:]):
        return "runs only at some hours or on some days: incidents outside them go unseen"
    return None


def _check_command(command: str, expected: Path) -> Item:
    name = "cron command"
    if not command.startswith("/"):
        return failed(
            name,
            f"{command!r} is not an absolute path: cron's PATH is only /usr/bin:/bin",
            f"use {expected}",
        )
    path = Path(command)
    if not path.exists():
        return failed(
            name,
            f"{command} does not exist: cron runs nothing, every minute, in silence",
            f"reinstall with install.sh, or point the entry at {expected}",
        )
    if not os.access(path, os.X_OK):
        return failed(name, f"{command} is not executable", f"chmod 0755 {command}")
    if path.resolve() != expected.resolve():
        return failed(
            name,
            f"{command} is not this installation's executable ({expected})",
            "reinstall with install.sh so the entry points at this installation",
        )
    return passed(name, f"{command} exists and is this installation's executable")


def check_cron_daemon() -> Item:
    name = "cron daemon"
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            comm = (pid_dir / "comm").read_text().strip()
        except OSError:
            continue
        if comm in ("cron", "crond"):
            return passed(name, f"{comm} is running (pid {pid_dir.name})")
    return failed(
        name,
        "no cron daemon is running: nothing will run check-status",
        "start it: systemctl enable --now cron (or run 'cron' where there is no systemd)",
    )


def check_env_file(path: Path | None) -> Item:
    name = "env file"
    if path is None:
        return warned(
            name, "no env file: running on defaults", "run install.sh, or pass --env-file PATH"
        )
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as error:
        return failed(
            name, f"{path}: {error.strerror or error}", "run install.sh, or pass --env-file PATH"
        )
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return failed(
            name,
            f"{path} is mode {mode:04o}: other users can change where alerts go",
            f"chmod 0600 {path}",
        )
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        # Only a file that holds a secret must be private: a 0644 file of
        # thresholds and URLs is fine, and failing it would teach to ignore FAILs.
        from check_status.config import secret_keys_in

        try:
            secrets = secret_keys_in(path)
        except OSError:
            secrets = ["TWILIO_AUTH_TOKEN"]  # cannot tell: assume the worst
        if secrets:
            what = "the Twilio token" if "TWILIO_AUTH_TOKEN" in secrets else "a secret"
            return failed(
                name,
                f"{path} is mode {mode:04o}: other users can read {what} in it"
                f" ({', '.join(secrets)})",
                f"chmod 0600 {path}",
            )
        return passed(name, f"{path} is mode {mode:04o}; it holds no secret")
    return passed(name, f"{path} is mode {mode:04o}")


# --- the files that hold a secret -----------------------------------------

_SECRET_FILE_NAMES = {
    "TWILIO_AUTH_TOKEN_FILE": ("token file", "the Twilio token"),
    "HEARTBEAT_URL_FILE": ("heartbeat URL file", "the heartbeat URL"),
}


def secret_file_items(config: Config) -> list[Item]:
    """Each *_FILE key's file must be private to its owner; then who can read what.

    The mode is checked even where load() did not read the file: a token others
    can read is a leak whoever runs the check.
    """
    items = []
    for key, path in config.secret_files.items():
        name, what = _SECRET_FILE_NAMES[key]
        try:
            info = os.stat(path)
        except OSError as error:
            items.append(failed(name, f"{path}: {error.strerror or error}", f"fix {key}"))
            continue
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            verb = "read" if mode & (stat.S_IRGRP | stat.S_IROTH) else "change"
            items.append(
                failed(
                    name,
                    f"{path} ({key}) is mode {mode:04o}: other users can {verb} {what} in it",
                    f"chmod 600 {path}",
                )
            )
        else:
            items.append(passed(name, f"{path} ({key}) is mode {mode:04o}"))
    readers = readers_item(config)
    if readers is not None:
        items.append(readers)
    return items


def readers_item(config: Config) -> Item | None:
    """One line: which users can read the env file and each secret file.

    So an operator sees at once whether a monitoring user (nagios) can read the
    settings while the token stays private. By the file's own mode and owner:
    the directories above it are not looked at.
    """
    from check_status.config import secret_keys_in

    files: list[tuple[str, bool]] = []  # (path, holds a secret)
    if config.env_file:
        try:
            holds = bool(secret_keys_in(Path(config.env_file)))
        except OSError:
            holds = True  # cannot tell: assume the worst
        files.append((config.env_file, holds))
    files += [(path, True) for path in config.secret_files.values()]
    if not files:
        return None
    parts = []
    leaking = []
    for path, holds in files:
        try:
            info = os.stat(path)
        except OSError as error:
            parts.append(f"{path}: {error.strerror or error}")
            continue
        who = _who_can_read(info)
        if holds and not who.endswith(" only"):
            leaking.append(path)
        parts.append(
            f"{path} is readable by {who} ({stat.S_IMODE(info.st_mode):04o} "
            f"{_owner_names(info.st_uid, info.st_gid)})"
        )
    detail = "; ".join(parts)
    if leaking:
        fix = f"chmod 600 {' '.join(leaking)}"
        if config.env_file in leaking:
            fix += (
                "; or, for other users to read the settings, move the token into a file"
                " of its own, named by TWILIO_AUTH_TOKEN_FILE"
            )
        return warned("readers", detail, fix)
    return passed("readers", detail)


def _who_can_read(info: os.stat_result) -> str:
    mode = info.st_mode
    if mode & stat.S_IROTH:
        return "everyone"
    owner, group = _owner_names(info.st_uid, info.st_gid).split(":", 1)
    if mode & stat.S_IRGRP:
        return f"{owner} and group {group}" if mode & stat.S_IRUSR else f"group {group}"
    if mode & stat.S_IRUSR and info.st_uid != 0:
        return f"{owner} only"
    return "root only"


def _owner_names(uid: int, gid: int) -> str:
    from check_status.config import owner_names

    return owner_names(uid, gid)


def misnamed_siblings(cron_dir: Path, own_file: Path | None) -> list[Item]:
    """Other files in the cron directory that mention check-status but that cron
    would ignore: exactly the "misnamed file" of the original incident."""
    items = []
    try:
        entries = sorted(cron_dir.iterdir())
    except OSError:
        return items
    for path in entries:
        if (own_file is not None and path == own_file) or not path.is_file():
            continue
        try:
            text = path.read_text(errors="replace")[:65536]
        except OSError:
            continue
        if not MENTIONS.search(text) and not MENTIONS.search(path.name):
            continue
        reasons = []
        if not CRON_NAME.fullmatch(path.name):
            reasons.append("its name has a character cron ignores (a dot?)")
        info = path.stat()
        if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            reasons.append("its owner or mode makes cron skip it")
        runs_a_job = any(_is_job(line) and MENTIONS.search(line) for line in text.splitlines())
        if not reasons and runs_a_job:
            items.append(
                failed(
                    "second cron file",
                    f"{path} also runs check-status: with {own_file} it would run twice a minute",
                    f"remove one of them (rm {path})",
                )
            )
        if reasons:
            items.append(
                failed(
                    "misnamed cron file",
                    f"{path} mentions check-status but cron never runs it: {'; '.join(reasons)}",
                    f"remove it (rm {path}) and keep the entry install.sh writes",
                )
            )
    return items


def cron_entry_exists(cron_file: Path) -> bool:
    lines = read_user_crontab() or []
    return cron_file.exists() or any(_is_job(line) and MENTIONS.search(line) for line in lines)


def read_user_crontab() -> list[str] | None:
    """The invoking user's crontab lines, or None when they have none."""
    try:
        done = subprocess.run(["crontab", "-l"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.splitlines() if done.returncode == 0 else None


def verify_installation(
    cron_file: Path,
    env_file: Path | None,
    expected_executable: Path,
    cron_dir: Path | None = None,
) -> Iterator[Item]:
    """The shared verification: the cron file (or the user's crontab), cron, the env file.

    With `cron_dir` (install.sh --check passes /etc/cron.d) a cron file outside
    it FAILs: cron reads no other directory. Without it, where the file lies is
    not checked (the unit tests' cron files live in a temporary directory).
    """
    user_lines = read_user_crontab()
    user_entries = [ln for ln in user_lines or [] if _is_job(ln) and MENTIONS.search(ln)]
    if cron_file.exists() or not user_entries:
        yield from check_cron_file(cron_file)
        misplaced = check_cron_location(cron_file, cron_dir) if cron_dir else None
        if misplaced is not None and cron_file.exists():
            yield misplaced
        if cron_file.exists():
            lines = cron_file.read_text(errors="replace").splitlines()
            yield from check_entries(lines, expected_executable, system=True, where=str(cron_file))
        if user_entries:
            yield failed(
                "cron entry",
                f"a check-status entry is in {cron_file} and in your crontab too",
                "keep one: crontab -e, or install.sh --uninstall --user",
            )
    else:
        yield from check_entries(
            user_lines or [], expected_executable, system=False, where="your crontab"
        )
    yield check_cron_daemon()
    yield check_env_file(env_file)
    yield from misnamed_siblings(cron_dir or cron_file.parent, cron_file)


def freshness(
    last_run: datetime | None,
    installed_at: datetime | None,
    now: datetime,
    entry_exists: bool = True,
    last_hand_run: datetime | None = None,
    *,
    grace: bool = True,
) -> Item:
    """The local proof that cron really runs it: the state file's last scheduled run is recent.

    `last_run` is the last run without a terminal (cron's); a run typed by an
    operator (`last_hand_run`) proves nothing about the schedule and is only named.

    With `grace` (self-test) a run not yet come in the two minutes after install
    is a WARN. Without it (install.sh --check) it FAILs: until cron has run the
    job once, nothing proves that it will.
    """
    name = "freshness"
    by_hand = (
        f"; the run by hand {human_duration(max((now - last_hand_run).total_seconds(), 0))} ago does not count"
        if last_hand_run is not None and (last_run is None or last_hand_run > last_run)
        else ""
    )
    if not entry_exists:
        if not grace:
            return failed(name, "no cron entry, so cron never runs check-status", "run install.sh")
        return warned(name, "no cron entry, so nothing to prove yet", "run install.sh")
    if installed_at is not None and (last_run is None or last_run < installed_at):
        since_install = (now - installed_at).total_seconds()
        if since_install < 120 and not grace:
            return failed(
                name,
                f"cron has not run check-status yet (installed {human_duration(since_install)}"
                " ago); wait a minute and run ./install.sh --check again",
                "",
            )
        if since_install < 120:
            wait = 120 - since_install
            return warned(
                name,
                f"installed {human_duration(since_install)} ago; cron's first run comes at the next minute",
                f"wait {human_duration(wait)} and run check-status self-test again",
            )
    if last_run is None:
        return failed(
            name,
            f"installed but not running: no scheduled run recorded in the state file{by_hand}",
            "check the cron entry and /var/log/check-status.log; is cron running?",
        )
    age = (now - last_run).total_seconds()
    if age > 180:
        return failed(
            name,
            f"installed but not running: the last scheduled run was {human_duration(age)} ago{by_hand}",
            "check the cron entry, the cron daemon and the log file named in the entry",
        )
    return passed(name, f"last scheduled run {human_duration(max(age, 0))} ago")


def state_freshness(
    config: Config, expected_executable: Path, now: datetime, *, grace: bool = True
) -> Item:
    """`freshness` of the installation `config` describes, read from its state file.

    The install time is the cron file's mtime (install.sh rewrites it), or the
    executable's for a crontab entry.
    """
    from check_status.model import recorded_at
    from check_status.state import StateStore

    state, _problem = StateStore(
        config.state_file, config.state_fallback_dir, config.env_file
    ).read_only()
    last_scheduled_run = recorded_at(state.get("last_scheduled_run"))
    last_run = recorded_at(state.get("last_run"))
    last_hand_run = last_run if last_run != last_scheduled_run else None
    installed_at = None
    for marker in (Path(config.cron_file), expected_executable):
        try:
            # To the second, as the state file records a run: a run in the
            # same second as the install came after it.
            mtime = int(marker.stat().st_mtime)
            installed_at = datetime.fromtimestamp(mtime, tz=now.tzinfo)
            break
        except OSError:
            continue
    return freshness(
        last_scheduled_run,
        installed_at,
        now,
        cron_entry_exists(Path(config.cron_file)),
        last_hand_run,
        grace=grace,
    )


def install_check(
    env_file: Path, expected_executable: Path, now: datetime, cron_dir: Path, *, fresh: bool = True
) -> list[Item]:
    """What install.sh --check runs: the installation items, then freshness (FAIL, no grace).

    `fresh=False` (install.sh itself, right after writing the entry) skips
    freshness and says so in a SKIP line: cron cannot have run the job yet.
    """
    from check_status.config import ConfigError, load

    items: list[Item] = []
    try:
        config = load(str(env_file))
    except ConfigError as error:
        items.append(failed("config", str(error), f"fix the value in {env_file}"))
        cron_file = Path(os.environ.get("CRON_FILE") or CRON_DIR / "check-status")
        items += verify_installation(cron_file, env_file, expected_executable, cron_dir)
        items.append(
            failed("freshness", "not checked: the config does not load", "fix the config first")
        )
        return items
    if cron_dir.resolve() != CRON_DIR:
        items.append(
            warned(
                "cron directory",
                f"{cron_dir} stands in for {CRON_DIR} (CRON_D, for tests): "
                f"cron itself reads only {CRON_DIR}",
            )
        )
    items += verify_installation(Path(config.cron_file), env_file, expected_executable, cron_dir)
    items += secret_file_items(config)
    if fresh:
        items.append(state_freshness(config, expected_executable, now, grace=False))
    else:
        items.append(
            Item(
                "freshness",
                "SKIP",
                "NOT CHECKED: cron has not had its first minute yet; "
                "in a minute run ./install.sh --check, which fails until cron has run it",
            )
        )
    return items


def main(argv: list[str] | None = None) -> int:
    """`python -m check_status.installation`: install.sh --check's items, then a summary."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m check_status.installation")
    parser.add_argument("--env-file", required=True, type=Path)
    parser.add_argument("--expect-executable", required=True, type=Path)
    parser.add_argument("--cron-dir", type=Path, default=CRON_DIR)
    parser.add_argument("--no-freshness", action="store_true")
    args = parser.parse_args(argv)
    items = install_check(
        args.env_file,
        args.expect_executable,
        datetime.now(UTC),
        args.cron_dir,
        fresh=not args.no_freshness,
    )
    for item in items:
        print(item.line())
    failures = sum(1 for item in items if item.result == "FAIL")
    warnings = sum(1 for item in items if item.result == "WARN")
    skipped = sum(1 for item in items if item.result == "SKIP")
    passes = len(items) - failures - warnings - skipped
    print(f"check: {failures} FAIL, {warnings} WARN, {skipped} SKIP, {passes} PASS")
    return int(Status.CRITICAL) if failures else 0


def worst_result(items: list[Item]) -> Status:
    results = {item.result for item in items}
    return (
        Status.CRITICAL if "FAIL" in results else Status.WARNING if "WARN" in results else Status.OK
    )


if __name__ == "__main__":
    sys.exit(main())
