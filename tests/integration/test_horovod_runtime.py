"""Horovod, built from source into the TFX runtime, trains with 2 Gloo workers to identical weights."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from airflow_mlops.runtimes.local import runtime_command

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).parent / "scripts" / "horovod_weights_check.py"


def run_two_workers(tfx_runtime, *script_args: str) -> str:
    argv = ["python", "-m", "horovod.runner.launch", "-np", "2", "--gloo", "-H", "localhost:2", "python", str(SCRIPT),
            *script_args]
    command, env = runtime_command(
        tfx_runtime, argv, env={"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}, binds=[str(SCRIPT.parent)]
    )
    # horovodrun starts the workers with the runtime's own python (first on PATH inside the runtime)
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    return log


def final_weights(log: str) -> dict[str, str]:
    weights = dict(re.findall(r"WEIGHTS rank=(\d) size=2 loss=\S+ sha256=(\w+)", log))
    assert set(weights) == {"0", "1"}, log[-3000:]
    return weights


def test_two_gloo_workers_average_gradients_and_end_with_identical_weights(tfx_runtime):
    log = run_two_workers(tfx_runtime)
    # the applied gradient is the mean of both ranks' local gradients, which differ (own data shards)
    assert sorted(re.findall(r"GRADCHECK rank=(\d) averaged=True local_differs=True", log)) == ["0", "1"], log[-3000:]
    weights = final_weights(log)
    assert weights["0"] == weights["1"]


def test_negative_control_without_averaging_the_ranks_diverge(tfx_runtime):
    """The same training applying local gradients: the identical-weights check would catch it."""
    weights = final_weights(run_two_workers(tfx_runtime, "local"))
    assert weights["0"] != weights["1"]
