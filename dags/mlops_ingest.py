"""Ingest and validate data with TFX: CsvExampleGen → StatisticsGen → SchemaGen → ExampleValidator.

Copy this file into your DAGs folder and edit it. Trigger it from the UI: the trigger form
asks for the data directory, the pipeline name and an optional curated schema.

* With no data directory, it ingests the Chicago taxi sample that ships inside TFX.
* A data directory of ``span-<N>/`` sub-directories (``span-<N>/version-<M>/`` for
  versions) is read span by span: the latest span unless ``span`` is set.
* A span whose files start with a byte-order mark, or whose label column (``label_column``) is
  missing, empty or one value in every row, is refused before it is ingested.
* Each span is validated against the pipeline's reference schema: a curated schema file
  if you give one, else the schema of the pipeline's first accepted run. Any anomaly fails
  the ExampleValidator task with a list of what is wrong, and nothing downstream runs.
* Every execution, artifact and its lineage is recorded in ML Metadata.
* A span of pipeline ``chicago_taxi`` that passed validation updates the Asset
  ``mlops://chicago_taxi/data`` (extra: ``data_root``, ``span``), on which
  ``mlops_train_deploy`` is scheduled: new data gets a model trained on it.

**Event-driven ingest** (Airflow 3 ``AssetWatcher``): when ``[mlops] data_root`` (or
``WATCHED_DATA_ROOT`` below) names a directory or an fsspec URL, this DAG is scheduled on the
Asset ``mlops://chicago_taxi/landing``, watched by
:class:`~airflow_mlops.triggers.spans.NewSpanTrigger` in the triggerer: each new ``span-<N>/``
that lands there (with data, no longer changing) starts a run for that span, with no DAG run
polling for files. Without a watched directory the DAG runs when triggered (from the UI, the
API, or another schedule you give it).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, AssetWatcher, Param, conf, task

from airflow_mlops.operators.tfx import (
    CsvExampleGenOperator,
    ExampleValidatorOperator,
    SchemaGenOperator,
    StatisticsGenOperator,
)
from airflow_mlops.triggers.spans import NewSpanTrigger
from airflow_mlops.utils.assets import asset_event_extra, data_uri, landing_uri

PIPELINE = "chicago_taxi"  # new validated data of this pipeline updates its data Asset
NEW_DATA = Asset(data_uri(PIPELINE))
#: Where new spans land, watched by the triggerer (empty: no watcher, the DAG runs when triggered).
WATCHED_DATA_ROOT = conf.get("mlops", "data_root", fallback="")
LANDED = Asset(landing_uri(PIPELINE), watchers=[AssetWatcher(
    name=f"{PIPELINE}_new_span", trigger=NewSpanTrigger(data_root=WATCHED_DATA_ROOT, poll_interval=30.0))]) \
    if WATCHED_DATA_ROOT else None

with DAG(
    dag_id="mlops_ingest",
    description="Ingest a CSV span with TFX and validate it against the reference schema",
    doc_md=__doc__,
    schedule=LANDED,
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
        "label_column": Param(
            "tips",
            type=["null", "string"],
            title="Label column",
            description="The CSV column the label comes from (the taxi data's tips): a span that lacks it, or "
            "where it is empty or one value in every row, is refused before it is ingested. Empty: not checked.",
        ),
    },
    user_defined_macros={"asset_event_extra": asset_event_extra},
    default_args={
        "pipeline_name": "{{ params.pipeline_name }}",
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
    },
) as dag:
    example_gen = CsvExampleGenOperator(
        task_id="CsvExampleGen",
        input_base="{{ params.data_root or asset_event_extra(triggering_asset_events, 'data_root') }}",
        input_pattern="{{ params.input_pattern }}",
        span="{{ params.span if params.span is not none else asset_event_extra(triggering_asset_events, 'span') }}",
        label_column="{{ params.label_column or '' }}",
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
        data_root = params["data_root"] or WATCHED_DATA_ROOT  # a run the watcher started ingests from there
        artifact = ((examples.get("outputs") or {}).get("examples") or [{}])[0]  # the span CsvExampleGen ingested
        extra = {"data_root": data_root, "span": artifact.get("span"), "pipeline": PIPELINE}
        outlet_events[NEW_DATA].extra = extra
        return extra

    example_validator >> announce_data(example_gen.output)
