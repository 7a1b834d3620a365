"""Horovod data-parallel training as an Airflow task (TFX Trainer with the Horovod executor)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from airflow_mlops.hooks.runtime import RuntimeHook

from .test_ingest_dag import TEST_DAGS, dags_test, lineage, taxi_span_state

pytestmark = pytest.mark.integration
PIPELINE = "it_train"


@pytest.fixture(scope="module")
def state(tmp_path_factory, airflow_home, taxi_csv):
    return taxi_span_state(tmp_path_factory, airflow_home, taxi_csv, "train")


def test_two_horovod_workers_train_identical_weights_and_rank_0_exports(state):
    code, log, run_id = dags_test(state, {"pipeline_name": PIPELINE, "data_root": str(state["data"])},
                                  dag_id="test_train", dags_folder=TEST_DAGS)
    assert code == 0, log[-4000:]
    hashes = dict(re.findall(r"\[(\d)\]<stdout>:rank \d: final weights sha256 (\w+)", log))
    assert set(hashes) == {"0", "1"}, log[-4000:]  # every rank's log reaches the task log, prefixed
    assert hashes["0"] == hashes["1"]
    assert re.search(r"\[1\]<stdout>:rank 1: step 30/30 loss", log)  # 60 steps shared by 2 workers
    runs = lineage(state, run_id, pipeline=PIPELINE)
    trainer = runs["Trainer"]
    assert trainer["state"] == "COMPLETE"
    transform = runs["Transform"]["outputs"]
    assert [a["id"] for a in trainer["inputs"]["examples"]] == [a["id"] for a in transform["transformed_examples"]]
    assert [a["id"] for a in trainer["inputs"]["transform_graph"]] == [a["id"] for a in transform["transform_graph"]]
    model = Path(trainer["outputs"]["model"][0]["uri"])
    assert (model / "Format-Serving" / "saved_model.pb").is_file()
    # rank 0's TensorBoard summaries, read back the way TensorBoard reads them
    model_run = trainer["outputs"]["model_run"][0]["uri"]
    hook = RuntimeHook(mlops_conn_id=None, state_dir=str(state["state_dir"]))
    scalars = hook.run_step("tensorboard.scalars", {"logdir": model_run}, binds=[model_run])["scalars"]
    assert [step for step, _ in scalars["train/loss"]] == list(range(2, 61, 2))  # 30 steps on each of 2 workers
    assert all(loss > 0 for _, loss in scalars["train/loss"])
    assert [step for step, _ in scalars["eval/binary_accuracy"]] == [60]
    run = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
    checkpoint = state["state_dir"] / "pipelines" / PIPELINE / "Trainer" / ".checkpoints" / run
    assert json.loads((checkpoint / "state.json").read_text()) == {"step": 30, "weights": "step-30.weights.h5"}
    assert sorted(p.name for p in checkpoint.glob("*.weights.h5")) == ["step-30.weights.h5"]  # earlier ones removed
