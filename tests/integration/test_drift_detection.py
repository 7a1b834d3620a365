"""DriftDetectionOperator on a real deployment: reference through ML Metadata lineage, window from the
prediction log, real Alibi Detect in the drift runtime, under `airflow dags test`."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from airflow_mlops.hooks.seldon import SeldonHook
from airflow_mlops.utils.model_registry import ModelRegistry

from .test_ingest_dag import TEST_DAGS, dags_test, write_slice
from .test_serving import post

pytestmark = pytest.mark.integration
PIPELINE, NAME = "it_drift", "it-drift"


@pytest.fixture(scope="module")
def state(tmp_path_factory, airflow_home, taxi_csv):
    root = tmp_path_factory.mktemp("drift")
    write_slice(taxi_csv, root / "data" / "span-1" / "data.csv", 0, 1000)
    st = {"home": airflow_home, "state_dir": root / "state", "data": root / "data", "csv": taxi_csv}
    code, log, _ = dags_test(st, {"pipeline_name": PIPELINE, "data_root": str(st["data"]), "eval_threshold": 0.5},
                             dag_id="test_train_push", dags_folder=TEST_DAGS)
    assert code == 0, log[-4000:]
    st["hook"] = SeldonHook(mlops_conn_id=None, state_dir=str(st["state_dir"]))
    st["dep"], _ = st["hook"].deploy(NAME, str(st["state_dir"] / "models" / PIPELINE), "latest")
    model = ModelRegistry(st["state_dir"] / "models" / PIPELINE).get("latest")
    spec = json.loads((Path(model.path) / "assets.extra" / "feature_spec.json").read_text())
    cast = {"float": float, "int": lambda v: int(float(v)), "string": str}
    with open(taxi_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))[:1000]  # the span the model was trained on
    st["rows"] = [{k: cast[spec[k]["dtype"]](v) for k, v in r.items() if k in spec and v != ""} for r in rows]
    yield st
    st["hook"].undeploy(NAME)


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
