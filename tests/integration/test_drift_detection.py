"""DriftDetectionOperator on a real deployment: reference through ML Metadata lineage, window from the
prediction log, real Alibi Detect in the drift runtime, under `airflow dags test`."""

from __future__ import annotations

import csv
import json
import random
import threading
import time
from pathlib import Path

import pytest

from airflow_mlops.serving.backends import DeployRequest
from airflow_mlops.shared import typed_record
from airflow_mlops.utils.model_registry import ModelRegistry

from .conftest import TAXI_MODEL, copy_of_trained_taxi_model
from .test_ingest_dag import TEST_DAGS, dags_test
from .test_serving import post

pytestmark = pytest.mark.integration
PIPELINE, NAME = TAXI_MODEL, "it-drift"


@pytest.fixture(scope="module")
def state(tmp_path_factory, airflow_home, taxi_csv, trained_taxi_model):
    st = copy_of_trained_taxi_model(trained_taxi_model, tmp_path_factory.mktemp("drift"), airflow_home, taxi_csv)
    st["dep"] = st["hook"].deployments.deploy(DeployRequest(NAME, str(st["state_dir"] / "models" / PIPELINE), "latest"))
    model = ModelRegistry(st["state_dir"] / "models" / PIPELINE).get("latest")
    spec = json.loads((Path(model.path) / "assets.extra" / "feature_spec.json").read_text())
    with open(taxi_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))[:1000]  # the span the model was trained on
    st["rows"] = [typed_record(r, spec) for r in rows]
    yield st
    st["hook"].deployments.undeploy(NAME)


def replay(state, records):
    for start in range(0, len(records), 50):
        code, body = post(state["dep"].url, {"jsonData": {"instances": records[start:start + 50]}})
        assert code == 200, body


def check(state, **params):
    code, log, run_id = dags_test(state, {"deployment_name": NAME, **params}, dag_id="test_drift",
                                  dags_folder=TEST_DAGS)
    assert code == 0, log[-4000:]
    reports = sorted((state["state_dir"] / "drift" / NAME / "reports").glob("*.json"))
    return json.loads(reports[-1].read_text()) if reports else None, log


def test_normal_traffic_is_no_drift(state):
    replay(state, random.Random(1).sample(state["rows"], 300))
    result, log = check(state, window_size=300)
    assert result["status"] == "ok" and result["is_drift"] is False, result["drifted_features"]
    assert result["window_size"] == 300 and result["model_version"] == 1 and result["reference_size"] > 300
    assert "reference:" in log and "training records of model version 1" in log
    assert result["detector_reused"] is False


def test_drifted_traffic_is_found_on_the_shifted_features(state):
    drifted = [dict(r, fare=r["fare"] * 3 + 10, trip_miles=r.get("trip_miles", 0) * 4 + 5)
               for r in random.Random(2).sample(state["rows"], 300)]
    replay(state, drifted)
    result, log = check(state, window_size=300)
    assert result["is_drift"] is True and set(result["drifted_features"]) == {"fare", "trip_miles"}
    assert result["features"]["fare"]["p_val"] < result["threshold"]
    assert result["detector_reused"] is True  # fitted once for model version 1
    assert "DRIFT in it-drift" in log


def test_a_small_window_is_insufficient_data(state):
    result, log = check(state, window_size=20)
    assert result["status"] == "insufficient_data" and result["is_drift"] is False
    assert "not enough traffic to check drift" in log


def test_the_drift_report_has_a_png_of_the_drifted_features(state):
    result, _ = check(state, window_size=300)  # the drifted traffic of the test above is still the last 300
    png = Path(result["report_png"])
    assert result["is_drift"] and png.parent == Path(result["report"]).parent
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def health(state, **params):
    return dags_test(state, {"deployment_name": NAME, **params}, dag_id="test_health", dags_folder=TEST_DAGS)


def test_health_check_passes_then_fails_on_errors_and_on_latency(state):
    for record in state["rows"][:40]:  # 40 answered requests (and those of the tests above) in the window
        assert post(state["dep"].url, {"jsonData": {"instances": [record]}})[0] == 200
    code, log, _ = health(state)
    assert code == 0, log[-4000:]
    assert "deployment it-drift is healthy" in log and "judged by the prediction_log" in log, log[-3000:]
    for _ in range(30):  # 30 failed requests among at most 82: more than 20 %
        code, _ = post(state["dep"].url, {"jsonData": {"instances": [{"fare": "free"}]}})
        assert code == 400
    code, log, _ = health(state, max_error_rate=0.2)
    assert code != 0 and "deployment it-drift is unhealthy: error rate" in log and "'400': 30" in log, log[-3000:]
    code, log, _ = health(state, max_error_rate=0.9, max_p99_ms=0.001)
    assert code != 0 and "p99 latency" in log and "> 0.001 ms (prediction_log)" in log, log[-3000:]


def test_drift_sensor_defers_until_drifted_traffic_arrives(state):
    replay(state, random.Random(3).sample(state["rows"], 300))  # the last 300: normal again
    reports = state["state_dir"] / "drift" / NAME / "reports"
    before = set(reports.glob("*.json"))
    drifted = [dict(r, fare=r["fare"] * 3 + 10) for r in random.Random(4).sample(state["rows"], 300)]

    def send_drift_after_the_first_check():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            fresh = set(reports.glob("*.json")) - before
            if fresh and not json.loads(next(iter(fresh)).read_text())["is_drift"]:
                time.sleep(3)  # the sensor is deferred by now: the trigger watches the log
                replay(state, drifted)
                return
            time.sleep(0.5)

    sender = threading.Thread(target=send_drift_after_the_first_check)
    sender.start()
    code, log, _ = dags_test(state, {"deployment_name": NAME, "window_size": 300}, dag_id="test_drift_sensor",
                             dags_folder=TEST_DAGS)
    sender.join()
    assert code == 0, log[-4000:]
    assert "no drift yet; deferring until new traffic arrives" in log
    assert "DRIFT in it-drift: fare" in log
