"""The shell scripts operators run are clean under shellcheck."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "script", ["install.sh", "tests/run-all.sh", "benchmarks/run.sh", ".ci/run"]
)
def test_shellcheck_clean(script):
    if shutil.which("shellcheck") is None:
        pytest.fail(
            "shellcheck is missing: tests/run-all.sh installs it (apt-get install shellcheck)"
        )
    done = subprocess.run(["shellcheck", str(REPO / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_install_sh_help_lists_every_mode():
    done = subprocess.run(
        ["bash", str(REPO / "install.sh"), "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    for mode in ("--user", "--check", "--uninstall", "--purge"):
        assert mode in done.stdout
