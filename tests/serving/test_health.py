"""Serving health figures from a prediction log and from the server's Prometheus text."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from airflow_mlops.serving.health import breaches, parse_metrics, window_health

def ago(minutes: float) -> str:
    """A timestamp ``minutes`` before now (taken when the entry is made: the suite may run for long)."""
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes)).isoformat()


def write(log_dir, entries):
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{datetime.now(timezone.utc):%Y-%m-%d}.jsonl", "a") as handle:
        for entry in entries:
            handle.write(json.dumps(entry) + "\n")


def ok(ms: float, minutes_ago: float = 0) -> dict:
    return {"ts": ago(minutes_ago), "model_version": 1, "instances": [{}], "ms": ms}


def failed(status: int, minutes_ago: float = 0) -> dict:
    return {"ts": ago(minutes_ago), "model_version": 1, "status": status,
            "error": "row 0: feature 'fare' ...", "ms": 0.5}


def test_window_counts_requests_errors_and_latency_of_the_window_only(tmp_path):
    write(tmp_path, [ok(float(ms)) for ms in range(1, 99)] + [failed(400), failed(500)]
          + [ok(5000, minutes_ago=120), failed(500, minutes_ago=120)])  # outside the window
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    figures = window_health(tmp_path, minutes=15)
    assert figures["requests"] == 100 and figures["errors"] == {"400": 1, "500": 1}
    assert figures["error_rate"] == pytest.approx(0.02)
    assert figures["p50_ms"] == 49 and figures["p99_ms"] == 98


def test_an_empty_or_missing_log_has_no_figures(tmp_path):
    figures = window_health(tmp_path / "none", minutes=15)
    assert figures["requests"] == 0 and figures["error_rate"] is None and figures["p99_ms"] is None
    assert breaches(figures, 0.01, 10) == []


METRICS = """# HELP mlops_requests_total x
mlops_requests_total{deployment_name="d",method="predict",worker_id="1"} 90.0
mlops_requests_total{deployment_name="d",method="predict",worker_id="2"} 8.0
mlops_request_errors_total{method="predict",status="400",worker_id="1"} 2.0
mlops_prediction_ms_bucket{le="0.001",method="predict"} 10.0
mlops_prediction_ms_bucket{le="0.005",method="predict"} 97.0
mlops_prediction_ms_bucket{le="0.02",method="predict"} 98.0
mlops_prediction_ms_bucket{le="+Inf",method="predict"} 98.0
mlops_prediction_ms_count{method="predict"} 98.0
"""


def test_server_metrics_totals_and_p99_bucket():
    figures = parse_metrics(METRICS)
    assert figures["requests"] == 100 and figures["errors"] == {"400": 2}
    assert figures["error_rate"] == pytest.approx(0.02) and figures["p99_ms"] == pytest.approx(20.0)


@pytest.mark.parametrize("max_error_rate, max_p99_ms, expected", [
    (0.05, 50, []),
    (0.01, 50, ["error rate 2.0% > 1.0%"]),
    (0.05, 10, ["p99 latency 20.0 ms > 10 ms (metrics)"]),
])
def test_breaches_name_the_threshold(max_error_rate, max_p99_ms, expected):
    found = breaches(parse_metrics(METRICS), max_error_rate, max_p99_ms)
    assert len(found) == len(expected) and all(f.startswith(e) for f, e in zip(found, expected))
