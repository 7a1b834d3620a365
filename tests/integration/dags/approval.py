"""Test DAG: a fake pushed model version waits for a human's approval before a stand-in deploy.

``Evaluator`` and ``Pusher`` return XComs shaped like the real operators' (the Pusher publishes
a fake SavedModel, one version per run, under ``{state_dir}/models/<pipeline_name>``).
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, task

from airflow_mlops.operators.approval import ModelApprovalOperator

with DAG(
    dag_id="test_approval",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={"pipeline_name": "it_approval", "deployment_name": "it-approval",
            "require_approval": Param(True, type="boolean")},
    default_args={"retries": 0},
):
    @task(task_id="Evaluator")
    def evaluator() -> dict:
        return {"blessed": True, "gate": {"model_type": "binary", "metric": "AUC", "higher_is_better": True,
                                          "eval_config": None, "threshold": 0.6, "max_regression": 0.0,
                                          "reasons": ["AUC 0.8000 >= 0.6"]}}

    @task(task_id="Pusher")
    def pusher(params=None, run_id=None) -> dict:
        import tempfile
        from pathlib import Path

        from airflow_mlops.hooks.seldon import SeldonHook
        from airflow_mlops.utils.model_registry import ModelRegistry

        registry = ModelRegistry(SeldonHook(mlops_conn_id=None).model_root(params["pipeline_name"]))
        with tempfile.TemporaryDirectory() as model:
            (Path(model) / "saved_model.pb").write_text("a fake graph")
            version, _ = registry.publish(model, model_uri=f"fake://{run_id}", run_id=run_id,
                                          pipeline_name=params["pipeline_name"], metrics={"auc": 0.8})
        return {"pushed": True, "pushed_version": version.version, "pushed_destination": version.path,
                "model_version": version.version}

    approve = ModelApprovalOperator(task_id="approve", required="{{ params.require_approval }}",
                                    deployment_name="{{ params.deployment_name }}")
    evaluator() >> pusher() >> approve >> EmptyOperator(task_id="deploy")
