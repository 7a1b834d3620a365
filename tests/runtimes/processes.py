"""Helpers for tests that watch real processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from airflow_mlops.runtimes.reaper import alive


def wait_for_pid_file(path: Path, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return int(path.read_text())
        time.sleep(0.05)
    pytest.fail(f"{path} was never written")


def wait_until_dead(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def processes_of(pattern: str, owner: str) -> list[int]:
    """Pids of the processes whose command line contains ``pattern`` and that are ``owner``'s: one of their
    ancestors' command lines contains ``owner`` (say this test process's warm-runtime directory, which its warm
    runtimes' command lines name), or they are orphans (their only ancestor is init: nobody's, so they count).
    What other test processes (pytest-xdist workers) run beside this one is left out."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or pattern not in _cmdline(int(entry.name)):
            continue
        pid = parent = int(entry.name)
        while (parent := _parent(parent)) > 1:
            if owner in _cmdline(parent):
                found.append(pid)
                break
        else:
            found.append(pid)
    return found
