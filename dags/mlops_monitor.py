"""Monitor a deployment: serving health, drift of its traffic, and the quality of its predictions.

Runs every 30 minutes (or from the UI's trigger form), in parallel:

* **health**: the model server answers; error rate and p99 latency of the last
  ``window_minutes`` (prediction log; else the server's ``/metrics`` totals) are within
  ``max_error_rate`` and ``max_p99_ms``. A breach fails this task, which is your alert
  (Airflow's failure notifications); it does not stop the drift check.
* **detect_drift**: Alibi Detect (``detector``, default TabularDrift) compares the last
  ``window_size`` requests the deployment served with the training data of the model
  version it serves, found through ML Metadata lineage. JSON report, plus a PNG of the
  drifted features' distributions, under ``{state_dir}/drift/<deployment>/reports/``.
  Too little traffic is ``insufficient_data``: not drift, not a failure.
* **check_quality**: the served predictions joined with the ground truth that has arrived
  since (the model server's feedback endpoint, and outcome files with ``request_id`` and
  ``label`` under ``feedback_root``); each model version's metric (AUC, accuracy, errors: the
  ``model_type``'s) against the value it was blessed with (``max_quality_drop`` tolerated) and
  ``quality_floor``. ``decayed``, ``ok`` or ``insufficient_labels`` (fewer than ``min_labels``
  labelled predictions: never a false alarm). JSON report and SVG plot under
  ``{state_dir}/quality/<deployment>/``.
* **request_retraining**: on drift or decay, updates the Asset ``mlops://chicago_taxi/retrain``
  with why (``reason``: drift, decay or both), the reports, and ``data_root`` (where the newest
  spans are) in the event's extra.
  ``mlops_train_deploy`` is scheduled on that Asset (or on new validated data): it
  retrains on the newest span, evaluates against the latest blessed model and deploys the
  new version only when it is blessed. With neither drift nor decay this task is skipped: no event.

Copy this file into your DAGs folder and edit the pipeline name and the defaults below.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, Param, task

from airflow_mlops.evaluation import MODEL_TYPES
from airflow_mlops.operators.drift import DriftDetectionOperator
from airflow_mlops.operators.quality import ModelQualityOperator
from airflow_mlops.operators.seldon import SeldonHealthCheckOperator
from airflow_mlops.shared import DETECTORS
from airflow_mlops.utils.assets import retrain_uri, retraining_request

PIPELINE = "chicago_taxi"
RETRAIN = Asset(retrain_uri(PIPELINE))

with DAG(
    dag_id="mlops_monitor",
    description="Serving health, drift and prediction quality of a deployment; drift or decay requests retraining",
    doc_md=__doc__,
    schedule=timedelta(minutes=30),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["mlops", "monitoring", "alibi-detect", "seldon"],
    params={
        "deployment_name": Param("chicago-taxi", type="string", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
                                 title="Deployment"),
        "window_size": Param(1000, type="integer", minimum=1, title="Window: the last N served records"),
        "detector": Param("TabularDrift", type="string", enum=list(DETECTORS), title="Alibi Detect detector"),
        "p_val": Param(0.05, type="number", exclusiveMinimum=0, exclusiveMaximum=1, title="p-value"),
        "correction": Param("bonferroni", type="string", enum=["bonferroni", "fdr"], title="Multiple-test correction"),
        "window_minutes": Param(30, type="number", exclusiveMinimum=0, title="Health window (minutes)"),
        "max_error_rate": Param(0.01, type="number", minimum=0, maximum=1, title="Highest error rate"),
        "max_p99_ms": Param(200, type="number", minimum=0, title="Highest p99 latency (ms)"),
        "model_type": Param("binary", type="string", enum=list(MODEL_TYPES), title="Model type",
                            description="Decides the quality metrics (as in the training DAG)."),
        "quality_metric": Param(None, type=["null", "string"], title="Quality metric",
                                description="Empty: AUC (binary), SparseCategoricalAccuracy (multiclass), "
                                "MeanSquaredError (regression)."),
        "max_quality_drop": Param(0.05, type="number", minimum=0, title="Tolerated drop from the blessed value"),
        "quality_floor": Param(None, type=["null", "number"], title="Worst acceptable value, whatever the blessed one"),
        "min_labels": Param(100, type="integer", minimum=1, title="Labelled predictions needed to judge a version"),
        "quality_window_minutes": Param(None, type=["null", "number"], exclusiveMinimum=0,
                                        title="Quality window (minutes)", description="Empty: every prediction."),
        "feedback_root": Param("", type=["null", "string"], title="Outcome files",
                               description="Where ground-truth files (request_id, label) land; empty: "
                               "[mlops] feedback_root."),
        "data_root": Param("", type=["null", "string"], title="Data directory for retraining",
                           description="Where new span-<N>/ directories land; passed on to the retraining run. "
                                       "Empty: [mlops] data_root (the training DAG's default)."),
    },
) as dag:
    health = SeldonHealthCheckOperator(
        task_id="health", deployment_name="{{ params.deployment_name }}",
        window_minutes="{{ params.window_minutes }}", max_error_rate="{{ params.max_error_rate }}",
        max_p99_ms="{{ params.max_p99_ms }}",
    )
    detect_drift = DriftDetectionOperator(
        task_id="detect_drift", deployment_name="{{ params.deployment_name }}", window_size="{{ params.window_size }}",
        detector="{{ params.detector }}", p_val="{{ params.p_val }}", correction="{{ params.correction }}",
    )

    check_quality = ModelQualityOperator(
        task_id="check_quality", deployment_name="{{ params.deployment_name }}", model_type="{{ params.model_type }}",
        metric="{{ params.quality_metric or '' }}", max_drop="{{ params.max_quality_drop }}",
        floor="{{ params.quality_floor if params.quality_floor is not none else '' }}",
        min_labels="{{ params.min_labels }}",
        window_minutes="{{ params.quality_window_minutes if params.quality_window_minutes is not none else '' }}",
        feedback_root="{{ params.feedback_root or '' }}",
    )

    # all_done: a check that failed (its own alert) does not keep the other's finding from requesting retraining
    @task(outlets=[RETRAIN], trigger_rule="all_done")
    def request_retraining(drift: dict | None, quality: dict | None, params: dict, outlet_events=None) -> dict:
        """Update the retrain Asset with why (drift, decay) and the reports; skipped (no event) otherwise."""
        from airflow.sdk.exceptions import AirflowSkipException

        extra = retraining_request(drift, quality, params["data_root"] or "")
        if extra is None:
            raise AirflowSkipException(f"no drift ({(drift or {}).get('status', 'check failed')}), no decay "
                                       f"({(quality or {}).get('status', 'check failed')}): nothing to retrain")
        outlet_events[RETRAIN].extra = extra
        return extra

    request_retraining(detect_drift.output, check_quality.output)
