from __future__ import annotations

from airflow_mlops.links.pages import DeploymentLink, DriftReportLink, ModelVersionLink, page_path
from airflow_mlops.operators.drift import DriftDetectionOperator
from airflow_mlops.operators.seldon import SeldonDeployOperator, SeldonRollbackOperator
from airflow_mlops.operators.tfx import EvaluatorOperator, PusherOperator


def test_page_paths_quote_every_part():
    assert page_path("models", "taxi", 3) == "/models/taxi/3"
    assert page_path("drift", "a/b", "r?x") == "/drift/a%2Fb/r%3Fx"
    assert page_path("models", query={"pipeline": "a b&c"}) == "/models?pipeline=a%20b%26c"


def test_links_lead_to_the_page_the_operator_named(monkeypatch):
    deploy = SeldonDeployOperator(task_id="deploy", deployment_name="taxi-prod", pipeline_name="taxi")
    assert DeploymentLink().get_link(deploy, ti_key=None) == "/mlops/deployments/taxi-prod"
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/prefix/")
    assert DeploymentLink().get_link(deploy, ti_key=None) == "https://airflow.example.com/prefix/mlops/deployments/taxi-prod"

    class Ran:
        mlops_page = "/models/taxi/3"

    assert ModelVersionLink().get_link(Ran(), ti_key=None).endswith("/mlops/models/taxi/3")
    assert DriftReportLink().get_link(object(), ti_key=None) == ""  # before the task ran: no link


def test_operators_carry_their_links():
    names = {cls: {link.name for link in cls.operator_extra_links}
             for cls in (EvaluatorOperator, PusherOperator, SeldonDeployOperator, SeldonRollbackOperator,
                         DriftDetectionOperator)}
    assert names[EvaluatorOperator] == names[PusherOperator] == {"MLOps model version"}
    assert names[SeldonDeployOperator] == names[SeldonRollbackOperator] == {"MLOps deployment"}
    assert names[DriftDetectionOperator] == {"MLOps drift report"}
