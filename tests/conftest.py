"""Shared fixtures: real loopback stand-ins, env files in tmp dirs, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from check_status.cli import main
from check_status.config import ENV_FILE_VARIABLE, KEYS, load
from check_status.serve import HealthServer
from tests.standins import NodeosStandIn


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings in the developer's or CI's environment must not leak into a test."""
    for key in KEYS:
        monkeypatch.delenv(key.name, raising=False)
    monkeypatch.delenv(ENV_FILE_VARIABLE, raising=False)
    # Nor a `install.sh --user` env file in the developer's own ~/.config.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-user-config"))


@pytest.fixture
def nodeos() -> Iterator[NodeosStandIn]:
    with NodeosStandIn() as standin:
        yield standin


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.json"


@pytest.fixture
def write_env(tmp_path: Path, state_file: Path) -> Callable[..., Path]:
    """Write an env file with a private STATE_FILE and the given settings."""

    def write(**settings: Any) -> Path:
        values = {"NODE_NAME": "eu2", "STATE_FILE": str(state_file), "DISK_PATHS": str(tmp_path)}
        values.update({k: str(v) for k, v in settings.items()})
        path = tmp_path / "check-status.env"
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        path.chmod(0o600)
        return path

    return write


@pytest.fixture
def cli() -> Callable[..., Result]:
    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return invoke


def checks_by_name(output: str) -> dict[str, dict[str, Any]]:
    document = json.loads(output)
    return {check["name"]: check for check in document["checks"]}


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs: to fill up, or to remount read-only (`remount(path, "ro")`)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    # mode=0700: a tmpfs root is 1777 by default, and check-status refuses a
    # state directory other users can write to.
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount_point)], check=True
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def remount(mount_point: Path, mode: str) -> None:
    """Remount a tmpfs `ro` (as the kernel does after I/O errors) or `rw` again."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount_point)], check=True)


@pytest.fixture
def serve(write_env: Callable[..., Path]) -> Iterator[Callable[..., tuple[HealthServer, str]]]:
    """An in-process HealthServer on an ephemeral port; keyword arguments in
    lower case go to the constructor, the others to the env file."""
    servers: list[HealthServer] = []

    def start(**settings: object) -> tuple[HealthServer, str]:
        options = {k: v for k, v in settings.items() if k.islower()}
        env = {k: v for k, v in settings.items() if not k.islower()}
        config = load(str(write_env(**env)))
        server = HealthServer(config, ("127.0.0.1", 0), **options)  # type: ignore[arg-type]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
