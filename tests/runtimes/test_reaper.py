"""Stopping a step's process tree, detached descendants included (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_mlops.runtimes import reaper
from airflow_mlops.runtimes.contract import StepRequest, write_json_atomic
from tests.runtimes.processes import alive, wait_for_pid_file, wait_until_dead

REPO = str(Path(__file__).resolve().parents[2])


def test_descendants_and_stop_descendants_on_a_chain():
    chain = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    top = subprocess.Popen([sys.executable, "-c", chain])
    try:
        for _ in range(100):
            found = reaper.descendants(top.pid)
            if found:
                break
            time.sleep(0.05)
        assert len(found) == 1  # the grandchild; the root itself is not its own descendant
        grandchild = found[0]
        assert reaper.stop_descendants(top.pid, grace=2) == 1
        assert wait_until_dead(grandchild)
        assert top.poll() is None  # only the descendants were stopped
    finally:
        top.kill()
        top.wait()


@pytest.fixture
def entrypoint_request(tmp_path):
    """A request for runtime.info that leaves a detached orphan behind, then sleeps."""
    pid_file = tmp_path / "orphan.pid"
    req, res = tmp_path / "req.json", tmp_path / "res.json"
    write_json_atomic(req, StepRequest(step="runtime.info", params={"detach_pid_file": str(pid_file), "sleep": 60}).to_json())
    return req, res, pid_file


def test_a_step_whose_parent_is_killed_stops_its_detached_descendants(entrypoint_request, tmp_path):
    """The Airflow task dies with SIGKILL: its step and the step's detached workers stop too."""
    req, res, pid_file = entrypoint_request
    parent_code = (
        "import subprocess, sys, time;"
        f"p = subprocess.Popen([sys.executable, '-m', 'airflow_mlops.runtime_side.entrypoint', {str(req)!r}, {str(res)!r}]);"
        f"open({str(tmp_path / 'step.pid')!r}, 'w').write(str(p.pid)); time.sleep(120)"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], env={**os.environ, "PYTHONPATH": REPO})
    try:
        orphan = wait_for_pid_file(pid_file)
        step = wait_for_pid_file(tmp_path / "step.pid")
        assert alive(orphan) and alive(step)
        assert os.getsid(orphan) != os.getsid(step)  # it really left the step's session
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert wait_until_dead(step), "the step outlived the task that started it"
        assert wait_until_dead(orphan), "the step's detached descendant outlived the step"
    finally:
        for pid in (parent.pid,):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_sigterm_to_a_step_stops_its_detached_descendants(entrypoint_request):
    req, res, pid_file = entrypoint_request
    step = subprocess.Popen([sys.executable, "-m", "airflow_mlops.runtime_side.entrypoint", str(req), str(res)],
                            env={**os.environ, "PYTHONPATH": REPO})
    try:
        orphan = wait_for_pid_file(pid_file)
        step.send_signal(signal.SIGTERM)
        assert step.wait(timeout=15) == 128 + signal.SIGTERM
        assert wait_until_dead(orphan)
        assert not res.exists()  # a stopped step reports nothing
    finally:
        step.kill()
        step.wait()
