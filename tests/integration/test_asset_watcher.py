"""Event-driven ingest under a real scheduler and triggerer: a new span-<N>/ starts mlops_ingest (AssetWatcher)."""

from __future__ import annotations

import pytest

from .conftest import call
from .test_closed_loop import wait_for
from .test_ingest_dag import write_slice

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("standalone", [{"env": {"AIRFLOW__MLOPS__DATA_ROOT": "{tmp_path}/landing"}}],
                         indirect=True)
def test_a_new_span_directory_starts_the_ingest_dag(standalone, taxi_csv):
    base, token = standalone.base, standalone.token
    landing = standalone.tmp_path / "landing"
    write_slice(taxi_csv, landing / "span-1" / "data.csv", 0, 600)  # there before: counts as seen, not ingested
    dag = f"{base}/api/v2/dags/mlops_ingest"
    wait_for("mlops_ingest parsed", lambda: call(dag, token)[0] == 200, 120)
    assert call(dag, token, {"is_paused": False}, method="PATCH")[0] == 200
    # the triggerer starts the watcher once the DAG is unpaused; give it a look at the directory first
    wait_for("the watcher running", lambda: "watching" in standalone.log.read_text() and "after span 1"
             in standalone.log.read_text(), 180)
    write_slice(taxi_csv, landing / "span-2" / "data.csv", 600, 1200)
    runs = wait_for("an asset-triggered run", lambda: [r for r in call(f"{dag}/dagRuns", token)[1]["dag_runs"]
                                                       if r["run_type"] == "asset_triggered"], 240)
    assert len(runs) == 1, runs
    run_id = runs[0]["dag_run_id"]
    state = wait_for("the run's end", lambda: (lambda s: s if s in ("success", "failed") else None)(
        call(f"{dag}/dagRuns/{run_id}", token)[1]["state"]), 600)
    tasks = {t["task_id"]: t["state"] for t in call(f"{dag}/dagRuns/{run_id}/taskInstances", token)[1]["task_instances"]}
    assert state == "success", tasks
    assert tasks == {"CsvExampleGen": "success", "StatisticsGen": "success", "SchemaGen": "success",
                     "ExampleValidator": "success", "announce_data": "success"}
    status, xcom = call(f"{dag}/dagRuns/{run_id}/taskInstances/announce_data/xcomEntries/return_value", token)
    assert status == 200 and xcom["value"]["span"] == 2 and xcom["value"]["data_root"] == str(landing), xcom
    events = call(f"{base}/api/v2/assets/events?source_dag_id=mlops_ingest", token)[1]["asset_events"]
    assert [e["extra"]["span"] for e in events if e["uri"] == "mlops://chicago_taxi/data"] == [2]
