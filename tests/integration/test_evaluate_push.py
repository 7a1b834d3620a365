"""Evaluator's blessing gate and the versioned Pusher, with real TFX, TFMA, Horovod and Airflow.

The runs of this module share one state directory and run in order:
1. a trained model passes the gate (no baseline yet) and becomes version 1; the downstream
   "deploy" task reads it;
2. the Pusher task is retried: it publishes nothing new;
3. a barely trained model, with a threshold it cannot reach, against the blessed baseline: not blessed, Pusher and
   deploy skipped, the log naming both failed checks (the threshold, and worse than the baseline);
4. span 2 lands: a training window of 2 spans trains on spans 1 and 2.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from airflow_mlops.utils.model_registry import ModelRegistry

from ..conftest import BIN, airflow_env
from .test_ingest_dag import TEST_DAGS, dags_test, lineage, task_states, taxi_span_state, write_slice

pytestmark = pytest.mark.integration
PIPELINE = "it_push"
DAG_ID = "test_train_push"


@pytest.fixture(scope="module")
def state(tmp_path_factory, airflow_home, taxi_csv):
    return taxi_span_state(tmp_path_factory, airflow_home, taxi_csv, "push")


def run(state, **params):
    code, log, run_id = dags_test(state, {"pipeline_name": PIPELINE, "data_root": str(state["data"]), **params},
                                  dag_id=DAG_ID, dags_folder=TEST_DAGS)
    assert code == 0, log[-4000:]
    return log, run_id, task_states(state, DAG_ID, run_id)


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def registry(state) -> ModelRegistry:
    return ModelRegistry(state["state_dir"] / "models" / PIPELINE)


def test_blessed_model_becomes_version_1_with_lineage_to_the_span(state):
    log, run_id, states = run(state, eval_threshold=0.5)
    assert set(states.values()) == {"success"}, states
    assert "baseline: none (no model of this pipeline was blessed before)" in log
    assert "the model is BLESSED (auc >= 0.5)" in log
    assert "would deploy model version 1" in log
    runs = lineage(state, run_id, pipeline=PIPELINE)
    assert runs["Evaluator.latest_blessed_model"]["state"] == "COMPLETE"  # ran inside the Evaluator task
    model = runs["Trainer"]["outputs"]["model"][0]
    evaluator, pusher = runs["Evaluator"], runs["Pusher"]
    assert [a["id"] for a in evaluator["inputs"]["model"]] == [model["id"]]
    assert evaluator["inputs"].get("baseline_model", []) == []
    examples = runs["CsvExampleGen"]["outputs"]["examples"][0]
    assert [a["id"] for a in evaluator["inputs"]["examples"]] == [examples["id"]] and examples["span"] == 1
    blessing = evaluator["outputs"]["blessing"][0]
    assert blessing["blessed"] == 1
    assert [a["id"] for a in pusher["inputs"]["model"]] == [model["id"]]
    assert [a["id"] for a in pusher["inputs"]["model_blessing"]] == [blessing["id"]]
    pushed = pusher["outputs"]["pushed_model"][0]
    assert pushed["pushed"] == 1 and pushed["pushed_version"] == "1"
    version = registry(state).get("latest")
    assert version.version == 1 and version.run_id == run_id and version.model_artifact_id == model["id"]
    assert version.blessing_artifact_id == blessing["id"]
    assert 0.5 <= version.metrics["auc"] <= 1 and version.metrics["example_count"] > 0
    assert pushed["pushed_destination"] == version.path
    assert tree_digest(Path(version.path)) == tree_digest(Path(model["uri"]) / "Format-Serving")
    state["run1"], state["model1"] = run_id, model["id"]


def test_retried_push_publishes_nothing_new(state):
    env = airflow_env(state["home"], state["state_dir"])
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(TEST_DAGS)
    out = subprocess.run([str(BIN / "airflow"), "tasks", "test", DAG_ID, "Pusher", state["run1"]], env=env,
                         capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "reused the execution of an earlier try" in log
    assert [v.version for v in registry(state).versions()] == [1]
    assert sorted(p.name for p in registry(state).base.iterdir()) == [".registry", "1"]


def test_a_model_below_the_threshold_and_worse_than_the_baseline_is_not_pushed_saying_both(state):
    log, run_id, states = run(state, eval_threshold=0.99, train_steps=4)
    assert states["Evaluator"] == "success"  # the evaluation ran; the model just is not good enough
    assert states["Pusher"] == "skipped" and states["deploy"] == "skipped", states
    reasons = re.search(r"not pushing: Evaluator did not bless the model: (.*)", log)
    assert reasons, log[-4000:]
    # both failed checks, each with its numbers: the threshold, and the blessed baseline with the allowed drop
    assert re.search(r"auc = 0\.\d{4}, threshold: >= 0\.99", reasons.group(1)), reasons.group(1)
    assert re.search(r"auc = 0\.\d{4} is 0\.\d{4} below the blessed baseline model's 0\.\d{4}; allowed drop: 0",
                     reasons.group(1)), reasons.group(1)
    runs = lineage(state, run_id, pipeline=PIPELINE)
    assert [a["id"] for a in runs["Evaluator"]["inputs"]["baseline_model"]] == [state["model1"]]
    assert runs["Evaluator"]["outputs"]["blessing"][0].get("blessed") == 0
    assert "Pusher" not in runs
    assert [v.version for v in registry(state).versions()] == [1]


def test_a_training_window_trains_on_every_validated_span_of_the_window(state, taxi_csv):
    # span 2: the same trips in another order (1,000 new trips bring companies span 1's schema lacks:
    # rejected by the data gate, which the window then leaves out; here both spans must pass)
    write_slice(taxi_csv, state["data"] / "span-2" / "data.csv", 0, 1000, mutate=lambda h, rows: (h, rows[::-1]))
    log, run_id, states = run(state, eval_threshold=0.5, max_regression=0.1, training_spans=2)
    assert set(states.values()) == {"success"}, states
    assert "training window: spans [1, 2]" in log and "analyzed and transformed span(s) 1, 2" in log
    runs = lineage(state, run_id, pipeline=PIPELINE)
    assert runs["Transform.training_window"]["state"] == "COMPLETE"  # ran inside the Transform task
    window = runs["Transform"]["inputs"]["examples"]
    assert sorted(a["span"] for a in window) == [1, 2]  # ML Metadata records both spans as Transform's inputs
    assert len(runs["Trainer"]["inputs"]["examples"]) == 2  # one transformed examples artifact per span
    own = runs["CsvExampleGen"]["outputs"]["examples"][0]
    assert own["span"] == 2 and [a["id"] for a in runs["Evaluator"]["inputs"]["examples"]] == [own["id"]]
    assert [v.version for v in registry(state).versions()][-1] == 2
