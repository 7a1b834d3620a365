"""Every template DAG: imports cleanly, without ML libraries, with tags and docs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from airflow.dag_processing.dagbag import DagBag

from .conftest import DAGS

ML_MODULES = ("tensorflow", "tfx", "ml_metadata", "tensorflow_data_validation", "apache_beam", "seldon_core",
              "alibi_detect", "horovod", "torch", "keras")
DAG_FILES = sorted(DAGS.glob("*.py"))


@pytest.fixture(scope="module")
def dagbag():
    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert len(dagbag.dags) >= len(DAG_FILES)


def test_every_dag_has_tags_docs_and_params(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert "mlops" in dag.tags
        assert dag.doc_md and len(dag.doc_md) > 100, f"{dag_id} has no doc_md"
        assert dag.description, f"{dag_id} has no description"


def test_ingest_dag_shape(dagbag):
    dag = dagbag.dags["mlops_ingest"]
    assert [t.task_id for t in dag.topological_sort()] == ["CsvExampleGen", "StatisticsGen", "SchemaGen",
                                                           "ExampleValidator", "announce_data"]
    assert [o.uri for o in dag.get_task("announce_data").outlets] == ["mlops://chicago_taxi/data"]
    assert {t.task_id: type(t).__name__ for t in dag.tasks}["CsvExampleGen"] == "CsvExampleGenOperator"
    assert set(dag.params.keys()) >= {"pipeline_name", "data_root", "span", "schema_path"}


def test_train_deploy_dag_shape(dagbag):
    dag = dagbag.dags["mlops_train_deploy"]
    order = [t.task_id for t in dag.topological_sort() if t.task_id != "why_this_run"]
    assert order[-7:] == ["Transform", "Trainer", "Evaluator", "Pusher", "approve", "deploy", "wait_for_serving"]
    assert order.index("ExampleValidator") < order.index("Transform")
    kinds = {t.task_id: type(t).__name__ for t in dag.tasks}
    assert kinds["Trainer"] == "HorovodTrainerOperator" and kinds["Evaluator"] == "EvaluatorOperator"
    assert kinds["Pusher"] == "PusherOperator" and kinds["deploy"] == "SeldonDeployOperator"
    assert kinds["wait_for_serving"] == "SeldonDeploymentSensor" and "why_this_run" in kinds
    assert kinds["approve"] == "ModelApprovalOperator"
    approve = dag.get_task("approve")
    assert approve.upstream_task_ids == {"Pusher"} and approve.downstream_task_ids == {"deploy"}
    assert approve.required == "{{ params.require_approval }}" and dag.params["require_approval"] is False
    assert set(approve.params.keys()) == {"reason"}  # the approval form asks only for a reason
    assert set(dag.params.keys()) >= {"num_workers", "train_steps", "eval_metric", "eval_threshold", "max_regression"}


def test_training_is_scheduled_on_new_data_or_a_retrain_request(dagbag):
    dag = dagbag.dags["mlops_train_deploy"]
    condition = dag.timetable.asset_condition
    assert type(condition).__name__ == "AssetAny"  # either one starts a run
    assert {a.uri for a in condition.objects} == {"mlops://chicago_taxi/data", "mlops://chicago_taxi/retrain"}


def test_monitor_dag_shape(dagbag):
    dag = dagbag.dags["mlops_monitor"]
    kinds = {t.task_id: type(t).__name__ for t in dag.tasks}
    assert kinds == {"health": "SeldonHealthCheckOperator", "detect_drift": "DriftDetectionOperator",
                     "check_quality": "ModelQualityOperator", "request_retraining": "_PythonDecoratedOperator"}
    assert dag.get_task("detect_drift").downstream_task_ids == {"request_retraining"}
    assert dag.get_task("check_quality").downstream_task_ids == {"request_retraining"}
    assert dag.get_task("request_retraining").trigger_rule == "all_done"  # one failed check does not block the other
    assert not dag.get_task("health").downstream_task_ids  # a health alert does not stop the drift check
    assert [o.uri for o in dag.get_task("request_retraining").outlets] == ["mlops://chicago_taxi/retrain"]
    assert dag.schedule is not None and not dag.catchup


def test_rollback_dag_shape(dagbag):
    dag = dagbag.dags["mlops_rollback"]
    assert dag.get_task("choose").downstream_task_ids == {"rollback", "undeploy", "promote"}
    assert dag.get_task("rollback").downstream_task_ids == {"wait_for_serving"}
    assert {t.task_id: type(t).__name__ for t in dag.tasks}["rollback"] == "SeldonRollbackOperator"


def test_bad_param_is_rejected_by_the_trigger_form_schema(dagbag):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(dict(dagbag.dags["mlops_ingest"].params.items()))
    with pytest.raises(ParamValidationError, match="param pipeline_name: 'has spaces/and slashes' does not match"):
        params["pipeline_name"] = "has spaces/and slashes"
    with pytest.raises(ParamValidationError, match="param span"):
        params["span"] = -2


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_no_ml_library(dag_file):
    code = (
        "import sys, json, runpy;"
        "import airflow.sdk;"  # Airflow's own import cost is not ours
        f"runpy.run_path({str(dag_file)!r});"
        "import airflow_mlops.operators.tfx, airflow_mlops.hooks.runtime, airflow_mlops.cli;"
        "print(json.dumps({'modules': sorted(sys.modules)}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    loaded = [m for m in result["modules"] if m.split(".")[0] in ML_MODULES]
    assert loaded == []


def test_ingest_is_event_driven_when_a_data_directory_is_watched(tmp_path, monkeypatch):
    """With [mlops] data_root set, mlops_ingest is scheduled on the landing Asset, watched by NewSpanTrigger."""
    from airflow_mlops.triggers.spans import NewSpanTrigger

    manual = DagBag(dag_folder=str(DAGS / "mlops_ingest.py")).dags["mlops_ingest"]
    assert type(manual.timetable).__name__ == "NullTimetable"  # no data_root: runs when triggered
    monkeypatch.setenv("AIRFLOW__MLOPS__DATA_ROOT", str(tmp_path / "landing"))
    dag = DagBag(dag_folder=str(DAGS / "mlops_ingest.py")).dags["mlops_ingest"]
    asset = dag.timetable.asset_condition
    assert asset.uri == "mlops://chicago_taxi/landing"
    (watcher,) = asset.watchers
    assert isinstance(watcher.trigger, NewSpanTrigger) and watcher.trigger.data_root == str(tmp_path / "landing")


def test_extra_links_survive_serialization(dagbag):
    """The API server shows links of deserialized DAGs: the provider registers the link classes (extra-links)."""
    from airflow.serialization.serialized_objects import DagSerialization

    for dag_id, task_id, link in [("mlops_train_deploy", "Pusher", "MLOps model version"),
                                  ("mlops_train_deploy", "Evaluator", "MLOps model version"),
                                  ("mlops_train_deploy", "deploy", "MLOps deployment"),
                                  ("mlops_monitor", "detect_drift", "MLOps drift report")]:
        restored = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.dags[dag_id]))
        assert link in restored.get_task(task_id).extra_links, (dag_id, task_id)
