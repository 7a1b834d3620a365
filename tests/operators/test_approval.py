"""Unit tests of ModelApprovalOperator: not required, bad arguments, what the reviewer sees, the decision recorded.

A real Airflow answers the request in tests/integration/test_approval.py.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.providers.standard.operators import hitl
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from airflow.sdk.exceptions import DownstreamTasksSkipped, TaskAwaitingInput

from airflow_mlops.exceptions import InvalidArgumentError
from airflow_mlops.hooks.seldon import SeldonHook
from airflow_mlops.operators.approval import ModelApprovalOperator
from airflow_mlops.serving.registry import LocalDeployment
from airflow_mlops.utils.model_registry import ModelRegistry

GATE = {"model_type": "binary", "metric": "AUC", "higher_is_better": True, "eval_config": None,
        "threshold": 0.6, "max_regression": 0.0, "reasons": ["AUC 0.8123 >= 0.6"]}


@pytest.fixture
def state_dir(tmp_path, clean_mlops_env):
    clean_mlops_env.setenv("AIRFLOW__MLOPS__STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def registry(state_dir, tmp_path) -> ModelRegistry:
    """Versions 1 (served by deployment taxi) and 2 (the candidate) of pipeline taxi."""
    registry = ModelRegistry(state_dir / "models" / "taxi")
    for version, auc in ((1, 0.7512), (2, 0.8123)):
        model = tmp_path / f"model-{version}"
        model.mkdir()
        (model / "saved_model.pb").write_text("graph")
        registry.publish(model, model_uri=f"/p/Trainer/model/{version}", pipeline_name="taxi",
                         run_id=f"run-{version}", metrics={"auc": auc, "binary_accuracy": 0.7})
    return registry


def serve(version: int, registry: ModelRegistry) -> None:
    SeldonHook(mlops_conn_id=None).registry.save(LocalDeployment(
        name="taxi", version=version, model_root=str(registry.base), model_path=str(registry.base / str(version)),
        status="available"))


def approval_task(required="{{ params.require_approval }}") -> ModelApprovalOperator:
    """The approval task of a DAG like the template's, built anew (as Airflow builds it for each try)."""
    with DAG(dag_id="approval_test", schedule=None, params={"require_approval": False}):
        approve = ModelApprovalOperator(task_id="approve", required=required, deployment_name="taxi")
        approve >> EmptyOperator(task_id="deploy")
    return approve


def context(op: ModelApprovalOperator, registry: ModelRegistry) -> dict:
    xcoms = {"Pusher": {"model_version": 2, "pushed_destination": str(registry.base / "2")},
             "Evaluator": {"blessed": True, "gate": GATE}}
    pushed: dict = {}
    ti = SimpleNamespace(id=uuid.uuid4(), map_index=-1, xcom_pull=lambda task_ids: xcoms.get(task_ids),
                         xcom_push=lambda key, value: pushed.update({key: value}))
    return {"ti": ti, "task_instance": ti, "task": op, "pushed": pushed}


def event(option: str, reason: str | None = None) -> dict:
    return {"chosen_options": [option], "params_input": {"reason": reason},
            "responded_at": datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc),
            "responded_by_user": {"id": "7", "name": "alice"}, "timedout": False}


@pytest.fixture
def requests(monkeypatch) -> list[dict]:
    """What the operator writes as the Human-in-the-loop request (the API server's, in a real task)."""
    written: list[dict] = []
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **request: written.append(request))
    return written


def test_templated_fields_and_the_form():
    op = approval_task()
    assert op.template_fields == ("required", "deployment_name")
    assert op.required == "{{ params.require_approval }}" and op.options == ["Approve", "Reject"]
    assert list(op.serialized_params) == ["reason"]  # the DAG's params are not asked again


@pytest.mark.parametrize("required", [False, "False", "false", " false "])
def test_not_required_passes_at_once(required, registry, requests, capsys):
    op = approval_task(required)
    assert op.execute(context(op, registry)) == {"required": False, "approved": True}
    assert "approval not required (require_approval is off)" in capsys.readouterr().out
    assert requests == []  # nobody was asked
    assert registry.get(2).approval is None


@pytest.mark.parametrize("required", ["yes", "", "None", 1, None])
def test_a_bad_required_value_is_a_clear_error(required, registry, requests):
    op = approval_task(required)
    with pytest.raises(InvalidArgumentError, match=r"approve: required must be a boolean .*got"):
        op.execute(context(op, registry))
    assert requests == []


def test_required_shows_both_versions_metrics_and_waits(registry, requests):
    serve(1, registry)
    op = approval_task("True")
    with pytest.raises(TaskAwaitingInput) as waiting:
        op.execute(context(op, registry))
    assert waiting.value.method_name == "execute_complete"
    [request] = requests
    assert request["subject"] == "Deploy taxi model version 2 as taxi?"
    assert request["options"] == ["Approve", "Reject"] and list(request["params"]) == ["reason"]
    body = request["body"]
    assert "| metric | candidate (v2) | served now (v1) |" in body
    assert "| auc | 0.8123 | 0.7512 |" in body and "| binary_accuracy | 0.7000 | 0.7000 |" in body
    assert "serves version 1 now" in body
    assert "`AUC` >= 0.6" in body and "- AUC 0.8123 >= 0.6" in body


def test_before_the_first_deployment_nothing_is_served(registry, requests):
    op = approval_task(True)
    with pytest.raises(TaskAwaitingInput):
        op.execute(context(op, registry))
    body = requests[0]["body"]
    assert "Deployment `taxi`: nothing is served yet." in body
    assert "| metric | candidate (v2) |\n" in body and "| auc | 0.8123 |" in body


def test_without_the_pushers_xcom_there_is_nothing_to_approve(registry, requests):
    op = approval_task(True)
    ctx = context(op, registry)
    ctx["ti"].xcom_pull = lambda task_ids: None
    with pytest.raises(InvalidArgumentError, match="Pusher's XCom has no model_version"):
        op.execute(ctx)


def record(registry: ModelRegistry, version: int) -> dict:
    return json.loads((Path(registry.base) / ".registry" / f"{version}.json").read_text())


def test_an_approval_is_recorded_and_deploy_runs(registry, requests):
    op = approval_task(True)  # a fresh operator, as Airflow resumes the task
    ctx = context(op, registry)
    decision = op.execute_complete(ctx, event("Approve", "better AUC"))
    assert decision == {"required": True, "approved": True, "by": "alice", "reason": "better AUC",
                        "model_version": 2}
    assert record(registry, 2)["approval"] == {"approved": True, "by": "alice", "reason": "better AUC",
                                               "at": datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc).timestamp()}
    assert registry.get(2).approval["approved"] is True and record(registry, 1)["approval"] is None
    assert ctx["pushed"] == {}  # nothing skipped


def test_a_rejection_is_recorded_and_skips_deploy(registry, requests, capsys):
    op = approval_task(True)
    ctx = context(op, registry)
    with pytest.raises(DownstreamTasksSkipped) as skipped:
        op.execute_complete(ctx, event("Reject", "worse on the night slice"))
    assert skipped.value.tasks == ["deploy"]
    approval = record(registry, 2)["approval"]
    assert approval["approved"] is False and approval["by"] == "alice"
    assert approval["reason"] == "worse on the night slice"
    assert "rejected by alice: worse on the night slice" in capsys.readouterr().out


def test_a_rejection_without_a_reason(registry, requests):
    op = approval_task(True)
    with pytest.raises(DownstreamTasksSkipped):
        op.execute_complete(context(op, registry), event("Reject"))
    assert record(registry, 2)["approval"]["reason"] == ""
