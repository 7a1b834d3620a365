"""End to end with a real scheduler: `airflow standalone`, a run triggered through the REST API
(what the UI's trigger form calls), executed by the scheduler's executor."""

from __future__ import annotations

import time

import pytest

from .conftest import call

pytestmark = pytest.mark.integration


def test_trigger_with_params_runs_under_the_scheduler(standalone):
    base, token, tmp_path = standalone.base, standalone.token, standalone.tmp_path
    dag = f"{base}/api/v2/dags/mlops_ingest"
    deadline = time.monotonic() + 120
    while call(dag, token)[0] != 200:  # the DAG processor has not parsed the file yet
        assert time.monotonic() < deadline, "mlops_ingest never appeared"
        time.sleep(3)
    assert call(dag, token, {"is_paused": False}, method="PATCH")[0] == 200

    status, error = call(f"{dag}/dagRuns", token, {"logical_date": None, "conf": {"pipeline_name": "bad name!"}})
    assert status == 400 and "param pipeline_name" in error["detail"]

    status, run = call(f"{dag}/dagRuns", token, {"logical_date": None, "conf": {"pipeline_name": "e2e_taxi"}})
    assert status == 200, run
    run_id = run["dag_run_id"]
    deadline = time.monotonic() + 600
    while True:
        state = call(f"{dag}/dagRuns/{run_id}", token)[1]["state"]
        if state in ("success", "failed"):
            break
        assert time.monotonic() < deadline, "the run did not finish in 600 s"
        time.sleep(5)
    tasks = {t["task_id"]: (t["state"], t["operator"])
             for t in call(f"{dag}/dagRuns/{run_id}/taskInstances", token)[1]["task_instances"]}
    assert state == "success", tasks
    assert tasks == {
        "CsvExampleGen": ("success", "CsvExampleGenOperator"),
        "StatisticsGen": ("success", "StatisticsGenOperator"),
        "SchemaGen": ("success", "SchemaGenOperator"),
        "ExampleValidator": ("success", "ExampleValidatorOperator"),
        "announce_data": ("skipped", "_PythonDecoratedOperator"),  # e2e_taxi is not the data Asset's pipeline
    }
    assert (tmp_path / "state" / "schemas" / "e2e_taxi" / "v1" / "schema.pbtxt").is_file()
