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
