"""Train, evaluate and publish a model with TFX and Horovod, after ingesting and validating the data.

CsvExampleGen → StatisticsGen → SchemaGen → ExampleValidator → Transform → Trainer →
Evaluator → Pusher, one task per TFX component, all recorded in ML Metadata with lineage
back to the data span. Copy this file into your DAGs folder and edit it.

* **Data**: as in ``mlops_ingest``: a CSV directory (or ``span-<N>/`` sub-directories),
  empty for the Chicago taxi sample; anomalies against the reference schema stop the run, and a
  label column (``label_column``) that is missing, empty or one value in every row stops it first.
* **Transform / Trainer**: your TFX module file (``preprocessing_fn``, ``run_fn``), or the
  taxi module shipped with the provider. They train on the run's span, or on a **training
  window**: the newest ``training_spans`` spans, or every span since ``since_span``, among the
  spans the data gate accepted (recorded in ML Metadata as Transform's inputs). The Trainer runs ``num_workers`` Horovod workers
  (data parallel, Gloo); a retry resumes from the run's last checkpoint. On the Kubernetes backend they run as
  an MPIJob or, with ``launcher`` = trainjob, a Kubeflow Trainer v2 TrainJob.
* **Evaluator**: TFMA on the eval split of the run's (newest) span, for the ``model_type``
  (binary, multiclass, regression). The model is blessed when the chosen metric reaches the
  threshold (at least it, or at most it for errors) and is no worse (by more than
  ``max_regression``) than the model ``deployment_name`` serves now (before the first
  deployment: the latest blessed model of the pipeline). ``label_key`` and ``prediction_key`` name the label and the
  output; a full TFMA EvalConfig file can replace the generated one.
* **Pusher**: a blessed model becomes the next numeric version under
  ``{state_dir}/models/<pipeline>/`` (TF Serving's layout) with a record of its run and
  metrics. An unblessed model is not pushed: Pusher and every task after it (deploy) are
  skipped, and Pusher's log says why (metric, value, threshold).
* **approve** (``require_approval``, off by default): a human approves the pushed version
  before it is deployed, in the UI's Required Actions (its metrics beside the served
  version's, and the gate); ``Reject`` skips deploy. The decision, with who made it and
  why, goes into the version's registry record. Off: the task passes at once.
* **Schedule**: runs when new data was ingested and validated (the Asset
  ``mlops://chicago_taxi/data``, updated by ``mlops_ingest``) or when ``mlops_monitor`` found
  drift in the served traffic (``mlops://chicago_taxi/retrain``); the event's ``data_root``
  is used when the run's own ``data_root`` is empty, and the newest span there is trained on.
  Trigger it from the UI for anything else.
* **why_this_run**: records why the run trains (its XCom and log): ``drift`` or ``decay`` (the
  retrain event's reason, with its reports), ``new data`` (the data Asset), or ``manual``.
* **deploy / wait_for_serving**: the pushed version is served by the seldon-core model server
  as deployment ``deployment_name`` (locally: a long-lived server on 127.0.0.1 whose URL the
  deploy task logs); a running deployment switches to the new version without a restart or a
  failed request, and a version that fails its health check is never served.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, Param, task

from airflow_mlops.evaluation import DIRECTIONS, MODEL_TYPES
from airflow_mlops.kubernetes.launchers import LAUNCHERS
from airflow_mlops.operators.approval import ModelApprovalOperator
from airflow_mlops.operators.seldon import SeldonDeployOperator
from airflow_mlops.operators.tfx import (
    GATE_METRICS,
    CsvExampleGenOperator,
    EvaluatorOperator,
    ExampleValidatorOperator,
    HorovodTrainerOperator,
    PusherOperator,
    SchemaGenOperator,
    StatisticsGenOperator,
    TransformOperator,
    raw_label_column,
)
from airflow_mlops.sensors.seldon import SeldonDeploymentSensor
from airflow_mlops.utils.assets import asset_event_extra, data_uri, retrain_uri, run_reason

PIPELINE = "chicago_taxi"  # the assets below name it: keep it equal to the pipeline_name default
NEW_DATA, RETRAIN = Asset(data_uri(PIPELINE)), Asset(retrain_uri(PIPELINE))

with DAG(
    dag_id="mlops_train_deploy",
    description="Ingest and validate data, Transform, train with Horovod, evaluate, push a model version",
    doc_md=__doc__,
    schedule=(NEW_DATA | RETRAIN),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["mlops", "tfx", "training", "horovod"],
    params={
        "pipeline_name": Param(PIPELINE, type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
                               title="Pipeline name", description="Names the pipeline in ML Metadata, its schema and models."),
        "data_root": Param("", type=["null", "string"], title="Data directory",
                           description="Directory of CSV files, or of span-<N>/ sub-directories. Empty: the triggering "
                           "Asset event's data_root, else the taxi sample."),
        "span": Param(None, type=["null", "integer"], minimum=0, title="Span", description="Empty for the latest."),
        "schema_path": Param("", type=["null", "string"], title="Curated schema",
                             description="A schema.pbtxt to validate against; empty for the pipeline's reference schema."),
        "module_file": Param("", type=["null", "string"], title="Module file",
                             description="Python file with preprocessing_fn and run_fn; empty for the shipped taxi module."),
        "training_spans": Param(None, type=["null", "integer"], minimum=1, title="Train on the last N spans",
                                description="Among the spans validation accepted (this run's included). Empty: "
                                "[mlops] training_spans (1: this run's span only)."),
        "since_span": Param(None, type=["null", "integer"], minimum=0, title="Train on every span since",
                            description="Empty: no lower bound (with the setting above, the narrower wins)."),
        "num_workers": Param(2, type="integer", minimum=1, maximum=64, title="Horovod workers"),
        "train_steps": Param(1000, type="integer", minimum=1, title="Training steps (shared by the workers)"),
        "launcher": Param("mpijob", type="string", enum=sorted(LAUNCHERS), title="Training job (Kubernetes)",
                          description="What runs the Horovod training on the Kubernetes backend: mpijob (Kubeflow "
                          "MPI Operator) or trainjob (Kubeflow Trainer v2, with the TrainingRuntime of "
                          "deploy/kubernetes/trainer/ applied; no elastic training). Not used locally."),
        "model_type": Param("binary", type="string", enum=list(MODEL_TYPES), title="Model type",
                           description="What the model predicts: binary (one score), multiclass (one score per "
                           "class) or regression (a number). Decides the metrics."),
        "label_key": Param("big_tipper", type="string", minLength=1, title="Label",
                           description="The label as your module's transform_features signature outputs it "
                           "(TFX's examples: <name>_xf)."),
        "label_column": Param(None, type=["null", "string"], title="Label's CSV column",
                              description="The CSV column the label comes from: a span that lacks it, or where it is "
                              "empty or one value in every row, is refused before it is ingested. Empty: label_key "
                              "without its _xf suffix (tips for the shipped module's big_tipper); not checked with "
                              "an EvalConfig file."),
        "prediction_key": Param(None, type=["null", "string"], title="Prediction output",
                                description="The serving signature's output holding the prediction; empty: its "
                                "only output."),
        "eval_metric": Param(None, type=["null", "string"], examples=list(GATE_METRICS), title="Blessing metric",
                             description="Empty: AUC (binary), SparseCategoricalAccuracy (multiclass), "
                             "MeanSquaredError (regression)."),
        "metric_direction": Param("auto", type="string", enum=list(DIRECTIONS), title="Better is",
                                  description="auto: the metric's own (errors: lower is better)."),
        "eval_threshold": Param(0.6, type="number", title="Worst acceptable metric value",
                                description="A lowest value where higher is better, a highest one for errors."),
        "max_regression": Param(0.0, type="number", minimum=0, title="Allowed loss against the blessed model"),
        "slice_features": Param(None, type=["null", "string"], title="Slice by",
                                description="Comma-separated features: metrics are also reported per value."),
        "eval_config": Param(None, type=["null", "string"], title="TFMA EvalConfig file",
                             description="A JSON or pbtxt EvalConfig used instead of the settings above."),
        "deployment_name": Param("chicago-taxi", type="string", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
                                 title="Deployment", description="Name of the model deployment to update."),
        "require_approval": Param(False, type="boolean", title="Require approval before deploying",
                                  description="A human approves (or rejects) the pushed version in Required "
                                  "Actions before it is deployed; the decision is kept in the model registry."),
    },
    user_defined_macros={"asset_event_extra": asset_event_extra, "raw_label_column": raw_label_column},
    default_args={
        "pipeline_name": "{{ params.pipeline_name }}",
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
    },
) as dag:
    example_gen = CsvExampleGenOperator(
        task_id="CsvExampleGen", span="{{ params.span }}",
        input_base="{{ params.data_root or asset_event_extra(triggering_asset_events, 'data_root') }}",
        label_column="{{ params.label_column or raw_label_column(params.label_key, params.module_file, "
                     "params.eval_config) }}",
    )
    statistics_gen = StatisticsGenOperator(task_id="StatisticsGen", examples=example_gen)
    schema_gen = SchemaGenOperator(task_id="SchemaGen", statistics=statistics_gen,
                                   reference_schema="{{ params.schema_path or '' }}")
    example_validator = ExampleValidatorOperator(task_id="ExampleValidator", statistics=statistics_gen,
                                                 schema=schema_gen)
    transform = TransformOperator(
        task_id="Transform", examples=example_gen, schema=schema_gen, module_file="{{ params.module_file or '' }}",
        training_spans="{{ params.training_spans if params.training_spans is not none else '' }}",
        since_span="{{ params.since_span if params.since_span is not none else '' }}",
    )
    trainer = HorovodTrainerOperator(
        task_id="Trainer", examples=transform, transform_graph=transform, schema=schema_gen,
        module_file="{{ params.module_file or '' }}", num_workers="{{ params.num_workers }}",
        train_steps="{{ params.train_steps }}", eval_steps=50, launcher="{{ params.launcher }}",
    )
    evaluator = EvaluatorOperator(
        task_id="Evaluator", examples=example_gen, model=trainer, model_type="{{ params.model_type }}",
        metric="{{ params.eval_metric or '' }}", direction="{{ params.metric_direction }}",
        threshold="{{ params.eval_threshold }}", max_regression="{{ params.max_regression }}",
        label_key="{{ params.label_key }}", prediction_key="{{ params.prediction_key or '' }}",
        slice_features="{{ params.slice_features or '' }}", eval_config="{{ params.eval_config or '' }}",
        baseline_deployment="{{ params.deployment_name }}",  # compared with the model it serves now
    )
    pusher = PusherOperator(task_id="Pusher", model=trainer, model_blessing=evaluator)
    approve = ModelApprovalOperator(task_id="approve", required="{{ params.require_approval }}",
                                    deployment_name="{{ params.deployment_name }}")
    deploy = SeldonDeployOperator(
        task_id="deploy", deployment_name="{{ params.deployment_name }}", pipeline_name="{{ params.pipeline_name }}",
        model_version="{{ ti.xcom_pull(task_ids='Pusher')['model_version'] }}",
    )
    wait_for_serving = SeldonDeploymentSensor(
        task_id="wait_for_serving", deployment_name="{{ params.deployment_name }}",
        model_version="{{ ti.xcom_pull(task_ids='deploy')['version'] }}", poke_interval=5, timeout=600,
    )
    @task
    def why_this_run(triggering_asset_events=None, dag_run=None) -> dict:
        """Why this run trains: drift, decay (the retrain request), new data, or manual."""
        run_type = getattr(getattr(dag_run, "run_type", None), "value", None) or str(getattr(dag_run, "run_type", ""))
        found = run_reason(triggering_asset_events, run_type or "manual")
        print(f"this run trains because of: {found['reason']}" + (f" ({found['event']})" if found["event"] else ""))
        return found

    why_this_run()
    example_validator >> transform  # train only on data that passed validation
    pusher >> approve >> deploy >> wait_for_serving
