"""check-status's plugin mode inside real Nagios 4, NRPE and Icinga 2 daemons.

Each daemon runs with a private configuration made of docs/nagios.md's blocks,
as the `nagios` user, against the loopback nodeos stand-in, and is stopped by
its PID at the end of its test, which then asserts that nothing of it is left.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.monitoring_daemons import (
    CHECK_NRPE,
    ICINGA2,
    MONITORING_USER,
    NAGIOS4,
    NRPE,
    Daemon,
    install_for_monitoring_user,
    owned_by_monitoring_user,
    processes_mentioning,
    require,
    run_as_monitoring_user,
    snippet,
    status_blocks,
    unescape_status,
    wait_for,
    world_dir,
)
from tests.standins import HangingServer, NodeosStandIn, free_port

STATES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
LINE_ONE = re.compile(r"^CHECK-STATUS (OK|WARNING|CRITICAL|UNKNOWN) - (.+?)(?: \| (.*))?$")
CHECK_LINE = re.compile(r"^\[(OK|WARNING|CRITICAL|UNKNOWN)\] ([\w:./-]+): ")
PERF_ITEM = re.compile(r"'((?:[^']|'')+)'=(U|-?\d+(?:\.\d+)?)([a-zA-Z%]*)((?:;[^;\s]*){0,4})")
NRPE_V2_LIMIT = 1023


@dataclass(frozen=True)
class Installation:
    root: Path  # stands for the page's /opt/check-status
    script: Path


@pytest.fixture(scope="session")
def installation() -> Iterator[Installation]:
    """check-status installed once per session where `nagios` can run it."""
    root = world_dir("check-status-plugin.")
    started = time.monotonic()
    script = install_for_monitoring_user(root / "venv")
    print(f"installation for {MONITORING_USER}: {time.monotonic() - started:.1f} s")
    yield Installation(root / "venv", script)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def plugin_memory() -> Iterator[Path]:
    """The plugin keeps its memory in the monitoring user's real home; a test
    starts without one and leaves the home as it found it."""
    home = Path(os.path.expanduser(f"~{MONITORING_USER}"))
    memory = home / ".local" / "state" / "check-status" / "plugin.json"
    before = memory.read_bytes() if memory.exists() else None
    memory.unlink(missing_ok=True)
    yield memory
    if before is None:
        memory.unlink(missing_ok=True)
    else:
        memory.write_bytes(before)


@dataclass
class Node:
    """The page's /etc/check-status: an env file readable by `nagios`, a 0600 token."""

    config_dir: Path
    env_file: Path

    def write(self, **settings: object) -> None:
        values: dict[str, object] = {
            "NODE_NAME": "eos-node-1",
            "DISK_PATHS": str(self.config_dir),
            # cron's state, which the plugin must never touch (asserted below)
            "STATE_FILE": str(self.config_dir / "cron-state" / "state.json"),
            "TWILIO_AUTH_TOKEN_FILE": str(self.config_dir / "twilio-token"),
        }
        values.update(settings)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        self.env_file.chmod(0o644)


@pytest.fixture
def node(plugin_memory: Path) -> Iterator[Node]:
    config_dir = world_dir("check-status-conf.")
    token = config_dir / "twilio-token"
    token.write_text("0123456789abcdef0123456789abcdef\n")
    token.chmod(0o600)  # root's alone: the plugin must not need it
    yield Node(config_dir, config_dir / "check-status.env")
    assert not (config_dir / "cron-state").exists(), "the plugin touched cron's state"
    shutil.rmtree(config_dir, ignore_errors=True)


@pytest.fixture
def healthy_nodeos() -> Iterator[NodeosStandIn]:
    with NodeosStandIn(db_size_enabled=True) as standin:
        yield standin


def run_plugin(
    installation: Installation, node: Node, *extra: str
) -> subprocess.CompletedProcess[str]:
    """The plugin run by hand as `nagios`: the reference for what a daemon shows."""
    return run_as_monitoring_user(
        [str(installation.script), "nagios", "--env-file", str(node.env_file), *extra]
    )


def perf_labels(perfdata: str) -> dict[str, str]:
    return {m.group(1).replace("''", "'"): m.group(2) for m in PERF_ITEM.finditer(perfdata)}


def masked(text: str) -> str:
    """Numbers masked: two runs a second apart differ in timings, not in shape."""
    return re.sub(r"\d+(?:\.\d+)?", "N", text)


def assert_answer(
    state: str, line_one: str, long_output: str, perfdata: str, labels: set[str] | None
) -> None:
    match = LINE_ONE.match(line_one if not perfdata else f"{line_one} | {perfdata}")
    assert match, f"not a CHECK-STATUS line: {line_one!r}"
    assert match.group(1) == state, line_one
    check_lines = [line for line in long_output.splitlines() if not line.startswith("note: ")]
    assert check_lines, f"no long output: {long_output!r}"
    for line in check_lines:
        assert CHECK_LINE.match(line), f"long output line not `[STATE] check: ...`: {line!r}"
    if labels is not None:
        found = perf_labels(perfdata)
        missing = labels - set(found)
        assert not missing, f"perfdata lacks {sorted(missing)}: {perfdata!r}"


def expected_labels(node: Node, endpoints: list[str]) -> set[str]:
    labels = {"nodeos_response", "head_lag", "lib_lag", "state_db", f"disk:{node.config_dir}"}
    for url in endpoints:
        host = url.split("://", 1)[1]
        labels |= {f"endpoint:{host}:response", f"endpoint:{host}:head_lag"}
    return labels


# --- Nagios 4 ----------------------------------------------------------------------------


_NAGIOS_OBJECTS = """\
define command {
    command_name notify-nobody
    command_line /bin/true
}
define timeperiod {
    timeperiod_name 24x7
    alias           always
    sunday          00:00-24:00
    monday          00:00-24:00
    tuesday         00:00-24:00
    wednesday       00:00-24:00
    thursday        00:00-24:00
    friday          00:00-24:00
    saturday        00:00-24:00
}
define contact {
    contact_name                  nobody
    host_notifications_enabled    0
    service_notifications_enabled 0
    host_notification_period      24x7
    service_notification_period   24x7
    host_notification_options     n
    service_notification_options  n
    host_notification_commands    notify-nobody
    service_notification_commands notify-nobody
}
define host {
    host_name             eos-node-1
    address               127.0.0.1
    max_check_attempts    1
    check_period          24x7
    contacts              nobody
    notification_interval 0
    notification_period   24x7
}
# Debian's generic-service (/etc/nagios4/objects/templates.cfg) in short; a
# long check_interval, so only the forced checks of the test run.
define service {
    name                  generic-service
    register              0
    check_period          24x7
    check_interval        600
    retry_interval        600
    max_check_attempts    1
    contacts              nobody
    notification_interval 0
    notification_period   24x7
}
"""


def _nagios_cfg(d: Path) -> str:
    return f"""\
log_file={d}/var/nagios.log
cfg_file={d}/objects.cfg
object_cache_file={d}/var/objects.cache
precached_object_file={d}/var/objects.precache
status_file={d}/var/status.dat
status_update_interval=1
nagios_user=nagios
nagios_group=nagios
check_external_commands=1
command_file={d}/rw/nagios.cmd
query_socket={d}/rw/nagios.qh
lock_file={d}/var/nagios.lock
temp_file={d}/var/nagios.tmp
temp_path={d}/var
check_result_path={d}/var/checkresults
check_result_reaper_frequency=1
retain_state_information=0
use_syslog=0
enable_notifications=0
enable_flap_detection=0
log_rotation_method=n
illegal_macro_output_chars=`~$&|'"<>
"""


class Nagios:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.status = directory / "var" / "status.dat"
        self.command_file = directory / "rw" / "nagios.cmd"
        self.daemon = Daemon(
            [require(NAGIOS4), str(directory / "nagios.cfg")],
            directory / "daemon.out",
            str(directory),
        )
        self.last_check = 0

    def service(self) -> dict[str, str]:
        if not self.status.exists():
            return {}
        for block in status_blocks(self.status, "servicestatus"):
            if block.get("service_description") == "check-status":
                return block
        return {}

    def forced_check(self, timeout: float = 20) -> dict[str, str]:
        """Force the service's check now; its status once a newer result is in."""
        # last_check has whole seconds: a result of the same second as the
        # last one would not be told apart from it.
        while int(time.time()) <= self.last_check:
            time.sleep(0.05)
        now = int(time.time())
        line = f"[{now}] SCHEDULE_FORCED_SVC_CHECK;eos-node-1;check-status;{now}\n"
        # The FIFO is open for reading by Nagios; O_NONBLOCK so a dead Nagios
        # fails here instead of hanging the test.
        fd = os.open(self.command_file, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

        def fresh() -> dict[str, str] | None:
            assert self.daemon.alive(), f"nagios4 exited:\n{self.daemon.output()}"
            status = self.service()
            return status if int(status.get("last_check", "0")) >= now else None

        status = wait_for(fresh, timeout, "Nagios's check result in status.dat")
        assert isinstance(status, dict)
        self.last_check = int(status["last_check"])
        return status


@pytest.fixture
def nagios(installation: Installation, node: Node) -> Iterator[Nagios]:
    directory = world_dir("check-status-nagios.")
    owned_by_monitoring_user(
        directory / "rw", directory / "var", directory / "var" / "checkresults"
    )
    (directory / "nagios.cfg").write_text(_nagios_cfg(directory))
    objects = [
        _NAGIOS_OBJECTS,
        snippet("nagios-command", installation.root, node.config_dir),
        snippet("nagios-service", installation.root, node.config_dir),
    ]
    (directory / "objects.cfg").write_text("\n".join(objects) + "\n")
    verified = subprocess.run(
        [require(NAGIOS4), "-v", str(directory / "nagios.cfg")], capture_output=True, text=True
    )
    if verified.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"nagios4 -v refuses the page's blocks:\n{verified.stdout}")
    server = Nagios(directory)
    server.daemon.start()
    try:
        wait_for(lambda: server.command_file.is_fifo(), 15, "Nagios's command file")
        yield server
    finally:
        server.daemon.stop()
        left = processes_mentioning(str(directory))
        shutil.rmtree(directory, ignore_errors=True)
        assert not left, f"nagios4 processes left after its stop: {left}"


def test_nagios_runs_the_plugin_as_nagios_and_keeps_each_state(
    nagios: Nagios,
    node: Node,
    healthy_nodeos: NodeosStandIn,
    installation: Installation,
) -> None:
    endpoint = healthy_nodeos.url
    labels = expected_labels(node, [endpoint])
    scenarios: list[tuple[str, Callable[[], None], bool]] = [
        ("OK", lambda: None, True),
        # between HEAD_LAG_WARN_SECONDS (15) and HEAD_LAG_CRIT_SECONDS (60)
        ("WARNING", lambda: healthy_nodeos.configure(head_lag_seconds=30), True),
        # patroneos's 503 in front of nodeos: every nodeos value becomes U
        ("CRITICAL", lambda: healthy_nodeos.configure(mode="patroneos"), True),
        # a setting the plugin cannot use: no checks ran, so no perfdata promise
        (
            "UNKNOWN",
            lambda: node.write(NODEOS_URL=healthy_nodeos.url, HEAD_LAG_WARN_SECONDS="soon"),
            False,
        ),
    ]
    node.write(NODEOS_URL=healthy_nodeos.url, ENDPOINTS=endpoint)
    for state, arrange, with_perfdata in scenarios:
        arrange()
        status = nagios.forced_check()
        output = status["plugin_output"]
        long_output = unescape_status(status["long_plugin_output"])
        perfdata = status["performance_data"]
        assert status["current_state"] == str(STATES.index(state)), (state, output)
        assert output.startswith(f"CHECK-STATUS {state} - "), output
        if state == "UNKNOWN":
            assert "HEAD_LAG_WARN_SECONDS" in output, output
            continue
        assert_answer(state, output, long_output, perfdata, labels if with_perfdata else None)
        if state == "CRITICAL":
            values = perf_labels(perfdata)
            assert values["head_lag"] == "U" and values["nodeos_response"] == "U", perfdata
        # `;` survives in perfdata (the thresholds), and Nagios changed nothing
        # in the text: the same answer, run by hand, has the same shape.
        if state != "CRITICAL":
            assert re.search(r"'head_lag'=[^ ]*;~:15;~:60", perfdata), perfdata
        by_hand = run_plugin(installation, node)
        hand_lines = by_hand.stdout.rstrip("\n").split("\n")
        hand_text = hand_lines[0].split(" | ", 1)[0]
        assert masked(output) == masked(hand_text), (output, hand_text)
        assert masked(long_output.rstrip("\n")) == masked("\n".join(hand_lines[1:])), by_hand.stdout


# --- NRPE ----------------------------------------------------------------------------------


class NrpeServer:
    def __init__(self, installation: Installation, node: Node) -> None:
        self.directory = world_dir("check-status-nrpe.")
        self.port = free_port()
        config = "\n".join(
            [
                snippet("nrpe-cfg", installation.root, node.config_dir, self.port),
                f"pid_file={self.directory}/nrpe.pid",
                snippet("nrpe-command", installation.root, node.config_dir),
            ]
        )
        (self.directory / "nrpe.cfg").write_text(config + "\n")
        self.check_nrpe = shlex.split(
            snippet("check-nrpe", installation.root, node.config_dir, self.port)
        )
        assert self.check_nrpe[0] == require(CHECK_NRPE), self.check_nrpe
        self.daemon = Daemon(
            [require(NRPE), "-c", str(self.directory / "nrpe.cfg"), "-f"],
            self.directory / "daemon.out",
            str(self.directory),
        )

    def listening(self) -> bool:
        assert self.daemon.alive(), f"nrpe exited:\n{self.daemon.output()}"
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def ask(self, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
        """check_nrpe as the Nagios server would run it (as `nagios`), and how long it took."""
        started = time.monotonic()
        answer = run_as_monitoring_user([*self.check_nrpe, *extra], timeout=30)
        return answer, time.monotonic() - started


@pytest.fixture
def nrpe(installation: Installation, node: Node) -> Iterator[NrpeServer]:
    server = NrpeServer(installation, node)
    server.daemon.start()
    try:
        wait_for(server.listening, 15, "NRPE listening")
        yield server
    finally:
        server.daemon.stop()
        left = processes_mentioning(str(server.directory))
        shutil.rmtree(server.directory, ignore_errors=True)
        assert not left, f"nrpe processes left after its stop: {left}"


def test_nrpe_v3_and_v2_packets_carry_line_one_whole(
    nrpe: NrpeServer, node: Node, healthy_nodeos: NodeosStandIn
) -> None:
    node.write(NODEOS_URL=healthy_nodeos.url, ENDPOINTS=healthy_nodeos.url)
    answer, _ = nrpe.ask()
    lines = answer.stdout.rstrip("\n").split("\n")
    text, _, perfdata = lines[0].partition(" | ")
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert_answer(
        "OK", text, "\n".join(lines[1:]), perfdata, expected_labels(node, [healthy_nodeos.url])
    )

    # Many problems at once (endpoints refusing connections, disks over their
    # warning threshold): NRPE cuts a v2 answer at 1,023 bytes, so line 1 must
    # fit whole, long output going first. With a few of each, the text is
    # shortened and every perfdata label still arrives.
    v2 = many_problems(nrpe, node, healthy_nodeos, endpoints=5, disks=4)
    assert set(perf_labels(v2.line)) == v2.labels, v2.line
    assert v2.whole_answer_bytes > NRPE_V2_LIMIT, "too few problems to test v2's cut"
    # With a dozen of each even the perfdata cannot fit: items are dropped
    # whole, never cut midway, and nodeos's own come first.
    v2 = many_problems(nrpe, node, healthy_nodeos, endpoints=12, disks=12)
    assert set(perf_labels(v2.line)) < v2.labels, v2.line
    assert {"nodeos_response", "head_lag", "lib_lag", "state_db"} <= set(perf_labels(v2.line))


@dataclass(frozen=True)
class V2Answer:
    line: str
    labels: set[str]  # the labels the plugin promises for this configuration
    whole_answer_bytes: int  # what a v3 peer got, long output included


def many_problems(
    nrpe: NrpeServer, node: Node, nodeos: NodeosStandIn, endpoints: int, disks: int
) -> V2Answer:
    refusing = [f"http://127.0.0.1:{free_port()}" for _ in range(endpoints)]
    paths = []
    for number in range(disks):
        path = node.config_dir / f"data{number:02d}"
        path.mkdir(exist_ok=True)
        paths.append(str(path))
    node.write(
        NODEOS_URL=nodeos.url,
        ENDPOINTS=",".join(refusing),
        DISK_PATHS=",".join(paths),
        DISK_WARN_PERCENT=1,
        DISK_CRIT_PERCENT=100,
    )
    v3, _ = nrpe.ask()
    v2, _ = nrpe.ask("-2")
    assert v3.returncode == v2.returncode == 2, (v3.stdout, v2.stdout)
    assert len(v2.stdout.rstrip("\n").encode()) <= NRPE_V2_LIMIT, len(v2.stdout.encode())
    v3_line, v2_line = v3.stdout.split("\n", 1)[0], v2.stdout.split("\n", 1)[0]
    assert len(v3_line.encode()) <= NRPE_V2_LIMIT, len(v3_line.encode())
    # The text is shortened to make room by as much as this run's numbers
    # need, so the two runs share labels, not characters.
    assert set(perf_labels(v2_line)) == set(perf_labels(v3_line)), (v2_line, v3_line)
    text, _, perfdata = v2_line.partition(" | ")
    assert text.startswith("CHECK-STATUS CRITICAL - "), text
    assert " / " in text and ";" not in text, text
    items = perfdata.split(" ")
    assert all(PERF_ITEM.fullmatch(item) for item in items), perfdata
    labels = {"nodeos_response", "head_lag", "lib_lag", "state_db"}
    labels |= {f"disk:{path}" for path in paths}
    for url in refusing:
        host = url.split("://", 1)[1]
        labels |= {f"endpoint:{host}:response", f"endpoint:{host}:head_lag"}
    return V2Answer(v2_line, labels, len(v3.stdout.encode()))


def test_nrpe_gets_a_hung_nodeos_answer_before_check_nrpe_gives_up(
    nrpe: NrpeServer, node: Node
) -> None:
    with HangingServer() as hung:
        # Each HTTP request alone could wait 20 s: only the page's `-t 8` may end it.
        node.write(NODEOS_URL=hung.url, HTTP_TIMEOUT_SECONDS=20)
        answer, elapsed = nrpe.ask()
    line = answer.stdout.split("\n", 1)[0]
    assert "CHECK_NRPE" not in answer.stdout, answer.stdout  # check_nrpe's own timeout
    assert answer.returncode == 2, answer.stdout + answer.stderr
    assert line.startswith("CHECK-STATUS CRITICAL - "), line
    assert "timeout" in line.split(" | ")[0], line
    # well within check_nrpe's 10 s, and far below the 20 s one request may take
    assert elapsed < 9.5, f"check_nrpe (10 s) got the answer only after {elapsed:.1f} s"


# --- Icinga 2 ------------------------------------------------------------------------------


def _icinga_conf(d: Path, command: str, service: str) -> str:
    return f"""\
const PluginDir = "/usr/lib/nagios/plugins"
const NodeName = "eos-monitor"
const ZoneName = "eos-monitor"
include <itl>
include <plugins>

{command}

{service}

object Host "eos-node-1" {{
  check_command = "dummy"
  address = "127.0.0.1"
  vars.nodeos = true
}}

object CheckerComponent "checker" {{ }}
object ExternalCommandListener "command" {{
  command_path = "{d}/run/icinga2/cmd/icinga2.cmd"
}}
object PerfdataWriter "perfdata" {{
  service_temp_path = "{d}/perf/service-perfdata"
  host_temp_path = "{d}/perf/host-perfdata"
  service_perfdata_path = "{d}/perf/done/service-perfdata"
  host_perfdata_path = "{d}/perf/done/host-perfdata"
  service_format_template = "SERVICE=$service.name$\\tSTATE=$service.state$\\tOUTPUT=$service.output$\\tPERF=$service.perfdata$"
  rotation_interval = 1s
}}
"""


def test_icinga_validates_the_page_and_runs_its_check(
    installation: Installation, node: Node, healthy_nodeos: NodeosStandIn
) -> None:
    icinga = require(ICINGA2)
    node.write(NODEOS_URL=healthy_nodeos.url, HEAD_LAG_WARN_SECONDS=1, HEAD_LAG_CRIT_SECONDS=600)
    healthy_nodeos.configure(head_lag_seconds=5)  # WARNING: shows the state travels too
    d = world_dir("check-status-icinga.")
    owned_by_monitoring_user(
        d / "data", d / "log", d / "cache", d / "spool", d / "run", d / "run" / "icinga2" / "cmd"
    )
    owned_by_monitoring_user(d / "perf", d / "perf" / "done")
    conf = _icinga_conf(
        d,
        snippet("icinga-command", installation.root, node.config_dir),
        snippet("icinga-service", installation.root, node.config_dir),
    )
    (d / "icinga2.conf").write_text(conf)
    # Its own paths for everything, so /etc/icinga2 and /var/lib/icinga2 stay untouched.
    args = [icinga, "daemon", "-c", str(d / "icinga2.conf")]
    for constant in ("DataDir", "LogDir", "CacheDir", "SpoolDir"):
        args.append(f"-D{constant}={d / constant.removesuffix('Dir').lower()}")
    args.append(f"-DInitRunDir={d / 'run'}")
    checked = subprocess.run([*args, "-C"], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, (
        f"icinga2 daemon -C refuses the page's blocks:\n{checked.stdout}"
    )
    assert "Instantiated 1 Service" in checked.stdout, checked.stdout

    daemon = Daemon(args, d / "daemon.out", str(d))
    daemon.start()
    try:
        command_pipe = d / "run" / "icinga2" / "cmd" / "icinga2.cmd"
        wait_for(command_pipe.is_fifo, 20, "Icinga's command pipe")
        now = int(time.time())
        fd = os.open(command_pipe, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(
                fd, f"[{now}] SCHEDULE_FORCED_SVC_CHECK;eos-node-1;check-status;{now}\n".encode()
            )
        finally:
            os.close(fd)

        def result() -> str | None:
            assert daemon.alive(), daemon.output()
            for path in (d / "perf" / "done").glob("service-perfdata*"):
                text = path.read_text(errors="replace")
                if "SERVICE=check-status" in text:
                    return text
            return None

        text = wait_for(result, 20, "Icinga's check result in its perfdata file")
    finally:
        daemon.stop()
        left = processes_mentioning(str(d))
        shutil.rmtree(d, ignore_errors=True)
    assert not left, f"icinga2 processes left after its stop: {left}"
    assert isinstance(text, str)
    assert "STATE=WARNING" in text, text
    assert "OUTPUT=CHECK-STATUS WARNING - " in text, text
    assert re.search(r"head_lag=[\d.]+s;~:1;~:600", text), text
