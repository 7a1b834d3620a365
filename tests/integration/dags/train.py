"""Test DAG: ingest, validate, Transform, then Horovod training."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_mlops.operators.tfx import (
    CsvExampleGenOperator,
    ExampleValidatorOperator,
    HorovodTrainerOperator,
    SchemaGenOperator,
    StatisticsGenOperator,
    TransformOperator,
)

with DAG(
    dag_id="test_train",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={"pipeline_name": "it_train", "data_root": "", "num_workers": 2, "train_steps": 60},
    default_args={"pipeline_name": "{{ params.pipeline_name }}", "retries": 0},
):
    gen = CsvExampleGenOperator(task_id="CsvExampleGen", input_base="{{ params.data_root }}")
    stats = StatisticsGenOperator(task_id="StatisticsGen", examples=gen)
    schema = SchemaGenOperator(task_id="SchemaGen", statistics=stats)
    validator = ExampleValidatorOperator(task_id="ExampleValidator", statistics=stats, schema=schema)
    transform = TransformOperator(task_id="Transform", examples=gen, schema=schema)
    trainer = HorovodTrainerOperator(
        task_id="Trainer", examples=transform, transform_graph=transform, schema=schema,
        num_workers="{{ params.num_workers }}", train_steps="{{ params.train_steps }}", eval_steps=5,
    )
    validator >> transform
