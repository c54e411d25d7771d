"""The state file is bounded and only ever a regular file (hostile-input trial, issue 7).

Real parts only: FIFOs made with os.mkfifo, /dev/zero itself, a unix socket,
sparse files of 100 MB, a real 1 MiB tmpfs, and one whole `check-status run`.
A hang is caught by running the call in a thread joined with a timeout, not by
timing it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from check_status.alerting.rules import (
    AlertState,
    CheckRecord,
    Incident,
    Kind,
    Notification,
    Silence,
    alert_state_from_json,
    alert_state_to_json,
)
from check_status.delivery import load_outbox
from check_status.model import Status, format_time
from check_status.state import (
    MAX_READ_BYTES,
    MAX_STATE_BYTES,
    SCHEMA_VERSION,
    LockUnavailable,
    StateError,
    StateRefused,
    StateStore,
    empty_state,
    load_state,
    load_state_readonly,
    run_lock,
    save_state,
    serialise,
)
from tests.standins import NodeosStandIn

NOW = datetime(2026, 11, 26, 6, 47, tzinfo=UTC)
HANG_TIMEOUT = 10.0  # a call not back by then is hung (a blocking FIFO open)
REPO = Path(__file__).resolve().parent.parent
PHONES = tuple(f"+1415555{n:04d}" for n in range(5))


def promptly(call: Callable[[], Any]) -> tuple[Any, float]:
    """(what `call` returned, its seconds), failing the test if it hangs."""
    box: dict[str, Any] = {}

    def work() -> None:
        started = time.monotonic()
        try:
            box["value"] = call()
        except BaseException as error:  # handed back to the test below
            box["error"] = error
        box["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(HANG_TIMEOUT)
    if thread.is_alive():
        pytest.fail(f"hung for more than {HANG_TIMEOUT:g}s")  # the daemon thread is abandoned
    if "error" in box:
        raise box["error"]
    return box.get("value"), box["seconds"]


def kind_of(path: str | Path) -> tuple[int, int]:
    """(file type, device number): what must be the same after the test."""
    info = os.lstat(path)
    return stat.S_IFMT(info.st_mode), info.st_rdev


@pytest.fixture
def fallback(tmp_path: Path) -> Path:
    directory = tmp_path / "fallback"
    directory.mkdir(mode=0o700)
    return directory


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "state.json"
    os.mkfifo(path)
    yield path
    assert stat.S_ISFIFO(os.lstat(path).st_mode), "the FIFO was replaced"


# --- a FIFO, /dev/zero, a socket at STATE_FILE --------------------------------------


def special_paths() -> list[Any]:
    return [
        pytest.param("fifo", "a FIFO (named pipe)", id="fifo"),
        pytest.param("/dev/zero", "a character device", id="dev-zero"),
        pytest.param("socket", "a socket", id="socket"),
        pytest.param("symlink-to-dev-zero", "a character device", id="symlink-to-dev-zero"),
    ]


def made_beside(path: Path) -> list[str]:
    """What a save or a move aside would leave next to `path`: temp files, the reserve,
    `<name>.corrupt-*`. (Only those: /dev itself changes under udev.)"""
    return sorted(
        name
        for name in os.listdir(path.parent)
        if name.startswith((f".{path.name}.", f"{path.name}.")) and name != f"{path.name}.lock"
    )


@pytest.fixture
def special(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    which = request.param
    home = tmp_path / "state"
    home.mkdir()
    path = home / "state.json"
    if which == "fifo":
        os.mkfifo(path)
    elif which == "socket":
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        request.addfinalizer(server.close)
    elif which == "symlink-to-dev-zero":
        path.symlink_to("/dev/zero")
    else:
        path = Path(which)
    before = kind_of(path)
    beside_before = made_beside(path)
    yield path
    assert kind_of(path) == before, f"{path} was replaced"
    assert made_beside(path) == beside_before  # no temp file, no reserve, nothing moved aside


def special_cases() -> Any:
    return pytest.mark.parametrize(("special", "kind"), special_paths(), indirect=["special"])


@special_cases()
def test_load_refuses_a_special_file_at_once_with_one_line(special: Path, kind: str) -> None:
    loaded, seconds = promptly(lambda: load_state(str(special), NOW))
    assert loaded.data == empty_state()
    assert loaded.warning == (
        f"state file {special} is {kind}, not a regular file: set STATE_FILE to a file path"
    )
    assert "\n" not in loaded.warning
    print(f"load refused {special} ({kind}) in {seconds * 1000:.2f} ms")


@special_cases()
def test_a_dry_run_and_status_refuse_it_the_same_way(special: Path, kind: str) -> None:
    loaded, _ = promptly(lambda: load_state(str(special), NOW, move_aside=False))
    assert loaded.warning == (
        f"state file {special} is {kind}, not a regular file: set STATE_FILE to a file path"
    )
    (data, problem), seconds = promptly(lambda: load_state_readonly(str(special)))
    assert data == empty_state()
    assert problem == loaded.warning
    print(f"status refused {special} in {seconds * 1000:.2f} ms")


@special_cases()
def test_save_refuses_to_touch_a_special_file(special: Path, kind: str) -> None:
    with pytest.raises(StateRefused) as raised:
        promptly(lambda: save_state(str(special), empty_state()))
    assert str(raised.value) == f"state file {special} not written ({kind})"


@special_cases()
def test_the_store_keeps_the_state_in_its_copy_and_reads_it_back(
    special: Path, kind: str, fallback: Path
) -> None:
    store = StateStore(str(special), str(fallback))
    loaded, _ = promptly(lambda: store.load(NOW))
    assert loaded.warning is not None and kind in loaded.warning
    loaded.data["memory"]["head_block"] = {"num": 7}
    promptly(lambda: store.save(loaded.data))
    assert store.where == "copy"
    # Refused before anything touched it: the load said why, the save says where.
    assert store.refused == loaded.warning
    assert store.problems == [f"the state is kept in {store.copy}, its lock beside it"]
    assert store.copy.parent == fallback
    # The next run (a new store) remembers: the copy is newer than the refused file.
    again = StateStore(str(special), str(fallback))
    loaded_again, _ = promptly(lambda: again.load(NOW))
    assert loaded_again.data["memory"]["head_block"] == {"num": 7}
    # `status` shows the copy, and still the problem: a device will not mend itself.
    (data, problem), _ = promptly(again.read_only)
    assert data["memory"]["head_block"] == {"num": 7}
    assert problem == loaded.warning


def test_dev_zero_is_never_read(tmp_path: Path) -> None:
    """/dev/zero grew a run to 1.5 GB in 2 s: not one byte of it is read now."""
    tracemalloc.start()
    try:
        loaded, seconds = promptly(lambda: load_state("/dev/zero", NOW))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "character device" in (loaded.warning or "")
    assert peak < 1024 * 1024, peak
    print(f"/dev/zero refused in {seconds * 1000:.2f} ms, tracemalloc peak {peak} bytes")


def test_a_fifo_in_place_of_the_copy_is_ignored_and_never_replaced(
    tmp_path: Path, fallback: Path
) -> None:
    store = StateStore(str(tmp_path / "ro" / "state.json"), str(fallback))
    os.mkfifo(store.copy)
    loaded, _ = promptly(lambda: store.load(NOW))  # reading the copy must not block
    assert loaded.data == empty_state()
    # The state file cannot be written (its directory is a file), nor the copy (a FIFO).
    (tmp_path / "ro").write_text("a file where the directory should be")
    promptly(lambda: store.save(loaded.data))
    assert store.where is None
    assert f"nor its copy {store.copy}" in store.problems[0]
    assert stat.S_ISFIFO(os.lstat(store.copy).st_mode)


def test_a_fifo_at_the_lock_path_is_refused_at_once(tmp_path: Path) -> None:
    lock = tmp_path / "state.json.lock"
    os.mkfifo(lock)

    def take() -> None:
        with run_lock(str(lock), NOW):
            pytest.fail("locked a FIFO")  # pragma: no cover

    with pytest.raises(LockUnavailable) as raised:
        promptly(take)
    assert f"cannot use the run lock {lock}: it is a FIFO (named pipe)" in str(raised.value)
    assert stat.S_ISFIFO(os.lstat(lock).st_mode)


def test_the_lock_of_a_device_state_file_is_taken_in_the_fallback(
    fifo: Path, fallback: Path
) -> None:
    lock = Path(f"{fifo}.lock")
    with run_lock(str(lock), NOW, fallback=str(fallback), state_file=str(fifo)) as note:
        assert note is None  # the store says where the state and its lock went, and why
        assert not lock.exists()
        held = list(fallback.iterdir())
        assert len(held) == 1 and stat.S_ISREG(os.lstat(held[0]).st_mode)


# --- a state file too big --------------------------------------------------------


def test_a_100_mb_state_file_is_not_read_whole_and_is_moved_aside_once(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with path.open("wb") as handle:  # sparse: valid-looking start, 100 MB long
        handle.write(b'{"schema": 1, "checks": {}, "memory": {}, "x": "')
        handle.truncate(100_000_000)
    tracemalloc.start()
    try:
        loaded, seconds = promptly(lambda: load_state(str(path), NOW))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, peak  # not read: it was 309 MiB of RSS
    assert loaded.data == empty_state()
    aside = tmp_path / "state.json.corrupt-20261126T064700Z"
    assert loaded.warning == (
        f"state file {path} was 100000000 bytes, over the limit of {MAX_STATE_BYTES}"
        f" (and of {MAX_READ_BYTES} to read); moved to {aside}; running as a first run"
    )
    assert aside.stat().st_size == 100_000_000
    assert not path.exists()
    save_state(str(path), loaded.data)
    assert load_state(str(path), NOW).warning is None  # once: the next run is quiet
    print(f"100 MB state refused in {seconds * 1000:.2f} ms, tracemalloc peak {peak} bytes")


def test_status_names_a_big_state_file_and_leaves_it(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b" " * (MAX_READ_BYTES + 1))
    data, problem = load_state_readonly(str(path))
    assert data == empty_state()
    assert problem == (
        f"state file {path} is {MAX_READ_BYTES + 1} bytes, over the limit of {MAX_STATE_BYTES}"
        f" (and of {MAX_READ_BYTES} to read)"
    )
    assert path.stat().st_size == MAX_READ_BYTES + 1


def test_a_state_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    payload = json.dumps({**empty_state(), "pad": ""}).encode()
    payload = payload.replace(
        b'"pad": ""', b'"pad": "' + b"x" * (MAX_STATE_BYTES - len(payload)) + b'"'
    )
    assert len(payload) == MAX_STATE_BYTES
    path.write_bytes(payload)
    loaded = load_state(str(path), NOW)
    assert loaded.warning is None
    assert loaded.data["pad"] == "x" * (
        MAX_STATE_BYTES - len(b'{"schema": 1, "checks": {}, "memory": {}, "pad": ""}')
    )


def test_a_copy_bigger_than_the_limit_is_ignored(tmp_path: Path, fallback: Path) -> None:
    store = StateStore(str(tmp_path / "state.json"), str(fallback))
    big = {**empty_state(), "generation": 99, "pad": "x" * MAX_STATE_BYTES}
    store.copy.write_text(json.dumps(big))
    loaded = store.load(NOW)
    assert loaded.data == empty_state()  # not the copy, though its generation is newer
    assert store.read_only() == (
        empty_state(),
        f"no state file at {store.path} yet: check-status has not run here",
    )


# --- the worst case a state must hold ----------------------------------------------


def check_names() -> list[str]:
    """40 checks: the node's own, 20 endpoints, 10 disks, 4 peers, the log."""
    names = ["nodeos", "head_block", "lib", "chain_id", "state_db", "nodeos_log"]
    names += [f"endpoint:api-{n:02d}.eos-mainnet.example-operator.io:8888" for n in range(20)]
    names += [f"disk:/var/lib/nodeos/data/blocks-archive-{n:02d}" for n in range(10)]
    names += [f"peer:eu-west-backup-{n}" for n in range(4)]
    assert len(names) == 40
    return names


def text_of(length: int, words: str) -> str:
    return (words * (length // len(words) + 1))[:length]


def worst_state(summary_chars: int, queued_per_phone: int) -> dict[str, Any]:
    """Every check failing and flapping, each with an open incident told to 5 phones,
    a silence, a remembered fatal log line, a held sender, a failed and a retried phone,
    and `queued_per_phone` texts waiting for each phone (Twilio down)."""
    names = check_names()
    began = NOW - timedelta(minutes=21)
    summary = text_of(summary_chars, "3 of 3 requests failed: HTTP 503 NODEOS_UNREACHABLE; ")
    records = {
        name: CheckRecord(
            problem_runs=1,
            problem_since=NOW,
            incident=Incident(
                began,
                Status.CRITICAL,
                NOW - timedelta(minutes=5),
                summary,
                told={phone: "CRITICAL" for phone in PHONES},
            ),
            history="CO" * 10 + "C",  # 21 runs, flapping
            flapping=True,
            last_problem=summary,
            failing_since=began,
        )
        for name in names
    }
    silence = Silence(("disk:*",), NOW + timedelta(hours=2), text_of(200, "new disks "), NOW)
    outbox = {
        phone: [
            Notification(Kind.PROBLEM, names[i], Status.CRITICAL, summary, began, NOW).to_json()
            for i in range(queued_per_phone)
        ]
        for phone in PHONES
    }
    state: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "generation": 123456,
        "checks": {
            name: {
                "status": "CRITICAL",
                "since": format_time(began),
                "failing_runs": 21,
                "ok_runs": 0,
                "summary": summary,
            }
            for name in names
        },
        "memory": {
            "head_block": {"num": 333261268, "seen_at": format_time(NOW)},
            "lib": {"num": 333260936, "head": 333261268, "seen_at": format_time(NOW)},
            "nodeos_log": {
                "position": {"inode": 2149884, "offset": 12345678901, "fingerprint": "c6" * 20},
                "fatal_line": text_of(300, "error 2026-11-26T06:47:00.000 main ] std::bad_alloc "),
                "fatal_sign": "bad_alloc",
                "fatal_at": format_time(NOW),
            },
        },
        "alerts": alert_state_to_json(AlertState(records, (silence,))),
        "last_run": {"at": format_time(NOW), "status": "CRITICAL", "by": "schedule"},
        "last_scheduled_run": {"at": format_time(NOW)},
        "delivery_failures": {
            PHONES[4]: {
                "code": 21610,
                "reason": text_of(200, "unsubscribed "),
                "at": format_time(NOW),
            }
        },
        "delivery_retries": {PHONES[3]: {"code": 21999, "reason": text_of(200, "?? "), "tries": 2}},
        "sms_held": {
            "reason": text_of(200, "sender cannot send "),
            "code": 21606,
            "since": format_time(NOW),
            "tried_at": format_time(NOW),
            "settings": "0123456789abcdef",
        },
    }
    if queued_per_phone:
        state["outbox"] = outbox
    return state


def what_must_survive(state: dict[str, Any]) -> tuple[Any, ...]:
    """Open incidents and whom they were told to, silences, and every queued text."""
    alerts = alert_state_from_json(state.get("alerts"))
    incidents = {
        name: (r.incident.opened_at, r.incident.notified_status, r.incident.told)
        for name, r in alerts.checks.items()
        if r.incident is not None
    }
    queued = load_outbox(state.get("outbox"), PHONES)
    return (
        incidents,
        [(s.checks, s.until) for s in alerts.silences],
        {
            p: [(n.kind, n.check, n.status, n.since, n.at) for n in notes]
            for p, notes in queued.items()
        },
    )


@pytest.mark.parametrize("summary_chars", [60, 100])
def test_the_realistic_worst_case_fits_without_losing_anything(
    tmp_path: Path, summary_chars: int
) -> None:
    state = worst_state(summary_chars, queued_per_phone=3)
    path = tmp_path / "state.json"
    note = save_state(str(path), state)
    size = path.stat().st_size
    print(f"worst case, {summary_chars}-character summaries: {size} bytes")
    assert note is None  # not shrunk
    assert size <= MAX_STATE_BYTES * 3 // 4, size  # well under the limit
    loaded = load_state(str(path), NOW)
    assert loaded.warning is None
    assert what_must_survive(loaded.data) == what_must_survive(state)
    # Compact, but the same alert state: the flapping histories are all there.
    assert alert_state_from_json(loaded.data["alerts"]) == alert_state_from_json(state["alerts"])
    assert loaded.data["memory"] == state["memory"]


@pytest.mark.parametrize(
    ("summary_chars", "queued_per_phone"), [(320, 3), (320, 10), (60, 30), (320, 30)]
)
def test_a_state_too_big_is_shrunk_to_the_limit_keeping_incidents_and_queued_texts(
    tmp_path: Path, summary_chars: int, queued_per_phone: int
) -> None:
    state = worst_state(summary_chars, queued_per_phone)
    unshrunk = len(json.dumps(state, separators=(",", ":")))
    path = tmp_path / "state.json"
    note = save_state(str(path), state)
    size = path.stat().st_size
    print(f"{summary_chars}-char summaries, {queued_per_phone} queued/phone: {unshrunk} -> {size}")
    assert size <= MAX_STATE_BYTES
    assert note is not None and note.startswith(f"state shrunk to {size} bytes")
    assert "dropped flapping histories" in note
    loaded = load_state(str(path), NOW)
    assert loaded.warning is None
    assert what_must_survive(loaded.data) == what_must_survive(state)
    assert (
        loaded.data["memory"]["nodeos_log"]["position"] == state["memory"]["nodeos_log"]["position"]
    )
    assert serialise(state)[0] == path.read_bytes()  # deterministic


def test_the_store_reports_a_shrunk_state_on_the_runs_line(tmp_path: Path, fallback: Path) -> None:
    store = StateStore(str(tmp_path / "state.json"), str(fallback))
    store.save(worst_state(320, 30))
    assert store.where == "file"
    assert len(store.problems) == 1 and store.problems[0].startswith("state shrunk to ")


def test_a_state_that_cannot_fit_even_shrunk_is_not_written(tmp_path: Path, fallback: Path) -> None:
    state = worst_state(60, 30)
    for n in range(100):  # 140 checks, each with an open incident
        state["alerts"]["checks"][f"endpoint:more-{n}"] = state["alerts"]["checks"]["nodeos"]
    path = tmp_path / "state.json"
    save_state(str(path), empty_state())
    before = path.read_bytes()
    with pytest.raises(StateError, match="even shrunk, over the limit of 65536"):
        save_state(str(path), state)
    assert path.read_bytes() == before  # the last good state stays
    store = StateStore(str(path), str(fallback))
    store.save(state)
    assert store.where is None
    assert "alerts may repeat or be missed" in store.problems[0]
    assert not store.copy.exists()


def test_a_state_of_the_limit_is_saved_on_a_full_disk_from_the_reserve(tmpfs: Path) -> None:
    """The reserve kept beside the state is at least twice MAX_STATE_BYTES."""
    path = tmpfs / "state.json"
    save_state(str(path), empty_state())
    fd = os.open(tmpfs / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    with pytest.raises(OSError):  # really full
        (tmpfs / "one-more").write_bytes(b"x" * 4096)
    state = worst_state(320, 30)
    note = save_state(str(path), state)
    assert note is not None and "saved in the room kept for it" in note
    assert "state shrunk" in note
    assert what_must_survive(load_state(str(path), NOW).data) == what_must_survive(state)


# --- one whole run with STATE_FILE=/dev/zero -----------------------------------------


def test_a_run_with_state_file_dev_zero_says_so_and_keeps_alerting(tmp_path: Path) -> None:
    """It used to hang until the 50 s deadline, or grow to 1.5 GB; as root, a save
    would have replaced /dev/zero with a regular file."""
    script = REPO / ".venv" / "bin" / "check-status"
    if not script.exists():
        pytest.skip("no .venv/bin/check-status")
    fallback = tmp_path / "fallback"
    fallback.mkdir(mode=0o700)
    lock = Path("/dev/zero.lock")  # the run lock is "<STATE_FILE>.lock" (config.py)
    lock_was_there = lock.exists()
    before = kind_of("/dev/zero")
    outputs = []
    with NodeosStandIn() as nodeos:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "STATE_FILE": "/dev/zero",
            "STATE_FALLBACK_DIR": str(fallback),
            "NODEOS_URL": nodeos.url,
            "DISK_PATHS": str(tmp_path),
        }
        try:
            for _ in range(2):
                started = time.monotonic()
                done = subprocess.run(
                    [str(script), "run"],
                    env=env,
                    capture_output=True,
                    text=True,
                    cwd=tmp_path,
                    timeout=60,
                    stdin=subprocess.DEVNULL,
                )
                outputs.append((done, time.monotonic() - started))
        finally:
            lock_created = not lock_was_there and lock.exists()
            if lock_created:
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
    assert kind_of("/dev/zero") == before
    # The lock goes beside the copy, not to /dev: nothing is created next to a device.
    assert not lock_created
    assert any(p.name.endswith(".lock") for p in fallback.iterdir())
    for done, seconds in outputs:
        assert "Traceback" not in done.stdout + done.stderr
        assert done.stderr == ""
        lines = done.stdout.splitlines()
        assert len(lines) == 1, done.stdout
        assert done.returncode == 3, done.stdout  # UNKNOWN: the setting is wrong
        assert lines[0].startswith("CHECK-STATUS UNKNOWN - ")
        assert "run exceeded" not in lines[0]
        assert (
            "state file /dev/zero is a character device, not a regular file:"
            " set STATE_FILE to a file path" in lines[0]
        )
        print(f"run with STATE_FILE=/dev/zero: exit {done.returncode} in {seconds:.2f}s")
    # It locked beside the copy, so it saved: in the copy.
    assert "the state is kept in " in outputs[0][0].stdout
    (copy,) = [p for p in fallback.iterdir() if not p.name.endswith(".lock")]
    saved = json.loads(copy.read_text())
    assert saved["generation"] == 2  # the second run read the first one's copy
    assert saved["checks"]["nodeos"]["status"] == "OK"


def test_a_state_of_an_older_version_over_the_limit_is_read_once_and_shrunk(
    tmp_path: Path,
) -> None:
    """Upgrading from a version without the bound loses no open incident: a state of
    up to MAX_READ_BYTES is still read, and its next save fits MAX_STATE_BYTES."""
    state = worst_state(320, 30)
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state, indent=1))  # as the older version wrote it
    assert MAX_STATE_BYTES < path.stat().st_size <= MAX_READ_BYTES
    loaded = load_state(str(path), NOW)
    assert loaded.warning is None
    assert what_must_survive(loaded.data) == what_must_survive(state)
    save_state(str(path), loaded.data)
    assert path.stat().st_size <= MAX_STATE_BYTES
    assert what_must_survive(load_state(str(path), NOW).data) == what_must_survive(state)
