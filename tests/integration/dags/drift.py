"""Test DAGs: check a deployment's served traffic for drift (operator, deferrable sensor) and its health."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_mlops.operators.drift import DriftDetectionOperator
from airflow_mlops.operators.seldon import SeldonHealthCheckOperator
from airflow_mlops.sensors.drift import DriftSensor

with DAG(
    dag_id="test_drift",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={"deployment_name": "it-drift", "window_size": 300},
    default_args={"retries": 0},
):
    DriftDetectionOperator(task_id="drift", deployment_name="{{ params.deployment_name }}",
                           window_size="{{ params.window_size }}")

with DAG(
    dag_id="test_drift_sensor",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={"deployment_name": "it-drift", "window_size": 300},
    default_args={"retries": 0},
):
    DriftSensor(task_id="wait_for_drift", deployment_name="{{ params.deployment_name }}",
                window_size="{{ params.window_size }}", deferrable=True, poke_interval=2, timeout=300)

with DAG(
    dag_id="test_health",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={"deployment_name": "it-drift", "max_error_rate": 0.05, "max_p99_ms": 1000},
    default_args={"retries": 0},
):
    SeldonHealthCheckOperator(task_id="health", deployment_name="{{ params.deployment_name }}", window_minutes=60,
                              max_error_rate="{{ params.max_error_rate }}", max_p99_ms="{{ params.max_p99_ms }}",
                              min_requests=20)
