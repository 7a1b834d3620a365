"""Unit tests of the Seldon operators and sensor: templating, argument checks, decisions.

The real servers are exercised in tests/integration/test_serving.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_mlops.exceptions import InvalidArgumentError
from airflow_mlops.hooks.seldon import SeldonHook
from airflow_mlops.serving.backends import LocalServerBackend
from airflow_mlops.operators.seldon import SeldonDeployOperator, SeldonRollbackOperator, SeldonUndeployOperator
from airflow_mlops.sensors.seldon import SeldonDeploymentSensor


@pytest.fixture
def state_dir(tmp_path, clean_mlops_env):
    clean_mlops_env.setenv("AIRFLOW__MLOPS__STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def test_templated_fields_are_stored_unchanged():
    op = SeldonDeployOperator(task_id="d", deployment_name="{{ params.n }}", pipeline_name="{{ params.p }}",
                              model_version="{{ ti.xcom_pull('Pusher')['model_version'] }}")
    assert op.deployment_name == "{{ params.n }}" and isinstance(op.template_fields, tuple)
    assert set(op.template_fields) == {"deployment_name", "pipeline_name", "model_root", "model_version"}
    assert SeldonRollbackOperator.template_fields == ("deployment_name", "model_version")
    assert SeldonDeploymentSensor.template_fields == ("deployment_name", "model_version")


@pytest.mark.parametrize("version, message", [("newest", "must be a version number or one of"),
                                               (0, "must be >= 1"), (None, "must be a version number")])
def test_bad_model_version_fails_before_anything_runs(state_dir, version, message, monkeypatch):
    monkeypatch.setattr(LocalServerBackend, "deploy", lambda *a, **k: pytest.fail("deployed with a bad version"))
    op = SeldonDeployOperator(task_id="d", deployment_name="taxi", pipeline_name="p", model_version=version)
    with pytest.raises(InvalidArgumentError, match=message):
        op.execute({})


def test_deploy_needs_a_pipeline_or_model_root(state_dir):
    with pytest.raises(InvalidArgumentError, match="give pipeline_name or model_root"):
        SeldonDeployOperator(task_id="d", deployment_name="taxi").execute({})


@pytest.mark.parametrize("name", ["Taxi", "taxi_model", "-taxi", "x" * 64])
def test_deployment_names_follow_kubernetes_rules(state_dir, name, tmp_path):
    op = SeldonDeployOperator(task_id="d", deployment_name=name, model_root=str(tmp_path), model_version="latest")
    hook = SeldonHook(mlops_conn_id=None)
    monkey_version = SimpleNamespace(version=1, path=str(tmp_path))
    hook.resolve_version = lambda root, version: monkey_version
    op.__dict__["hook"] = hook
    with pytest.raises(InvalidArgumentError, match="is not valid: use lower-case letters"):
        op.execute({})


def test_unknown_version_is_named(state_dir, tmp_path):
    op = SeldonDeployOperator(task_id="d", deployment_name="taxi", model_root=str(tmp_path / "models"), model_version=4)
    with pytest.raises(InvalidArgumentError, match="model version 4 is not in"):
        op.execute({})


def test_rollback_and_undeploy_of_an_unknown_deployment(state_dir):
    with pytest.raises(InvalidArgumentError, match="deployment 'ghost' does not exist"):
        SeldonRollbackOperator(task_id="r", deployment_name="ghost").execute({})
    with pytest.raises(InvalidArgumentError, match="deployment 'ghost' does not exist"):
        SeldonUndeployOperator(task_id="u", deployment_name="ghost").execute({})
