"""Test DAG: deploy a pushed model version and wait until it is served."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_mlops.operators.seldon import SeldonDeployOperator
from airflow_mlops.sensors.seldon import SeldonDeploymentSensor

with DAG(
    dag_id="test_serve",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={"pipeline_name": "it_serve", "deployment_name": "it-serve", "model_version": "latest"},
    default_args={"retries": 0},
):
    deploy = SeldonDeployOperator(task_id="deploy", deployment_name="{{ params.deployment_name }}",
                                  pipeline_name="{{ params.pipeline_name }}", model_version="{{ params.model_version }}")
    wait = SeldonDeploymentSensor(task_id="wait_for_serving", deployment_name="{{ params.deployment_name }}",
                                  model_version="{{ ti.xcom_pull(task_ids='deploy')['version'] }}",
                                  poke_interval=1, timeout=120)
    deploy >> wait
