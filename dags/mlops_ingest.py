"""Ingest and validate data with TFX: CsvExampleGen → StatisticsGen → SchemaGen → ExampleValidator.

Copy this file into your DAGs folder and edit it. Trigger it from the UI: the trigger form
asks for the data directory, the pipeline name and an optional curated schema.

* With no data directory, it ingests the Chicago taxi sample that ships inside TFX.
* A data directory of ``span-<N>/`` sub-directories (``span-<N>/version-<M>/`` for
  versions) is read span by span: the latest span unless ``span`` is set.
* Each span is validated against the pipeline's reference schema: a curated schema file
  if you give one, else the schema of the pipeline's first accepted run. Any anomaly fails
  the ExampleValidator task with a list of what is wrong, and nothing downstream runs.
* Every execution, artifact and its lineage is recorded in ML Metadata.
* A span of pipeline ``chicago_taxi`` that passed validation updates the Asset
  ``mlops://chicago_taxi/data`` (extra: ``data_root``, ``span``), on which
  ``mlops_train_deploy`` is scheduled: new data gets a model trained on it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, Param, task

from airflow_mlops.operators.tfx import (
    CsvExampleGenOperator,
    ExampleValidatorOperator,
    SchemaGenOperator,
    StatisticsGenOperator,
)
from airflow_mlops.utils.assets import data_uri

PIPELINE = "chicago_taxi"  # new validated data of this pipeline updates its data Asset
NEW_DATA = Asset(data_uri(PIPELINE))

with DAG(
    dag_id="mlops_ingest",
    description="Ingest a CSV span with TFX and validate it against the reference schema",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["mlops", "tfx", "data-validation"],
    params={
        "pipeline_name": Param(
            PIPELINE,
            type="string",
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
            title="Pipeline name",
            description="Names the pipeline in ML Metadata and its reference schema.",
        ),
        "data_root": Param(
            "",
            type=["null", "string"],
            title="Data directory",
            description="Directory of CSV files, or of span-<N>/ sub-directories. Empty: the taxi sample shipped with TFX.",
        ),
        "input_pattern": Param(
            "auto",
            type="string",
            title="Input pattern",
            description="File pattern under the data directory ('auto' detects span-{SPAN}/*).",
        ),
        "span": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            title="Span",
            description="Span to ingest; empty for the latest.",
        ),
        "schema_path": Param(
            "",
            type=["null", "string"],
            title="Curated schema",
            description="Path of a schema.pbtxt to validate against; empty for the pipeline's reference schema.",
        ),
    },
    default_args={
        "pipeline_name": "{{ params.pipeline_name }}",
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
    },
) as dag:
    example_gen = CsvExampleGenOperator(
        task_id="CsvExampleGen",
        input_base="{{ params.data_root or '' }}",
        input_pattern="{{ params.input_pattern }}",
        span="{{ params.span }}",
    )
    statistics_gen = StatisticsGenOperator(task_id="StatisticsGen", examples=example_gen)
    schema_gen = SchemaGenOperator(
        task_id="SchemaGen", statistics=statistics_gen, reference_schema="{{ params.schema_path or '' }}"
    )
    example_validator = ExampleValidatorOperator(
        task_id="ExampleValidator", statistics=statistics_gen, schema=schema_gen
    )

    @task(outlets=[NEW_DATA])
    def announce_data(examples: dict, params: dict, outlet_events=None) -> dict:
        """Update the data Asset (training is scheduled on it); skipped for other pipelines."""
        from airflow.sdk.exceptions import AirflowSkipException

        if params["pipeline_name"] != PIPELINE:
            raise AirflowSkipException(f"pipeline {params['pipeline_name']!r} has no data Asset (only {PIPELINE!r})")
        extra = {"data_root": params["data_root"] or "", "span": examples.get("span"), "pipeline": PIPELINE}
        outlet_events[NEW_DATA].extra = extra
        return extra

    example_validator >> announce_data(example_gen.output)
