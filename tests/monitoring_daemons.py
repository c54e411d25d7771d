"""Real monitoring daemons (Nagios 4, NRPE, Icinga 2) around check-status's plugin mode.

The configuration they run is taken from docs/nagios.md, so the page is what is
tested: each block there follows a `<!-- snippet: NAME -->` marker, and the
tests replace only the paths and the port the page says they replace.

The daemons run as the `nagios` user, which can enter neither root's pytest
tmp dirs (0700) nor a Python under /root, so everything they touch lives in a
world-searchable directory of its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "nagios.md"
# What the page writes, and the tests replace (the page says so).
DOC_INSTALL_DIR = "/opt/check-status"
DOC_CONFIG_DIR = "/etc/check-status"
DOC_NRPE_PORT = "5666"

MONITORING_USER = "nagios"
NAGIOS4 = ("/usr/sbin/nagios4", "nagios4")
NRPE = ("/usr/sbin/nrpe", "nagios-nrpe-server")
CHECK_NRPE = ("/usr/lib/nagios/plugins/check_nrpe", "nagios-nrpe-plugin")
ICINGA2 = ("/usr/sbin/icinga2", "icinga2")

_SNIPPET = re.compile(r"<!-- snippet: ([\w-]+) -->\n```[^\n]*\n(.*?)\n```", re.S)


def require(binary: tuple[str, str]) -> str:
    """The daemon's path; a missing one fails the test (a skip would hide that the
    integration is untested), saying which Debian package brings it."""
    path, package = binary
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"{path} is missing: install the Debian package {package} (tests/run-all.sh does)"
        )
    return path


def snippets() -> dict[str, str]:
    found = dict(_SNIPPET.findall(DOC.read_text()))
    assert found, f"no `<!-- snippet: NAME -->` blocks in {DOC}"
    return found


def snippet(name: str, install_dir: Path, config_dir: Path, nrpe_port: int | None = None) -> str:
    """A block of docs/nagios.md with the page's paths (and port) replaced by the test's own."""
    text = snippets()[name]
    text = text.replace(DOC_INSTALL_DIR, str(install_dir)).replace(DOC_CONFIG_DIR, str(config_dir))
    if nrpe_port is not None:
        assert DOC_NRPE_PORT in text, f"snippet {name} names no port {DOC_NRPE_PORT}"
        text = text.replace(DOC_NRPE_PORT, str(nrpe_port))
    return text


def world_dir(prefix: str) -> Path:
    """A fresh directory under /tmp that the monitoring user can enter (0755)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def owned_by_monitoring_user(*paths: Path) -> None:
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
        shutil.chown(path, MONITORING_USER, MONITORING_USER)


def install_for_monitoring_user(target: Path) -> Path:
    """Install check-status from this work tree into a venv of the system Python,
    as an operator would for a monitoring user; the check-status script's path.

    /usr/bin/python3 rather than the test venv's Python, which may sit under
    /root where `nagios` cannot execute it. check-status itself is built and
    installed by pip from the work tree; its dependencies are copied, file by
    file as their RECORD lists them, from the test venv, which already holds
    them: resolving them again against an index took 10 to 25 s a session.
    """
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(target)], check=True)
    python = target / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    for dist in _dependencies("check-status"):
        for file in dist.files or ():
            if file.parts[0] == "..":  # a script of its own, under bin/
                continue
            source = Path(str(dist.locate_file(file)))
            if source.is_file():
                destination = Path(site) / file
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination)
    pip = REPO / ".venv" / "bin" / "pip"
    installed = subprocess.run(
        [
            str(pip),
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-compile",
            str(REPO),
        ],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, f"pip install of the work tree failed:\n{installed.stderr}"
    subprocess.run(["chmod", "-R", "go+rX", str(target)], check=True)
    script = target / "bin" / "check-status"
    assert script.exists(), f"pip installed no {script}"
    return script


def _dependencies(name: str) -> list[metadata.Distribution]:
    """The installed distributions `name` needs, recursively (not `name` itself)."""
    found: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in metadata.requires(name) or ()]
    while todo:
        requirement = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        dist = metadata.distribution(requirement.name)
        key = dist.metadata["Name"].lower()
        if key not in found:
            found[key] = dist
            todo.extend(Requirement(r) for r in dist.requires or ())
    return list(found.values())


def run_as_monitoring_user(
    args: list[str], timeout: float = 30, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        user=MONITORING_USER,
        group=MONITORING_USER,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        cwd="/",
        **kwargs,  # type: ignore[arg-type]
    )


def processes_mentioning(marker: str) -> list[str]:
    """`pgrep -af` of everything whose command line names `marker` (a tmp path)."""
    found = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True)
    mine = str(os.getpid())
    return [line for line in found.stdout.splitlines() if line.split(" ", 1)[0] != mine]


class Daemon:
    """A daemon started in the foreground as our child, stopped by its PID."""

    def __init__(self, args: list[str], log: Path, marker: str) -> None:
        self.args = args
        self.log = log
        self.marker = marker
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        with self.log.open("wb") as out:
            # A session of its own, so a Ctrl-C of pytest does not reach it
            # first, and its workers are one process group to reap.
            self.process = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        # Workers (Nagios's, Icinga's) leave right after their parent; give them
        # a moment, then end any left in the daemon's own process group only.
        deadline = time.monotonic() + 5
        while processes_mentioning(self.marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if processes_mentioning(self.marker):
                os.killpg(self.process.pid, signal.SIGKILL)


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --- Nagios's status.dat ---------------------------------------------------------------


def status_blocks(status_dat: Path, kind: str) -> Iterator[dict[str, str]]:
    """The `kind {` blocks of a Nagios status.dat, as key -> raw value."""
    block: dict[str, str] | None = None
    for line in status_dat.read_text(errors="replace").splitlines():
        stripped = line.strip()
        if stripped == f"{kind} {{":
            block = {}
        elif stripped == "}" and block is not None:
            yield block
            block = None
        elif block is not None and "=" in stripped:
            key, _, value = stripped.partition("=")
            block[key] = value


def unescape_status(value: str) -> str:
    """status.dat writes a newline of long output as `\\n` and a backslash as `\\\\`."""
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)
