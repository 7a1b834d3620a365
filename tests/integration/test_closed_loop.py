"""The closed loop under a real scheduler (`airflow standalone`, template DAGs): drifted traffic, then
its ground truth → ``mlops_monitor`` finds drift and v1's quality decayed → Asset event → the scheduler
starts ``mlops_train_deploy`` → retrained on the newest span → evaluated against the served model → the
new version is deployed → its quality on the new span's truth is ok. (A training window of spans 1 and 2
would mix the old tipping rule with the new one here: its model is not blessed, rightly; windows are
tested on consistent spans in ``test_evaluate_push.py``.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from airflow_mlops.hooks.runtime import RuntimeHook
from airflow_mlops.hooks.seldon import SeldonHook
from airflow_mlops.shared import typed_record
from airflow_mlops.utils.model_registry import ModelRegistry
from airflow_mlops.utils.taxi_spans import shifted, taxi_rows, write_span

from .conftest import call
from .test_browser import check_mlops_pages, page  # noqa: F401 - page: the browser fixture
from .test_serving import post, post_to

pytestmark = pytest.mark.integration
TRAIN, MONITOR, DEPLOYMENT, PIPELINE = "mlops_train_deploy", "mlops_monitor", "chicago-taxi", "chicago_taxi"


def wait_for(what: str, probe, timeout: float, every: float = 5):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(every)


def finished_run(s, dag_id: str, run_id: str, timeout: float = 900) -> tuple[str, dict[str, str]]:
    def state():
        run = call(f"{s.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}", s.token)[1]
        return run["state"] if run.get("state") in ("success", "failed") else None

    final = wait_for(f"{dag_id} run {run_id} to finish", state, timeout)
    tasks = call(f"{s.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", s.token)[1]["task_instances"]
    return final, {t["task_id"]: t["state"] for t in tasks}


def runs_of(s, dag_id: str) -> list[dict]:
    return call(f"{s.base}/api/v2/dags/{dag_id}/dagRuns?order_by=-run_after", s.token)[1].get("dag_runs", [])


def send(dep, records: list[dict]) -> list[str]:
    """POST the records 20 a request; the request ids the server answered with."""
    ids = []
    for start in range(0, len(records), 20):
        status, body = post(dep.url, {"jsonData": {"instances": records[start:start + 20]}})
        assert status == 200, body
        ids.append(body["meta"]["puid"])
    return ids


def tipped(row: dict) -> int:
    return int(float(row["tips"]) > 0.2 * float(row["fare"]))


@pytest.mark.parametrize("standalone", [("serving",)], indirect=True)
def test_drift_triggers_retraining_and_a_better_model_is_deployed(standalone, taxi_csv, page):  # noqa: F811
    s = standalone
    header, rows = taxi_rows(taxi_csv)  # shuffled: spans from one distribution, before the shift
    spans = s.tmp_path / "data"
    write_span(spans, 1, header, rows[:9000])  # enough trips to cover (99 % of) the categories of later spans
    # where new data lands, as a user sets it: the mlops_default connection's extra
    status, body = call(f"{s.base}/api/v2/connections", s.token, {
        "connection_id": "mlops_default", "conn_type": "mlops", "extra": json.dumps({"data_root": str(spans)})})
    assert status == 201, body
    for dag_id in (TRAIN, MONITOR):
        wait_for(f"{dag_id} parsed", lambda d=dag_id: call(f"{s.base}/api/v2/dags/{d}", s.token)[0] == 200, 180, 3)
    assert call(f"{s.base}/api/v2/dags/{TRAIN}", s.token, {"is_paused": False}, method="PATCH")[0] == 200

    # v1, trained on span 1 and deployed (a manual run: the trigger form's path)
    status, run = call(f"{s.base}/api/v2/dags/{TRAIN}/dagRuns", s.token,
                       {"logical_date": None, "conf": {"num_workers": 1, "train_steps": 300}})
    assert status == 200, run
    train_run = run["dag_run_id"]
    state, tasks = finished_run(s, TRAIN, train_run)
    assert state == "success", tasks
    seldon = SeldonHook(mlops_conn_id=None, state_dir=str(s.state_dir))
    dep = seldon.get_deployment(DEPLOYMENT)
    assert dep.version == 1

    # a new span lands and its (drifted) trips are served by v1
    new_span = shifted(rows[10500:])
    write_span(spans, 2, header, new_span)
    spec = json.loads((Path(dep.model_path) / "assets.extra" / "feature_spec.json").read_text())
    served = [row for row in new_span[:600] if row["fare"] and row["tips"]]
    ids = send(dep, [typed_record(row, spec) for row in served])
    # later, the truth of those trips lands as an outcome file (who tipped), keyed by the request ids
    truth = s.state_dir / "feedback" / "span-2.csv"
    truth.parent.mkdir(parents=True, exist_ok=True)
    truth.write_text("request_id,row,label\n" + "".join(
        f"{ids[i // 20]},{i % 20},{tipped(row)}\n" for i, row in enumerate(served)))

    # monitoring, on its schedule: unpaused, the scheduler runs it for the latest interval
    assert call(f"{s.base}/api/v2/dags/{MONITOR}", s.token, {"is_paused": False}, method="PATCH")[0] == 200
    monitor_run = wait_for("a scheduled mlops_monitor run", lambda: runs_of(s, MONITOR), 120)[0]
    assert monitor_run["run_type"] == "scheduled"
    state, tasks = finished_run(s, MONITOR, monitor_run["dag_run_id"], timeout=600)
    assert (state, tasks) == ("success", {"health": "success", "detect_drift": "success", "check_quality": "success",
                                          "request_retraining": "success"}), tasks
    # Airflow 3.3.2 answers this with a 500 while the run the event created is queued but not started
    # (AssetEventResponse requires created_dagruns[].start_date; apache/airflow#71360): ask again until it answers
    events = wait_for("the asset events", lambda: (lambda r: r[0] == 200 and r[1]["asset_events"])(
        call(f"{s.base}/api/v2/assets/events?source_dag_id={MONITOR}", s.token)), 120, 2)
    assert len(events) == 1 and events[0]["uri"] == f"mlops://{PIPELINE}/retrain"
    extra = events[0]["extra"]
    assert extra["reason"] == "drift, decay" and extra["model_version"] == 1, extra
    decayed = extra["decayed_versions"]["1"]
    assert decayed["samples"] == len(served) and decayed["value"] < decayed["blessed_value"] - 0.05, decayed
    assert {"fare", "trip_miles"} <= set(extra["drifted_features"]) and Path(extra["report"]).is_file()

    # the scheduler starts the retraining on the event; v2 is blessed against v1 and deployed
    retrain = wait_for("an asset-triggered mlops_train_deploy run",
                       lambda: [r for r in runs_of(s, TRAIN) if r["run_type"] == "asset_triggered"], 180)[0]
    state, tasks = finished_run(s, TRAIN, retrain["dag_run_id"])
    assert state == "success", tasks
    assert tasks["Pusher"] == "success" and tasks["deploy"] == "success" and tasks["wait_for_serving"] == "success"
    versions = ModelRegistry(s.state_dir / "models" / PIPELINE).versions()
    assert [v.version for v in versions] == [1, 2] and versions[1].run_id == retrain["dag_run_id"]
    assert seldon.get_deployment(DEPLOYMENT).version == 2
    assert seldon.deployments.status(DEPLOYMENT)["serving"] == 2
    # lineage: v2 was trained on span 2
    tfx = RuntimeHook(mlops_conn_id=None, state_dir=str(s.state_dir))
    found = tfx.run_step("mlmd.training_examples", {
        "metadata": tfx.metadata, "model_artifact_id": versions[1].model_artifact_id, "features": ["fare"],
        "max_rows": 10, "dest": str(s.tmp_path / "v2-reference.jsonl")}, binds=[str(s.state_dir), str(s.tmp_path)])
    assert found["span"] == 2 and found["spans"] == [2]
    # the baseline was the model the deployment served (v1), resolved by its artifact id in the Evaluator's task
    executions = {e["node"]: e for e in tfx.run_step("mlmd.lineage", {
        "metadata": tfx.metadata, "pipeline_name": PIPELINE, "run_id": retrain["dag_run_id"]},
        binds=[str(s.state_dir)])["executions"]}
    assert executions["Evaluator.served_model"]["state"] == "COMPLETE"
    assert [a["id"] for a in executions["Evaluator"]["inputs"]["baseline_model"]] == [versions[0].model_artifact_id]
    status, transformed = call(f"{s.base}/api/v2/dags/{TRAIN}/dagRuns/{retrain['dag_run_id']}/taskInstances/Transform/"
                               "xcomEntries/return_value", s.token)
    assert status == 200 and transformed["value"]["training_spans"] == [2], transformed
    status, why = call(f"{s.base}/api/v2/dags/{TRAIN}/dagRuns/{retrain['dag_run_id']}/taskInstances/why_this_run/"
                       "xcomEntries/return_value", s.token)
    assert status == 200 and why["value"]["reason"] == "drift, decay", why

    # v2 serves the new span's trips; their truth comes back through the feedback endpoint: quality ok
    dep = seldon.get_deployment(DEPLOYMENT)
    later = [row for row in new_span[600:1200] if row["fare"] and row["tips"]]
    ids = send(dep, [typed_record(row, spec) for row in later])
    for n, rid in enumerate(ids):
        status, body = post_to(dep.url, "/api/v1.0/feedback", {"request": {"meta": {"puid": rid}}, "truth": {
            "data": {"ndarray": [tipped(row) for row in later[n * 20:n * 20 + 20]]}}})
        assert status == 200, body
    # no further retraining from here on (the drift may persist): the pages below are checked on v1 and v2
    assert call(f"{s.base}/api/v2/dags/{TRAIN}", s.token, {"is_paused": True}, method="PATCH")[0] == 200
    # v2's latency window starts with its first answers, which pay its graph's warm-up: with two more test workers
    # on the 2 cores, that can pass the template's 200 ms p99 (the health check's thresholds are tested on their
    # own in test_drift_detection.py); this run judges quality, so its p99 bound is the test DAGs' 1000 ms
    status, run = call(f"{s.base}/api/v2/dags/{MONITOR}/dagRuns", s.token,
                       {"logical_date": None, "conf": {"max_p99_ms": 1000}})
    assert status == 200, run
    state, tasks = finished_run(s, MONITOR, run["dag_run_id"], timeout=600)
    assert state == "success" and tasks["check_quality"] == "success", tasks  # (drift may persist: v2's reference
    # holds span 1 too, the traffic is span 2's; retraining would be asked for drift alone, not decay)
    status, quality = call(f"{s.base}/api/v2/dags/{MONITOR}/dagRuns/{run['dag_run_id']}/taskInstances/check_quality/"
                           "xcomEntries/return_value", s.token)
    assert status == 200, quality
    v2 = quality["value"]["versions"]["2"]
    assert quality["value"]["status"] == "ok" and quality["value"]["serving"] == 2, v2
    assert v2["samples"] == len(later) and v2["value"] >= v2["blessed_value"] - 0.05, v2

    # the MLOps pages of Airflow's UI show this loop, and roll the deployment back to v1
    check_mlops_pages(page, s, pipeline=PIPELINE, deployment=DEPLOYMENT, train_run=train_run,
                      retrain_run=retrain["dag_run_id"], monitor_run=monitor_run["dag_run_id"])
