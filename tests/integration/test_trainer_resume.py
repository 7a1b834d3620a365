"""A Horovod training killed mid-way: its retry resumes from the checkpoint, with no worker left behind, and a
checkpoint torn by a kill while written leaves the previous one to resume from."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from airflow_mlops.runtimes.warm import socket_dir

from ..conftest import BIN, airflow_env
from ..runtimes.processes import processes_of
from .conftest import run_script
from .test_ingest_dag import TEST_DAGS, lineage, taxi_span_state

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def state(tmp_path_factory, airflow_home, taxi_csv):
    return taxi_span_state(tmp_path_factory, airflow_home, taxi_csv, "resume")


def test_killed_training_resumes_from_its_checkpoint_and_publishes_one_model(state):
    """Kill the whole Airflow process mid-training (SIGKILL), retry the task: it resumes."""
    env = airflow_env(state["home"], state["state_dir"])
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(TEST_DAGS)
    conf = '{"pipeline_name": "it_resume", "data_root": "%s", "train_steps": 1000}' % state["data"]
    proc = subprocess.Popen([str(BIN / "airflow"), "dags", "test", "test_train", "-c", conf], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    run_id, killed_at, deadline = None, None, time.monotonic() + 600
    assert proc.stdout is not None
    for line in proc.stdout:
        run_id = run_id or (m.group(1) if (m := re.search(r"run_id=(manual__[^,\s]+)", line)) else None)
        if "rank 0: step 200/500" in line:  # the checkpoint of step 100 is on disk (200's is being written)
            os.killpg(proc.pid, signal.SIGKILL)
            killed_at = line
            break
        assert time.monotonic() < deadline, "training never reached step 200"
    proc.wait()
    assert killed_at and run_id
    for _ in range(60):  # the warm runtime stops the step's process group when its client is gone
        if not processes_of("airflow_mlops.runtime_side.steps.horovod_trainer", owner=f"{socket_dir()}/"):
            break
        time.sleep(0.5)
    else:
        pytest.fail("Horovod workers were still running 30 s after their task was killed")

    out = subprocess.run([str(BIN / "airflow"), "tasks", "test", "test_train", "Trainer", run_id], env=env,
                         capture_output=True, text=True, timeout=900)
    log = out.stdout + out.stderr
    assert out.returncode == 0 and "Task failed" not in log, log[-4000:]
    resumed = re.search(r"rank 0: resuming from the checkpoint at step (\d+)/500", log)
    # not from scratch, and not from the end: the kill stopped the (detached) Horovod workers at once
    assert resumed and int(resumed.group(1)) in (100, 200, 300, 400), log[-4000:]
    assert "left RUNNING by an earlier try" in log
    trainer = lineage(state, run_id, pipeline="it_resume")["Trainer"]
    assert trainer["state"] == "COMPLETE"
    assert len(trainer["outputs"]["model"]) == 1  # one execution, one model for the run
    models = list((state["state_dir"] / "pipelines" / "it_resume" / "Trainer" / "model").iterdir())
    assert [m.name for m in models] == [str(trainer["id"])]


def test_a_checkpoint_killed_while_written_leaves_the_previous_one_to_resume_from(tfx_runtime, tmp_path):
    """The shipped module's checkpoints, in the TFX runtime: a kill while step 800's weights are
    written (half a file on disk) must leave step 400 loadable, weights and all."""
    log = run_script(tfx_runtime, "checkpoint_check.py", str(tmp_path / "ckpt"), binds=(str(tmp_path),))
    assert "LEFT ['state.json', 'step-400.weights.h5', 'step-800.weights.h5']" in log, log[-3000:]  # the torn file
    assert "CHECKPOINT step=400 same=True" in log, log[-3000:]
