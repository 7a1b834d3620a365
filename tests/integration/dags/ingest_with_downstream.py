"""Test DAG: the ingest tasks followed by a downstream task that records that it ran."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, task

from airflow_mlops.operators.tfx import (
    CsvExampleGenOperator,
    ExampleValidatorOperator,
    SchemaGenOperator,
    StatisticsGenOperator,
)

with DAG(
    dag_id="test_ingest_with_downstream",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={"pipeline_name": "it", "data_root": ""},
    default_args={"pipeline_name": "{{ params.pipeline_name }}", "retries": 0},
):
    gen = CsvExampleGenOperator(task_id="CsvExampleGen", input_base="{{ params.data_root }}")
    stats = StatisticsGenOperator(task_id="StatisticsGen", examples=gen)
    schema = SchemaGenOperator(task_id="SchemaGen", statistics=stats)
    validator = ExampleValidatorOperator(task_id="ExampleValidator", statistics=stats, schema=schema)

    @task
    def downstream():
        Path(os.environ["MLOPS_TEST_MARKER"]).write_text("ran")

    validator >> downstream()
