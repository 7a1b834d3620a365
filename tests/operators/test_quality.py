"""ModelQualityOperator on real files: a deployment record, registry records, a prediction log, outcome files."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_mlops.exceptions import InvalidArgumentError
from airflow_mlops.hooks.seldon import SeldonHook
from airflow_mlops.operators.quality import ModelQualityOperator
from airflow_mlops.serving.registry import LocalDeployment
from airflow_mlops.utils.model_registry import ModelRegistry, ModelVersion


@pytest.fixture
def deployment(tmp_path, clean_mlops_env, monkeypatch):
    """Deployment ``taxi``: v1 blessed with AUC 0.9, whose 50 served rows the truth says it got wrong."""
    clean_mlops_env.setenv("AIRFLOW__MLOPS__STATE_DIR", str(tmp_path / "state"))
    root = tmp_path / "models"
    registry = ModelRegistry(root)
    for version in (1, 2):
        (root / str(version)).mkdir(parents=True)
        registry._write(ModelVersion(version=version, path=str(root / str(version)), model_uri="m", status="ready",
                                     metrics={"auc": 0.9}))
    log = tmp_path / "log"
    log.mkdir()
    now = datetime.now(timezone.utc)
    lines = [{"ts": (now - timedelta(minutes=5)).isoformat(), "model_version": 1, "request_id": f"r{i}",
              "names": ["probabilities"], "predictions": [[i / 50]], "instances": [{}]} for i in range(50)]
    (log / f"{now:%Y-%m-%d}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    feedback = tmp_path / "state" / "feedback"
    feedback.mkdir(parents=True)
    (feedback / "labels.csv").write_text("request_id,label\n" + "".join(f"r{i},{int(i < 25)}\n" for i in range(50)))
    dep = LocalDeployment(name="taxi", version=1, model_root=str(root), model_path=str(root / "1"),
                          prediction_log=str(log))
    monkeypatch.setattr(SeldonHook, "get_deployment", lambda self, name: dep)
    return {"log": log, "feedback": feedback, "root": root, "state": tmp_path / "state"}


def test_a_version_the_truth_contradicts_is_decayed_with_its_drop_report_and_plot(deployment):
    result = ModelQualityOperator(task_id="q", deployment_name="taxi", min_labels=20).execute({"run_id": "manual__1"})
    v1 = result["versions"]["1"]
    assert result["status"] == "decayed" and v1["value"] == 0.0 and v1["samples"] == 50
    assert v1["blessed_value"] == 0.9 and v1["drop"] == pytest.approx(0.9)
    assert Path(result["report"]) == deployment["state"] / "quality" / "taxi" / "quality-manual__1.json"
    assert json.loads(Path(result["report"]).read_text())["status"] == "decayed"
    assert Path(result["plot"]).read_text().startswith("<svg")


def test_too_few_labels(deployment):
    result = ModelQualityOperator(task_id="q", deployment_name="taxi", min_labels=500).execute({"run_id": "r"})
    assert result["status"] == "insufficient_labels"
    assert result["versions"]["1"]["reason"] == "50 labelled prediction(s), at least 500 are needed"


def test_a_floor_and_another_feedback_root(deployment, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "l.jsonl").write_text("".join(json.dumps({"request_id": f"r{i}", "label": int(i >= 25)}) + "\n"
                                           for i in range(50)))
    result = ModelQualityOperator(task_id="q", deployment_name="taxi", min_labels=20, floor=0.99,
                                  feedback_root=str(other)).execute({"run_id": "r"})
    assert result["versions"]["1"]["value"] == 1.0 and result["status"] == "ok"
    assert result["feedback_root"] == str(other)


@pytest.mark.parametrize("kwargs, message", [
    ({"model_type": "regression", "metric": "AUC"}, "q: metric 'AUC' is not one the quality check computes for "
                                                    "regression models"),
    ({"min_labels": "many"}, "q: min_labels must be an integer, got 'many'"),
    ({"max_drop": -1}, "q: max_drop must be >= 0, got -1"),
    ({"window_minutes": "soon"}, "q: window_minutes must be a number, got 'soon'"),
    ({"prediction_key": "logits"}, "q: prediction_key 'logits' is not an output of the served model \\(its outputs: "
                                   "probabilities\\)"),
])
def test_bad_arguments_are_named(deployment, kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        ModelQualityOperator(task_id="q", deployment_name="taxi", **kwargs).execute({"run_id": "r"})


def test_templated_fields():
    assert {"deployment_name", "metric", "window_minutes", "min_labels", "feedback_root"} <= set(
        ModelQualityOperator.template_fields)
