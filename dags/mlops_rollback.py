"""Roll a model deployment back to an earlier version, promote its canary, or stop it.

Trigger it from the UI with the deployment's name and the version to serve again
(``previous``: the version served before the current one). The deployment switches
without a restart; a version that fails its health check is never served. With
``undeploy`` set, the deployment's model server is stopped instead (its record and
prediction log are kept). With ``promote`` set (Kubernetes), the canary predictor serving
``model_version`` takes all the traffic and the others are removed. The MLOps pages of the
Airflow UI trigger this DAG for their "roll back", "promote" and "undeploy" buttons.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.python import BranchPythonOperator
from airflow.sdk import DAG, Param

from airflow_mlops.operators.seldon import SeldonPromoteOperator, SeldonRollbackOperator, SeldonUndeployOperator
from airflow_mlops.sensors.seldon import SeldonDeploymentSensor

with DAG(
    dag_id="mlops_rollback",
    description="Serve an earlier model version again, promote a canary, or stop a deployment",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["mlops", "seldon", "deployment"],
    params={
        "deployment_name": Param("chicago-taxi", type="string", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
                                 title="Deployment"),
        "model_version": Param("previous", type=["string", "integer"], title="Version to serve",
                               description="A version number, or 'previous'."),
        "undeploy": Param(False, type="boolean", title="Stop the deployment instead"),
        "promote": Param(False, type="boolean", title="Promote the canary instead",
                         description="Kubernetes: the predictor of 'Version to serve' takes all the traffic."),
    },
) as dag:
    choose = BranchPythonOperator(
        task_id="choose",
        python_callable=lambda params: "undeploy" if params["undeploy"] else (
            "promote" if params.get("promote") else "rollback"),
    )
    rollback = SeldonRollbackOperator(task_id="rollback", deployment_name="{{ params.deployment_name }}",
                                      model_version="{{ params.model_version }}")
    wait_for_serving = SeldonDeploymentSensor(
        task_id="wait_for_serving", deployment_name="{{ params.deployment_name }}",
        model_version="{{ ti.xcom_pull(task_ids='rollback')['version'] }}", poke_interval=5, timeout=600,
    )
    undeploy = SeldonUndeployOperator(task_id="undeploy", deployment_name="{{ params.deployment_name }}")
    promote = SeldonPromoteOperator(task_id="promote", deployment_name="{{ params.deployment_name }}",
                                    model_version="{{ params.model_version }}")
    choose >> [rollback, undeploy, promote]
    rollback >> wait_for_serving
