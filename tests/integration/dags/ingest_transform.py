"""Test DAG: ingest and validate, then TFX Transform with the taxi module file."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_mlops.operators.tfx import (
    CsvExampleGenOperator,
    ExampleValidatorOperator,
    SchemaGenOperator,
    StatisticsGenOperator,
    TransformOperator,
)

with DAG(
    dag_id="test_ingest_transform",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={"pipeline_name": "it_transform", "data_root": "", "module_file": ""},
    default_args={"pipeline_name": "{{ params.pipeline_name }}", "retries": 0},
):
    gen = CsvExampleGenOperator(task_id="CsvExampleGen", input_base="{{ params.data_root }}")
    stats = StatisticsGenOperator(task_id="StatisticsGen", examples=gen)
    schema = SchemaGenOperator(task_id="SchemaGen", statistics=stats)
    validator = ExampleValidatorOperator(task_id="ExampleValidator", statistics=stats, schema=schema)
    transform = TransformOperator(
        task_id="Transform", examples=gen, schema=schema, module_file="{{ params.module_file }}"
    )
    validator >> transform
