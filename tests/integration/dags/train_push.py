"""Test DAG: the template's full chain on a small slice, plus a downstream "deploy" task."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from airflow_mlops.operators.tfx import (
    CsvExampleGenOperator,
    EvaluatorOperator,
    ExampleValidatorOperator,
    HorovodTrainerOperator,
    PusherOperator,
    SchemaGenOperator,
    StatisticsGenOperator,
    TransformOperator,
)

with DAG(
    dag_id="test_train_push",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={"pipeline_name": "it_push", "data_root": "", "num_workers": 2, "train_steps": 200,
            "eval_metric": "AUC", "eval_threshold": 0.5, "max_regression": 0.0, "training_spans": None},
    default_args={"pipeline_name": "{{ params.pipeline_name }}", "retries": 0},
):
    gen = CsvExampleGenOperator(task_id="CsvExampleGen", input_base="{{ params.data_root }}")
    stats = StatisticsGenOperator(task_id="StatisticsGen", examples=gen)
    schema = SchemaGenOperator(task_id="SchemaGen", statistics=stats)
    validator = ExampleValidatorOperator(task_id="ExampleValidator", statistics=stats, schema=schema)
    transform = TransformOperator(task_id="Transform", examples=gen, schema=schema,
                                  training_spans="{{ params.training_spans or '' }}")
    trainer = HorovodTrainerOperator(
        task_id="Trainer", examples=transform, transform_graph=transform, schema=schema,
        num_workers="{{ params.num_workers }}", train_steps="{{ params.train_steps }}", eval_steps=5,
    )
    evaluator = EvaluatorOperator(task_id="Evaluator", examples=gen, model=trainer,
                                  metric="{{ params.eval_metric }}", threshold="{{ params.eval_threshold }}",
                                  max_regression="{{ params.max_regression }}")
    pusher = PusherOperator(task_id="Pusher", model=trainer, model_blessing=evaluator)

    @task
    def deploy(pushed: dict) -> int:
        """Stands in for the deploy tasks of a later issue: reads the version the Pusher published."""
        from airflow_mlops.utils.model_registry import ModelRegistry

        version = ModelRegistry(pushed["pushed_destination"].rsplit("/", 1)[0]).get(pushed["model_version"])
        print(f"would deploy model version {version.version} from {version.path}")
        return version.version

    validator >> transform
    deploy(pusher.output)
