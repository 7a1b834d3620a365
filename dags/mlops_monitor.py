"""Monitor a deployment: serving health, and drift of its traffic from the model's training data.

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
* **request_retraining**: on drift, updates the Asset ``mlops://chicago_taxi/retrain`` with
  the drift report (and ``data_root``, where the newest spans are) in the event's extra.
  ``mlops_train_deploy`` is scheduled on that Asset (or on new validated data): it
  retrains on the newest span, evaluates against the latest blessed model and deploys the
  new version only when it is blessed. With no drift this task is skipped: no event.

Copy this file into your DAGs folder and edit the pipeline name and the defaults below.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, Param, task

from airflow_mlops.operators.drift import DriftDetectionOperator
from airflow_mlops.operators.seldon import SeldonHealthCheckOperator
from airflow_mlops.shared import DETECTORS
from airflow_mlops.utils.assets import retrain_uri

PIPELINE = "chicago_taxi"
RETRAIN = Asset(retrain_uri(PIPELINE))

with DAG(
    dag_id="mlops_monitor",
    description="Serving health and drift of a deployment's traffic; drift requests retraining (an Asset event)",
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

    @task(outlets=[RETRAIN])
    def request_retraining(result: dict, params: dict, outlet_events=None) -> dict:
        """Update the retrain Asset with the drift report; skipped (no event) when there is no drift."""
        from airflow.sdk.exceptions import AirflowSkipException

        if not result.get("is_drift"):
            raise AirflowSkipException(f"no drift ({result.get('status')}): nothing to retrain")
        extra = {
            "reason": "drift", "deployment": result["deployment"], "model_version": result["model_version"],
            "drifted_features": result["drifted_features"],
            "p_values": {n: f["p_val"] for n, f in result["features"].items() if "p_val" in f},
            "report": result["report"], "report_png": result.get("report_png"), "data_root": params["data_root"] or "",
        }
        outlet_events[RETRAIN].extra = extra
        return extra

    request_retraining(detect_drift.output)
