"""Reading the extra of the event that triggered a run."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

from airflow_mlops.utils.assets import asset_event_extra, data_uri, retrain_uri


def event(day: int, **extra):
    return SimpleNamespace(timestamp=datetime(2026, 11, day, tzinfo=timezone.utc), extra=extra)


def test_newest_event_wins_across_assets():
    events = {data_uri("p"): [event(1, data_root="/old")], retrain_uri("p"): [event(3, data_root="/new"), event(2)]}
    assert asset_event_extra(events, "data_root") == "/new"


def test_manual_runs_and_missing_keys_get_the_default():
    assert asset_event_extra(None, "data_root") == ""
    assert asset_event_extra({}, "data_root", "x") == "x"
    assert asset_event_extra({"a": [event(1)]}, "data_root", "x") == "x"


def test_uris():
    assert retrain_uri("chicago_taxi") == "mlops://chicago_taxi/retrain"
    assert data_uri("chicago_taxi") == "mlops://chicago_taxi/data"


def test_a_retraining_request_says_why():
    from airflow_mlops.utils.assets import retraining_request

    drift = {"is_drift": True, "deployment": "d", "model_version": 1, "drifted_features": ["fare"],
             "features": {"fare": {"p_val": 0.001}, "miles": {}}, "report": "/r.json"}
    quality = {"status": "decayed", "deployment": "d", "report": "/q.json", "plot": "/q.svg", "versions": {
        "1": {"status": "decayed", "metric": "AUC", "value": 0.6, "blessed_value": 0.8, "drop": 0.2, "samples": 900,
              "reason": "AUC fell"},
        "2": {"status": "ok", "metric": "AUC", "value": 0.8}}}
    assert retraining_request({"is_drift": False}, {"status": "insufficient_labels"}) is None
    assert retraining_request(drift, None, "/data")["reason"] == "drift"
    both = retraining_request(drift, quality, "/data")
    assert both["reason"] == "drift, decay" and both["data_root"] == "/data" and both["p_values"] == {"fare": 0.001}
    assert both["decayed_versions"] == {"1": {"metric": "AUC", "value": 0.6, "blessed_value": 0.8, "drop": 0.2,
                                              "samples": 900, "reason": "AUC fell"}}
    assert retraining_request(None, quality)["reason"] == "decay"


def test_why_a_training_run_runs():
    from airflow_mlops.utils.assets import run_reason

    assert run_reason(None) == {"reason": "manual", "event": None}
    assert run_reason({}, "scheduled")["reason"] == "scheduled"
    retrain = SimpleNamespace(timestamp=datetime(2026, 11, 2, tzinfo=timezone.utc), extra={"reason": "decay"},
                              asset=SimpleNamespace(uri=retrain_uri("p")))
    data = SimpleNamespace(timestamp=datetime(2026, 11, 1, tzinfo=timezone.utc), extra={"span": 3},
                           asset=SimpleNamespace(uri=data_uri("p")))
    assert run_reason({retrain_uri("p"): [retrain], data_uri("p"): [data]})["reason"] == "decay"
    found = run_reason({data_uri("p"): [data]})
    assert found == {"reason": "new data", "asset": "mlops://p/data", "event": {"span": 3}}
