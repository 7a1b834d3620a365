"""Horovod, built from source into the TFX runtime, trains with 2 Gloo workers to identical weights."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from airflow_mlops.runtimes.local import runtime_command

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).parent / "scripts" / "horovod_weights_check.py"


def test_two_gloo_workers_end_with_identical_weights(tfx_runtime):
    argv = ["python", "-m", "horovod.runner.launch", "-np", "2", "--gloo", "-H", "localhost:2", "python", str(SCRIPT)]
    command, env = runtime_command(
        tfx_runtime, argv, env={"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}, binds=[str(SCRIPT.parent)]
    )
    # horovodrun starts the workers with the runtime's own python (first on PATH inside the runtime)
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    weights = dict(re.findall(r"WEIGHTS rank=(\d) size=2 loss=\S+ sha256=(\w+)", log))
    assert set(weights) == {"0", "1"}, log[-3000:]
    assert weights["0"] == weights["1"]
