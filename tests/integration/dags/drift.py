"""Test DAG: check a deployment's served traffic for drift."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_mlops.operators.drift import DriftDetectionOperator

with DAG(
    dag_id="test_drift",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={"deployment_name": "it-drift", "window_size": 300},
    default_args={"retries": 0},
):
    DriftDetectionOperator(task_id="drift", deployment_name="{{ params.deployment_name }}",
                           window_size="{{ params.window_size }}")
